//! Kicks the login service makes: telling kicked connections (and waiting, within a bound, until each has
//! written its `kicked_offline`), an admin's kicks of a user or an instance, and a removed app's users.

use std::net::IpAddr;
use std::time::Duration;

use super::service::{Actor, Sessions};
use super::settle::Write;
use crate::accounts::LoginState;
use crate::model::error::Code;
use crate::model::error::Failure;
use crate::model::{Cause, ConnRef, Instance, InstanceKey, KickReason, Platform};
use crate::push::hub::{Ack, Push};
use crate::registry::{RegResult, RegistryError};

/// The kick an account that has ended makes of an instance logged in at `login_at_ms`, if it has: deleted
/// (70107), its tickets revoked at or after that login (70052), disabled (70051). `None` for the login time
/// checks deletion and disabling only.
pub(super) fn ended(account: &Option<LoginState>, login_at_ms: Option<i64>) -> Option<KickReason> {
    let Some(a) = account else {
        return Some(KickReason::AccountDeleted);
    };
    match login_at_ms {
        Some(t) if a.revoked_at > 0 && a.revoked_at >= t / 1000 => {
            Some(KickReason::AdminKickRevoked)
        }
        _ if a.disabled => Some(KickReason::AccountDisabled),
        _ => None,
    }
}

/// How long a login waits for kicked connections to write their `kicked_offline` before it answers anyway.
const KICK_ACK_TIMEOUT: Duration = Duration::from_secs(2);

impl Sessions {
    /// Sends `kicked_offline` to every kicked instance that is connected and waits until each is written, for
    /// at most [`KICK_ACK_TIMEOUT`] in all: a stuck connection delays a login by that much, never more.
    pub(super) async fn deliver_kicks(
        &self,
        kicked: &[(Instance, KickReason)],
        by_platform: Option<Platform>,
    ) {
        if kicked.iter().all(|(i, _)| i.conn.is_none()) {
            if let Some(m) = &self.metrics {
                for (inst, reason) in kicked {
                    m.kick(inst.sdkappid, reason.as_str());
                }
            }
            return;
        }
        let deadline = tokio::time::Instant::now() + KICK_ACK_TIMEOUT;
        let mut written = Vec::new();
        for (inst, reason) in kicked {
            if let Some(m) = &self.metrics {
                m.kick(inst.sdkappid, reason.as_str());
            }
            let Some(conn) = inst.conn else { continue };
            let (done, rx) = Ack::local();
            let by_platform = match reason {
                KickReason::MultiTerminal | KickReason::SameDevice => by_platform,
                _ => None,
            };
            let push = Push::Kicked {
                instance_id: inst.instance_id.clone(),
                reason: *reason,
                by_platform,
                done: Some(done),
            };
            if let Ok(true) = tokio::time::timeout_at(deadline, self.hub.send(conn, push)).await {
                written.push(rx);
            }
        }
        let all = futures_util::future::join_all(written);
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            tracing::warn!("a kicked connection did not write kicked_offline in time");
            if let Some(m) = &self.metrics {
                m.kick_waits_expired.inc();
            }
        }
    }

    /// Removes every instance of a user (an admin's kick, deletion or disabling of the account); connected ones
    /// are told why. Returns how many there were.
    pub async fn kick_user(
        &self,
        sdkappid: u32,
        user_id: &str,
        reason: KickReason,
        admin_ip: IpAddr,
    ) -> Result<usize, Failure> {
        let (removed, seq) = self
            .registry
            .remove_user(sdkappid, user_id, reason, self.remember_ms())
            .await
            .map_err(|e| self.registry_down(e))?;
        if let Some(first) = removed.first() {
            self.emit(
                first,
                seq,
                cause_of(reason),
                Actor::Admin(admin_ip),
                Vec::new(),
            );
        }
        let kicked: Vec<(Instance, KickReason)> =
            removed.into_iter().map(|i| (i, reason)).collect();
        self.deliver_kicks(&kicked, None).await;
        Ok(kicked.len())
    }

    /// The account's login state for a resume of `key`: from the cache, or the database. The cache is kept
    /// current by the bus's messages, and dropped when they may have been missed.
    pub(super) async fn account_of(
        &self,
        key: &InstanceKey,
    ) -> Result<Option<LoginState>, Failure> {
        self.auth
            .accounts()
            .login_state(key.sdkappid, &key.user_id)
            .await
            .map_err(|_| Failure::new(Code::InternalTimeout))
    }

    /// Refuses a resume of `key` whose account has ended since its login (deleted, disabled, its tickets
    /// revoked): the admin action's kick of the instance may have been lost with Redis (a failover), but the
    /// database keeps what the admin did. The kick is made again (the instance removed and the kick recorded,
    /// so any later resume answers the same) and the connection that held the instance is told: `previous` if
    /// this resume had attached it to `resumed_on` already. The answer is the kick's code.
    pub(super) async fn refuse_ended(
        &self,
        key: &InstanceKey,
        reason: KickReason,
        resumed_on: Option<ConnRef>,
        previous: Option<ConnRef>,
    ) -> Failure {
        match self.registry.kick(key, reason, self.remember_ms()).await {
            Ok(Some((mut inst, _))) => {
                if resumed_on.is_some() && inst.conn == resumed_on {
                    inst.conn = previous;
                }
                if inst.conn.is_some() {
                    self.deliver_kicks(&[(inst, reason)], None).await;
                }
            }
            Ok(None) => {}
            // Left to the reaper after the grace; every resume meanwhile is refused the same way.
            Err(e) => {
                tracing::warn!(error = %e, "could not remove an instance whose account has ended")
            }
        }
        Failure::with_message(
            reason.code(),
            format!("kicked offline ({})", reason.as_str()),
        )
    }

    /// Removes one instance (an admin's kick); its connection, if any, is told why. `false` if it is gone.
    pub async fn kick_instance(
        &self,
        key: &InstanceKey,
        reason: KickReason,
        admin_ip: IpAddr,
    ) -> Result<bool, Failure> {
        let removed = self
            .registry
            .kick(key, reason, self.remember_ms())
            .await
            .map_err(|e| self.registry_down(e))?;
        let Some((inst, seq)) = removed else {
            return Ok(false);
        };
        self.emit(
            &inst,
            seq,
            cause_of(reason),
            Actor::Admin(admin_ip),
            Vec::new(),
        );
        self.deliver_kicks(&[(inst, reason)], None).await;
        Ok(true)
    }

    /// Kicks every instance of an app the configuration no longer has (a reload removed it); when the registry
    /// does not answer, this is done again until it does (unless the app is configured again meanwhile).
    pub async fn end_app(&self, sdkappid: u32) -> usize {
        match self.try_end_app(sdkappid).await {
            Ok(n) => n,
            Err(e) => {
                let what = "could not kick a removed app's instances; trying again";
                self.retry_later(e, what, Write::EndApp { sdkappid });
                0
            }
        }
    }

    /// [`Sessions::end_app`], once: how many instances were kicked.
    pub(crate) async fn try_end_app(&self, sdkappid: u32) -> RegResult<usize> {
        let instances = self.registry.app_instances(sdkappid).await?;
        let users: std::collections::BTreeSet<crate::model::UserId> =
            instances.into_iter().map(|i| i.user_id).collect();
        let server = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let mut kicked = 0;
        for user in users {
            kicked += self
                .kick_user(sdkappid, &user, KickReason::AppRemoved, server)
                .await
                .map_err(|f| RegistryError(format!("kick failed ({})", f.code.number())))?;
        }
        Ok(kicked)
    }
}

/// The webhook cause of an admin's removal.
fn cause_of(reason: KickReason) -> Cause {
    match reason {
        KickReason::AccountDeleted => Cause::AccountDeleted,
        KickReason::AccountDisabled => Cause::AccountDisabled,
        _ => Cause::AdminKick,
    }
}
