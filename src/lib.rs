//! imlogin: a self-hosted IM login and presence server.
//!
//! Clients log in with a UserID and a UserSig (TLS sig v2 or JWT); unknown users are registered on first
//! login. The protocol is documented in `docs/protocol.md`, the layers in `docs/architecture.md`; this crate is
//! the server, its CLI and its client.
//!
//! # Map
//! Each folder is a layer. Read top down: a module imports only modules listed after it, never one before
//! (`tests/api/architecture.rs` checks that no two top-level modules import each other, directly or round about).
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | assembly | [`app`], [`cli`] | builds the server from every part, routes, cluster choice, signals, reload |
//! | edges | [`gateway`], [`http`] | WebSocket (native and Web SDK dialects, one instance state) and HTTP |
//! | services | [`admin`], [`login`] | what an admin may do; what a login, resume, renew and logout do |
//! | state | [`accounts`], [`push`], [`registry`], [`webhooks`] | accounts and daily actives, this node's connections and the bus, who is logged in under which policy, state-change events |
//! | storage | [`store`] | PostgreSQL or SQLite behind one trait per area |
//! | support | [`config`], [`limits`], [`usersig`], [`runtime`] | settings, rate limits, tickets, time, workers, metrics |
//! | vocabulary | [`model`] | IDs, platforms, policies, kicks, causes, error codes: imports nothing |
//!
//! [`client`] is a Rust client of the WebSocket protocol and stands alone.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod login;
pub mod model;
pub mod push;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod usersig;
pub mod webhooks;
