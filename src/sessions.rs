//! The login service: what a `login`, `resume`, `renew_sig` or `logout` does to accounts, the registry and the
//! connections (PROTOCOL §4). The WebSocket gateway and the HTTP API both call it, so the two cannot differ.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::dau::Dau;
use crate::error::{Code, Failure};
use crate::hub::{Hub, Push};
use crate::platform::Platform;
use crate::registry::policy::KickReason;
use crate::registry::{Attach, ConnRef, Instance, InstanceKey, Registry, RemoveIf};
use crate::request::LoginRequest;
use crate::token::TokenSigner;

/// How long a login waits for kicked connections to write their `kicked_offline` before it answers anyway.
const KICK_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Kicks are remembered for the grace, and at least this long, so a `resume` learns why.
const MIN_KICK_MEMORY_MS: i64 = 60 * 1000;

/// A successful `login` or `resume`.
#[derive(Debug, Clone)]
pub struct LoginOk {
    pub instance: Instance,
    pub session_token: String,
    pub repeat_login: bool,
    pub resumed: bool,
}

/// The response `data` of a `login` or `resume` (PROTOCOL §3), serialized straight from the instance.
#[derive(Debug, Serialize)]
pub struct LoginData<'a> {
    pub user_id: &'a str,
    pub platform: Platform,
    pub instance_id: &'a str,
    pub session_token: &'a str,
    pub sig_expires_at: i64,
    pub repeat_login: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

impl LoginOk {
    pub fn data(&self) -> LoginData<'_> {
        LoginData {
            user_id: &self.instance.user_id,
            platform: self.instance.platform,
            instance_id: &self.instance.instance_id,
            session_token: &self.session_token,
            sig_expires_at: self.instance.sig_expires_at,
            repeat_login: self.repeat_login,
            resumed: self.resumed,
        }
    }
}

/// Timing settings of sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionTiming {
    pub reconnect_grace: Duration,
    pub sig_expiry_notice_secs: i64,
    pub heartbeat_timeout: Duration,
}

pub struct Sessions {
    pub auth: Arc<Authenticator>,
    pub registry: Arc<dyn Registry>,
    pub hub: Hub,
    pub timing: SessionTiming,
    pub dau: Dau,
    pub clock: Clock,
    tokens: TokenSigner,
}

fn registry_down(e: impl std::fmt::Display) -> Failure {
    tracing::warn!(error = %e, "session registry unreachable");
    Failure::new(Code::InternalTimeout)
}

/// A new random instance id (96 bits, hex).
fn new_instance_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 12] = rand::random();
    let mut id = String::with_capacity(24);
    for b in bytes {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 15)] as char);
    }
    id
}

impl Sessions {
    pub fn new(
        auth: Arc<Authenticator>,
        registry: Arc<dyn Registry>,
        dau: Dau,
        timing: SessionTiming,
        session_secret: &str,
        clock: Clock,
    ) -> Arc<Sessions> {
        let node: u64 = rand::random();
        Arc::new(Sessions {
            auth,
            registry,
            hub: Hub::new(node),
            timing,
            tokens: TokenSigner::new(session_secret),
            dau,
            clock,
        })
    }

    fn remember_ms(&self) -> i64 {
        (self.timing.reconnect_grace.as_millis() as i64).max(MIN_KICK_MEMORY_MS)
    }

    /// A fresh `login` (WebSocket when `conn` is given, else HTTP: the instance starts disconnected).
    pub async fn login(
        &self,
        request: LoginRequest,
        ip: IpAddr,
        conn: Option<ConnRef>,
    ) -> Result<LoginOk, Failure> {
        let a = self.auth.login(&request, ip).await?;
        let fields = request.into_fields()?;
        let now_ms = self.clock.now_ms();
        let instance = Instance {
            sdkappid: fields.sdkappid,
            user_id: fields.user_id,
            platform: fields.platform,
            instance_id: new_instance_id(),
            device_id: fields.device_id,
            login_at_ms: now_ms,
            seq: 0,
            sig_expires_at: a.ticket.expires_at,
            conn,
            disconnected_at_ms: conn.is_none().then_some(now_ms),
        };
        let kicked = self
            .registry
            .admit(instance.clone(), &a.app.policy, self.remember_ms())
            .await
            .map_err(registry_down)?;
        self.deliver_kicks(&kicked, Some(instance.platform)).await;
        self.dau.mark(instance.sdkappid, &instance.user_id);
        tracing::debug!(sdkappid = instance.sdkappid, platform = %instance.platform, kicked = kicked.len(), "login");
        let session_token = self.tokens.sign(&instance.key());
        Ok(LoginOk {
            instance,
            session_token,
            repeat_login: false,
            resumed: false,
        })
    }

    /// Authenticates a `login` that repeats the connection's current one, and answers with that instance.
    pub async fn repeat_login(
        &self,
        request: LoginRequest,
        ip: IpAddr,
        key: &InstanceKey,
    ) -> Result<LoginOk, Failure> {
        self.auth.login(&request, ip).await?;
        let instance = self
            .registry
            .get(key)
            .await
            .map_err(registry_down)?
            .ok_or(Code::NotLoggedIn)?;
        Ok(LoginOk {
            instance,
            session_token: self.tokens.sign(key),
            repeat_login: true,
            resumed: false,
        })
    }

    /// Sends `kicked_offline` to every kicked instance that is connected and waits until each is written, for
    /// at most [`KICK_ACK_TIMEOUT`] in all: a stuck connection delays a login by that much, never more.
    async fn deliver_kicks(
        &self,
        kicked: &[(Instance, KickReason)],
        by_platform: Option<Platform>,
    ) {
        if kicked.iter().all(|(i, _)| i.conn.is_none()) {
            return;
        }
        let deadline = tokio::time::Instant::now() + KICK_ACK_TIMEOUT;
        let mut written = Vec::new();
        for (inst, reason) in kicked {
            let Some(conn) = inst.conn else { continue };
            let (done, rx) = oneshot::channel();
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
        }
    }

    /// The instance a session token names, if it verifies.
    pub fn token_key(&self, token: &str) -> Option<InstanceKey> {
        self.tokens.verify(token)
    }

    /// `resume`: attaches the instance named by `token` to `conn`; the connection it was attached to is closed
    /// with 4002. An instance whose UserSig has expired is not attached (6026): a disconnected one is removed, an
    /// attached one is left to its connection, which tells its client `user_sig_expired`.
    pub async fn resume(&self, token: &str, conn: ConnRef) -> Result<LoginOk, Failure> {
        let key = self.tokens.verify(token).ok_or(Code::NoPreviousLogin)?;
        let attached = self
            .registry
            .attach(&key, conn, self.clock.now_secs())
            .await
            .map_err(registry_down)?;
        let (instance, previous) = match attached {
            Attach::Attached { instance, previous } => (instance, previous),
            Attach::Expired(instance) => {
                if instance.conn.is_none() {
                    self.expire(&key, instance.sig_expires_at).await;
                }
                return Err(Failure::with_message(
                    Code::NoPreviousLogin,
                    "the session's UserSig has expired; log in again with a new one",
                ));
            }
            Attach::Gone => {
                return Err(
                    match self.registry.kicked(&key).await.map_err(registry_down)? {
                        Some(reason) => Failure::with_message(
                            reason.code(),
                            format!("kicked offline ({})", reason.as_str()),
                        ),
                        None => Failure::new(Code::NoPreviousLogin),
                    },
                )
            }
        };
        if let Some(previous) = previous {
            self.hub
                .send(
                    previous,
                    Push::ResumedElsewhere {
                        instance_id: key.instance_id.clone(),
                    },
                )
                .await;
        }
        Ok(LoginOk {
            instance,
            session_token: token.to_owned(),
            repeat_login: false,
            resumed: true,
        })
    }

    /// `renew_sig`: a fresh ticket for the same app and user extends the instance. Returns the new expiry.
    pub async fn renew(
        &self,
        key: &InstanceKey,
        user_sig: &str,
        ip: IpAddr,
    ) -> Result<i64, Failure> {
        let v = self
            .auth
            .renew(key.sdkappid, &key.user_id, user_sig, ip)
            .await?;
        if !self
            .registry
            .set_sig_expiry(key, v.expires_at)
            .await
            .map_err(registry_down)?
        {
            return Err(Code::NotLoggedIn.into());
        }
        Ok(v.expires_at)
    }

    /// Removes the instance (`logout`, switching away). `true` if it existed.
    pub async fn logout(&self, key: &InstanceKey) -> Result<bool, Failure> {
        Ok(self
            .registry
            .remove(key, RemoveIf::Always)
            .await
            .map_err(registry_down)?
            .is_some())
    }

    /// Removes the instance because its UserSig expired at `expires_at` (unless renewed meanwhile).
    pub async fn expire(&self, key: &InstanceKey, expires_at: i64) {
        if let Err(e) = self
            .registry
            .remove(key, RemoveIf::SigExpiresAt(expires_at))
            .await
        {
            tracing::warn!(error = %e, "could not remove an instance whose UserSig expired");
        }
    }

    /// The connection ended without `logout`: the instance stays, disconnected, for the grace (the reaper
    /// removes it after that).
    pub async fn detach(&self, key: &InstanceKey, conn: ConnRef) {
        if let Err(e) = self.registry.detach(key, conn, self.clock.now_ms()).await {
            tracing::warn!(error = %e, "could not mark an instance disconnected");
        }
    }

    /// The instance a session token names (HTTP API).
    pub async fn session(&self, token: &str) -> Result<Instance, Failure> {
        let key = self.tokens.verify(token).ok_or(Code::NoPreviousLogin)?;
        let inst = self
            .registry
            .get(&key)
            .await
            .map_err(registry_down)?
            .ok_or(Code::NoPreviousLogin)?;
        if self.clock.now_secs() > inst.sig_expires_at {
            return Err(Code::NoPreviousLogin.into());
        }
        Ok(inst)
    }

    /// `POST /v1/logout`: removes the instance; an attached connection is told `logged_out`.
    pub async fn http_logout(&self, token: &str) -> Result<(), Failure> {
        let key = self.tokens.verify(token).ok_or(Code::NoPreviousLogin)?;
        let inst = self
            .registry
            .remove(&key, RemoveIf::Always)
            .await
            .map_err(registry_down)?;
        let inst = inst.ok_or(Code::NoPreviousLogin)?;
        if let Some(conn) = inst.conn {
            self.hub
                .send(
                    conn,
                    Push::LoggedOut {
                        instance_id: inst.instance_id,
                    },
                )
                .await;
        }
        Ok(())
    }

    /// Removes every instance of a user (admin kick, account deleted or disabled); connected ones are told why.
    pub async fn kick_user(
        &self,
        sdkappid: u32,
        user_id: &str,
        reason: KickReason,
    ) -> Result<usize, Failure> {
        let removed = self
            .registry
            .remove_user(sdkappid, user_id, reason, self.remember_ms())
            .await
            .map_err(registry_down)?;
        let kicked: Vec<(Instance, KickReason)> =
            removed.into_iter().map(|i| (i, reason)).collect();
        self.deliver_kicks(&kicked, None).await;
        Ok(kicked.len())
    }

    /// The reaper: removes disconnected instances at the end of their grace, or at their UserSig's expiry, a
    /// quarter of the grace apart (at most a second), until `stop`. One task and one scan, instead of a timer
    /// per instance.
    pub async fn reap_until(self: Arc<Self>, stop: CancellationToken) {
        let grace_ms = self.timing.reconnect_grace.as_millis() as i64;
        let every = Duration::from_millis((grace_ms / 4).clamp(50, 1000) as u64);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.registry.reap(self.clock.now_ms(), grace_ms).await {
                tracing::warn!(error = %e, "could not reap disconnected instances");
            }
        }
    }
}
