//! What every layer runs with: the one source of time, the background workers and their stop order, and the
//! metrics they count into.

pub mod batch;
pub mod clock;
pub mod metrics;
pub mod workers;
