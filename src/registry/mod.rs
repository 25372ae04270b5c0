//! The session registry: every logged-in instance (user × platform × instance), attached to a connection or
//! disconnected within the grace, and the multi-terminal policy that admits new ones (PROTOCOL §4, §5).
//!
//! [`Registry`] is the storage; [`policy`] decides. A backend only stores and applies what the policy says, so
//! the in-memory and the cluster (Redis) backends cannot disagree on the rules.

pub mod memory;
pub mod policies;
pub mod policy;
pub mod redis;
pub mod users;

use async_trait::async_trait;

use crate::model::{ConnRef, Instance, InstanceKey, Kick, KickReason, Policy, Seq};

/// The registry backend is unreachable (Redis down); logins answer 70169.
#[derive(Debug, thiserror::Error)]
#[error("session registry: {0}")]
pub struct RegistryError(pub String);

pub type RegResult<T> = Result<T, RegistryError>;

/// When [`Registry::remove`] may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveIf {
    Always,
    /// Only if its UserSig still expires at this moment (not renewed since).
    SigExpiresAt(i64),
    /// Only if it is not attached to a connection other than this one: a connection logging out or switching
    /// away after another connection's resume took the instance leaves it there.
    NotElsewhere(ConnRef),
}

/// The result of admitting a login.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The instances it displaced, with why.
    pub kicked: Vec<(Instance, KickReason)>,
    pub seq: Seq,
}

/// The result of attaching an instance to a connection.
#[derive(Debug, Clone)]
pub enum Attach {
    Attached {
        instance: Instance,
        /// The connection it was attached to before, which must be closed with 4002.
        previous: Option<ConnRef>,
        /// The user's change number after the call.
        seq: Seq,
        /// The change that attached the instance to this connection (this call's, or an earlier one if it was
        /// attached to it already): what the connection gives as [`Take::IfNewer`] when it checks it.
        attachment: Seq,
    },
    /// Its UserSig has expired: it was left as it was (on the connection it is on, if any).
    Expired(Instance),
    /// On another connection, and left there ([`Take::IfNewer`]).
    Elsewhere(ConnRef),
    /// No such instance.
    Gone,
}

/// Whether attaching an instance may take it from the connection it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// A resume: the client is on the new connection now, and the old one is closed with 4002.
    Always,
    /// A node checking a connection that attached the instance by change `known` (its login, its resume, or a
    /// put-back), after pushes may have been lost: an instance another connection attached since stays there (its
    /// client resumed there; the lost push would have told this connection); one attached to another connection
    /// earlier than `known` is taken back (Redis lost this connection's attachment: a failover).
    IfNewer(Seq),
}

/// An instance the reaper removed.
#[derive(Debug, Clone)]
pub enum Reaped {
    /// Disconnected past the grace (no webhook: the disconnection was reported when it happened).
    GraceEnded(Instance),
    /// Its UserSig expired while it was disconnected.
    Expired(Instance, Seq),
    /// Its node stopped heartbeating: it is now disconnected, resumable on any node for the grace.
    Disconnected(Instance, Seq),
}

/// Storage of instances. Every method on one user is linearizable; every change is numbered ([`Seq`]).
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Adds `new` under `policy` (see [`policy::admit`]) and removes what it displaces, returning the removed
    /// instances with their reasons. Removed instances are remembered (see [`Registry::kicked`]), with `new`'s
    /// platform as the kicker's, for `remember_ms`.
    async fn admit(&self, new: Instance, policy: &Policy, remember_ms: i64) -> RegResult<Admitted>;
    /// Puts back an instance that a connection still holds and the registry lost (a Redis failover lost the
    /// write that admitted it: replication is asynchronous): only if the user has not changed since `known`,
    /// the change number of the connection's last write, if the instance is not there, and if it kicks nobody.
    /// Returns its change number, `None` if it was not put back. The memory registry never loses a write.
    async fn reassert(
        &self,
        _inst: Instance,
        _policy: &Policy,
        _remember_ms: i64,
        _known: Seq,
    ) -> RegResult<Option<Seq>> {
        Ok(None)
    }
    async fn get(&self, key: &InstanceKey) -> RegResult<Option<Instance>>;
    /// Attaches the instance to `conn` (clearing its disconnected mark), unless its UserSig has expired by
    /// `now_secs`, or `take` leaves it on the connection it is on ([`Take::IfNewer`]).
    async fn attach(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        now_secs: i64,
        take: Take,
    ) -> RegResult<Attach>;
    /// Marks the instance disconnected at `now_ms` if it is still attached to `conn`.
    async fn detach(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        now_ms: i64,
    ) -> RegResult<Option<(Instance, Seq)>>;
    /// [`Registry::detach`] for each of `ended` (connections that ended meanwhile), in one step where the backend
    /// can; the results in order.
    async fn detach_many(
        &self,
        ended: &[(InstanceKey, ConnRef)],
        now_ms: i64,
    ) -> RegResult<Vec<Option<(Instance, Seq)>>> {
        let mut out = Vec::with_capacity(ended.len());
        for (key, conn) in ended {
            out.push(self.detach(key, *conn, now_ms).await?);
        }
        Ok(out)
    }
    /// Removes the instance (logout, expiry) if `cond` holds.
    async fn remove(&self, key: &InstanceKey, cond: RemoveIf)
        -> RegResult<Option<(Instance, Seq)>>;
    /// Removes one instance for `reason` (an admin kick), remembering why for `remember_ms`.
    async fn kick(
        &self,
        key: &InstanceKey,
        reason: KickReason,
        remember_ms: i64,
    ) -> RegResult<Option<(Instance, Seq)>>;
    /// Removes every instance of a user for `reason`, remembering why for `remember_ms`.
    async fn remove_user(
        &self,
        sdkappid: u32,
        user_id: &str,
        reason: KickReason,
        remember_ms: i64,
    ) -> RegResult<(Vec<Instance>, Seq)>;
    /// Sets a new UserSig expiry (`renew_sig`); `false` if the instance is gone.
    async fn set_sig_expiry(&self, key: &InstanceKey, expires_at: i64) -> RegResult<bool>;
    async fn user_instances(&self, sdkappid: u32, user_id: &str) -> RegResult<Vec<Instance>>;
    /// The instances of each user, in the order given.
    async fn users_instances(
        &self,
        sdkappid: u32,
        user_ids: &[String],
    ) -> RegResult<Vec<Vec<Instance>>> {
        let mut out = Vec::with_capacity(user_ids.len());
        for u in user_ids {
            out.push(self.user_instances(sdkappid, u).await?);
        }
        Ok(out)
    }
    async fn app_instances(&self, sdkappid: u32) -> RegResult<Vec<Instance>>;
    /// Why the instance was kicked (and by which platform's login), while that is remembered.
    async fn kicked(&self, key: &InstanceKey) -> RegResult<Option<Kick>>;
    /// Removes every disconnected instance whose grace (`grace_ms` from its disconnection) has ended or whose
    /// UserSig has expired, and forgets kick records past their time. Run periodically.
    async fn reap(&self, now_ms: i64, grace_ms: i64) -> RegResult<Vec<Reaped>>;

    /// Tells the cluster this node is alive (run every second); `true` if the cluster had forgotten it (its
    /// instances were marked disconnected: the node must check its connections, see `Sessions::reconcile`).
    async fn heartbeat(&self) -> RegResult<bool> {
        Ok(false)
    }
    /// This node stops (its connections are closed): the cluster forgets it at once.
    async fn leave(&self) -> RegResult<()> {
        Ok(())
    }
    /// The instances the registry holds as attached to this node's connections.
    async fn node_instances(&self) -> RegResult<Vec<Instance>> {
        Ok(Vec::new())
    }
    /// Whether the backend answers (`/readyz`).
    async fn ping(&self) -> RegResult<()> {
        Ok(())
    }
}
