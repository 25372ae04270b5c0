//! The session registry: who is logged in where, and the multi-terminal policy (PROTOCOL §5).

pub mod policy;
