//! A logged-in instance and how it is named: the registry stores them, the login service makes them, pushes and
//! webhooks speak of them.

use serde::Serialize;

use super::{Platform, UserId};

/// A connection, named by the node that holds it and its number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ConnRef {
    pub node: u64,
    pub conn: u64,
}

/// One logged-in instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub sdkappid: u32,
    pub user_id: UserId,
    pub platform: Platform,
    pub instance_id: String,
    pub device_id: Option<String>,
    /// Login time, unix milliseconds.
    pub login_at_ms: i64,
    /// Login order across the registry (the policy's "oldest").
    pub seq: u64,
    /// When the instance's UserSig expires, unix seconds.
    pub sig_expires_at: i64,
    /// The connection it is attached to; `None` while disconnected.
    pub conn: Option<ConnRef>,
    /// When it was last detached (unix ms); the grace runs from here.
    pub disconnected_at_ms: Option<i64>,
    /// The client address it logged in from.
    pub ip: std::net::IpAddr,
}

impl Instance {
    pub fn key(&self) -> InstanceKey {
        InstanceKey {
            sdkappid: self.sdkappid,
            user_id: self.user_id.clone(),
            instance_id: self.instance_id.clone(),
        }
    }

    pub fn is_online(&self) -> bool {
        self.conn.is_some()
    }
}

/// What a connection keeps of the instance it is logged in as, beyond its key and UserSig expiry: enough to put
/// the instance back if the registry loses it (a Redis failover loses the last writes), and the change that
/// attached it to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFacts {
    pub platform: Platform,
    pub device_id: Option<Box<str>>,
    pub login_at_ms: i64,
    pub ip: std::net::IpAddr,
    /// The user's change that attached the instance to this connection: its login's, resume's or put-back's.
    pub seq: Seq,
}

impl LoginFacts {
    pub fn of(inst: &Instance, seq: Seq) -> LoginFacts {
        LoginFacts {
            platform: inst.platform,
            device_id: inst.device_id.as_deref().map(Box::from),
            login_at_ms: inst.login_at_ms,
            ip: inst.ip,
            seq,
        }
    }

    /// The instance again, attached to `conn`.
    pub fn instance(&self, key: &InstanceKey, sig_expires_at: i64, conn: ConnRef) -> Instance {
        Instance {
            sdkappid: key.sdkappid,
            user_id: key.user_id.clone(),
            platform: self.platform,
            instance_id: key.instance_id.clone(),
            device_id: self.device_id.as_deref().map(str::to_owned),
            login_at_ms: self.login_at_ms,
            seq: 0,
            sig_expires_at,
            conn: Some(conn),
            disconnected_at_ms: None,
            ip: self.ip,
        }
    }
}

/// Names an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceKey {
    pub sdkappid: u32,
    pub user_id: UserId,
    pub instance_id: String,
}

/// The number of a change to a user's instances: increasing per user, in the order the changes took effect
/// (and across restarts: it starts from the time, in ms × 1024). Webhooks carry it as `Seq`.
pub type Seq = u64;

/// The next change number of a user whose last one was `last`, at unix time `now_ms`.
pub fn next_seq(last: Seq, now_ms: i64) -> Seq {
    (last + 1).max((now_ms.max(0) as u64) << 10)
}
