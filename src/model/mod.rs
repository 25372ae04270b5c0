//! The domain's vocabulary, which every layer speaks: apps' users and their instances, platforms, policies,
//! kicks and why a login state changed, and the error codes of the contract. Leaves: nothing here depends on
//! another module of the crate.

pub mod cause;
pub mod error;
pub mod ids;
pub mod instance;
pub mod kick;
pub mod platform;
pub mod policy;

pub use cause::Cause;
pub use error::{Code, Failure};
pub use ids::{InvalidUserId, UserId};
pub use instance::{next_seq, ConnRef, Instance, InstanceKey, LoginFacts, Seq};
pub use kick::{Kick, KickReason};
pub use platform::Platform;
pub use policy::{Mode, Policy};
