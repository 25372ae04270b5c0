//! The `/v1/ws` protocol: its frames ([`protocol`]) and its connection's state machine ([`connection`]).

pub mod connection;
pub mod protocol;
