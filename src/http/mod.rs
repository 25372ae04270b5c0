//! The HTTP side: the server loop ([`serve`]), the client API ([`client`]) and health checks ([`health`]).

pub mod client;
pub mod health;
pub mod serve;
