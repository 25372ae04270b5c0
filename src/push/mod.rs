//! How a change reaches the connection it concerns: this node's connections ([`hub`]), and the other nodes
//! ([`bus`], on Redis pub/sub in a cluster, see [`redis_bus`], which publishes in lanes that do not wait for each
//! other: [`publishing`], subscribes to the masters of its channels only: [`subscriber`], publishes again what no node heard: [`unheard`], and has the nodes whose messages were
//! dropped check against the registry: [`missed`]).

pub mod bus;
pub mod hub;
pub mod missed;
pub mod publishing;
pub mod redis_bus;
pub mod subscriber;
pub mod unheard;
