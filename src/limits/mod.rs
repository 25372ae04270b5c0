//! Limits on what clients and admins may ask of the server: a token bucket, counters of work in progress, limits
//! per client address, the failure throttle and the REST API's rates.

pub mod bucket;
pub mod counted;
pub mod per_ip;
pub mod rate;
pub mod throttle;
