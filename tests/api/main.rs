//! One integration test binary: real PostgreSQL, real SQLite files, the real server on port 0.

mod accounts;
mod admin_native;
mod admin_v4;
mod architecture;
mod auth;
mod cli;
mod cluster;
mod deploy;
mod failover;
mod faults;
mod fuzz_seeds;
mod helpers;
mod http_client;
mod limits;
mod operations;
mod races;
mod redis_cluster;
mod registry;
mod registry_faults;
mod security;
mod server;
mod web;
mod webhooks;
mod websdk;
mod ws_login;
mod ws_protocol;
