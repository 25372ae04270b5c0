//! The login service: what a `login`, `resume`, `renew_sig` or `logout` does (PROTOCOL §4), for the WebSocket
//! gateway and the HTTP API alike; the checks of a login ([`auth`]), typed requests ([`request`]), session
//! tokens ([`tokens`]) and the registry writes settled after a failure ([`settle`]); what others may read of
//! it is in `reads`.

mod answer;
pub mod auth;
mod bearer;
mod ends;
mod kicks;
mod reads;
pub mod request;
pub mod service;
pub mod settle;
pub mod tokens;
mod upkeep;
