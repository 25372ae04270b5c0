//! One integration test binary: real PostgreSQL, real SQLite files, the real server on port 0.

mod accounts;
mod auth;
mod cli;
mod deploy;
mod helpers;
mod server;
mod ws_protocol;
