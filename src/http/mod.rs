//! HTTP endpoints.

pub mod health;
