//! The admin service: what an admin can do to an app's accounts, sessions, policy and webhooks. The
//! Tencent-compatible REST API (`/v4`) and the native one (`/admin/v1`) both call it, so the two cannot differ;
//! each state change writes one audit log line.
//!
//! By area: [`credentials`] (who may act: API keys, admin tickets), [`accounts`], [`sessions`] (kicks, online
//! states, statistics), [`policy`] and [`dead_letters`].

pub mod accounts;
pub mod credentials;
pub mod dead_letters;
pub mod policy;
pub mod sessions;

use std::net::IpAddr;
use std::sync::Arc;

pub use accounts::MAX_PROFILE_BYTES;
pub use credentials::TicketRefused;
pub use sessions::{HasAccount, OnlineCounts, OnlineState, UserOnline};

use crate::limits::throttle::Throttle;
use crate::login::service::Sessions;
use crate::model::UserId;
use crate::store::{Database, StoreError};

/// Who asks: an admin UserID (REST v4) or an app's API key (native), and from where.
#[derive(Debug, Clone)]
pub struct AdminActor {
    pub sdkappid: u32,
    pub admin: String,
    pub ip: IpAddr,
}

impl AdminActor {
    /// The audit log line of a state change.
    fn audit(&self, action: &str, target: &str) {
        tracing::info!(target: "imlogin::audit", sdkappid = self.sdkappid, admin = %self.admin,
            client_ip = %self.ip, action, target, "admin action");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database or the registry cannot be reached: retry (70169). The cause is for the log.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No such account (70107).
    #[error("account does not exist")]
    NoAccount,
    /// No such thing other than an account (an instance, a dead letter).
    #[error("{0} does not exist")]
    NotFound(&'static str),
    /// A parameter is out of its rules (70402), with why.
    #[error("{0}")]
    Invalid(String),
}

pub type AdminResult<T> = Result<T, AdminError>;

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

impl From<crate::registry::RegistryError> for AdminError {
    fn from(e: crate::registry::RegistryError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

/// The login service fails an admin call only when the registry is unreachable.
impl From<crate::model::Failure> for AdminError {
    fn from(f: crate::model::Failure) -> Self {
        AdminError::Unavailable(f.message)
    }
}

/// The service. Its parts stay private: accounts, sessions, policy and dead letters change only through its
/// methods, which check their parameters and write the audit line.
pub struct Admin {
    sessions: Arc<Sessions>,
    db: Database,
    /// SHA-256 of each app's admin API key → the app: a key is found without comparing secrets one by one.
    keys: std::sync::RwLock<std::collections::HashMap<[u8; 32], u32>>,
    /// Failed `/v4` admin authentications, counted per source address only (PROTOCOL §7), apart from failed
    /// logins: a caller without a valid ticket can throttle nobody but itself.
    failed_auth: Throttle,
}

/// The UserID an admin named, parsed (70402 when it is not one).
fn check_user_id(user_id: &str) -> AdminResult<UserId> {
    UserId::parse(user_id)
        .map_err(|e| AdminError::Invalid(format!("invalid UserID {user_id:?}: {e}")))
}

impl Admin {
    pub fn new(sessions: Arc<Sessions>, db: Database) -> Admin {
        let failed_auth =
            Throttle::new(sessions.auth().throttle().limit(), sessions.clock().clone());
        let admin = Admin {
            sessions,
            db,
            keys: Default::default(),
            failed_auth,
        };
        admin.load_keys();
        admin
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    fn now(&self) -> i64 {
        self.sessions.clock().now_secs()
    }
}
