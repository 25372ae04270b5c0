//! Accounts: [`Accounts`] (`service`), the read-through cache in front of the store ([`AccountStore`]) that the login path uses, whose first
//! logins are registered in groups by a worker (`registration`).

pub mod dau;
mod registration;
mod service;

pub use crate::store::accounts::{Account, AccountStore, LoginState, Profile};
pub use crate::store::{StoreError, StoreResult};
pub use registration::RegistrationWorker;
pub use service::Accounts;
