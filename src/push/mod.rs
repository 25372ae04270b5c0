//! How a change reaches the connection it concerns: this node's connections ([`hub`]), and the other nodes
//! ([`bus`], on Redis pub/sub in a cluster, see [`redis_bus`], which publishes again what no node heard:
//! [`unheard`]).

pub mod bus;
pub mod hub;
pub mod redis_bus;
pub mod unheard;
