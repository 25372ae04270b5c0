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
