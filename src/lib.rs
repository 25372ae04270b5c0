//! imlogin: a self-hosted IM login and presence server.
//!
//! Clients log in with a UserID and a UserSig (TLS sig v2 or JWT); unknown users are registered on first
//! login. The contract is `PROTOCOL.md`; this crate is the server, its CLI and its client.

pub mod accounts;
pub mod app;
pub mod apps;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod dau;
pub mod error;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod platform;
pub mod registry;
pub mod sessions;
pub mod telemetry;
pub mod token;
pub mod usersig;
