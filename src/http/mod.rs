//! HTTP endpoints.

pub mod client;
pub mod health;
