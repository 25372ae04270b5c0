//! imlogin: a self-hosted IM login and presence server.
//!
//! Clients log in with a UserID and a UserSig (TLS sig v2 or JWT); unknown users are registered on first
//! login. The protocol is documented in `docs/protocol.md`; this crate is the server, its CLI and its client.
//!
//! Where things are: [`app`] assembles the server from the parts below; [`gateway`] (WebSocket) and [`http`]
//! are the edges, where requests are typed ([`request`]); [`sessions`] is the login service both edges call;
//! [`auth`] checks logins (with [`usersig`] for tickets and [`sdkapps`] for the configured apps);
//! [`accounts`] and [`dau`] persist; [`registry`] holds who is logged in under the multi-terminal policy;
//! [`hub`] reaches this node's connections and [`bus`] the other nodes' (a cluster shares the registry in
//! Redis); [`workers`] owns the background tasks; [`clock`] is the one source of time.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod counted;
pub mod dau;
pub mod db;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod policies;
pub mod public_secrets;
pub mod registry;
pub mod reload;
pub mod request;
pub mod sdkapps;
pub mod secret;
pub mod sessions;
pub mod settle;
pub mod telemetry;
pub mod token;
pub mod users;
pub mod usersig;
pub mod webhooks;
pub mod workers;
