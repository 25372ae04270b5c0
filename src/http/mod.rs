//! The HTTP side: the server loop ([`serve`]), the client API ([`client`]), the admin APIs ([`admin`]) and
//! health checks ([`health`]).

pub mod admin;
pub mod client;
pub mod health;
pub mod serve;
