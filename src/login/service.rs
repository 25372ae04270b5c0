//! The login service: what a `login`, `resume`, `renew_sig` or `logout` does to accounts, the registry and the
//! connections (PROTOCOL §4). The WebSocket gateway and the HTTP API both call it, so the two cannot differ.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounts::dau::Dau;
use crate::limits::counted::Counted;
use crate::login::auth::Authenticator;
use crate::login::request::LoginRequest;
use crate::login::settle::{Unsettled, Write};
use crate::login::tokens::TokenSigner;
use crate::model::error::{Code, Failure};
use crate::model::Cause;
use crate::model::KickReason;
use crate::model::Platform;
use crate::model::{ConnRef, Instance, InstanceKey, Kick, Seq};
use crate::push::bus::{Bus, Incoming, Message};
use crate::push::hub::{Ack, Hub, Push};
use crate::registry::policies::Policies;
use crate::registry::{Attach, Reaped, RegResult, Registry, RegistryError, RemoveIf};
use crate::runtime::clock::Clock;
use crate::runtime::metrics::Metrics;
use crate::webhooks::event::StateChange;
use crate::webhooks::outbox::Outbox;

/// How long a login waits for kicked connections to write their `kicked_offline` before it answers anyway.
const KICK_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Connection ends written to the registry in one step at most (see [`Sessions::detach_until`]).
const DETACH_BATCH: usize = 256;
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

/// What the login service is made of.
pub struct Parts {
    pub auth: Arc<Authenticator>,
    pub registry: Arc<dyn Registry>,
    pub policies: Policies,
    pub dau: Dau,
    pub outbox: Outbox,
    pub timing: SessionTiming,
    pub session_secret: String,
    pub clock: Clock,
    pub metrics: Option<Arc<Metrics>>,
    /// This node's number (in every `ConnRef` it hands out).
    pub node: u64,
    /// How this node reaches the others.
    pub bus: Arc<dyn Bus>,
    /// `limits.logins_in_progress_per_app`.
    pub logins_in_progress_per_app: u32,
}

pub struct Sessions {
    pub auth: Arc<Authenticator>,
    pub registry: Arc<dyn Registry>,
    pub policies: Policies,
    pub hub: Hub,
    pub timing: SessionTiming,
    pub dau: Dau,
    pub outbox: Outbox,
    pub clock: Clock,
    pub metrics: Option<Arc<Metrics>>,
    tokens: TokenSigner,
    /// Logins in progress per app (`limits.logins_in_progress_per_app`).
    in_progress: Arc<Counted<u32>>,
    /// Connection ends waiting for [`Sessions::detach_until`], while it runs.
    ended: OnceLock<mpsc::UnboundedSender<Ended>>,
    /// Registry writes to do again once the registry answers (see [`crate::login::settle`]).
    unsettled: Unsettled,
}

/// A connection that ended holding an instance, and why.
type Ended = (InstanceKey, ConnRef, Cause);

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

/// Who caused a change, for its webhook: the instance's client, or an admin (`OptPlatform=RESTAPI`).
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    Client(IpAddr),
    Admin(IpAddr),
}

impl Sessions {
    pub fn new(parts: Parts) -> Arc<Sessions> {
        Arc::new(Sessions {
            auth: parts.auth,
            registry: parts.registry,
            policies: parts.policies,
            hub: Hub::new(parts.node, parts.bus),
            timing: parts.timing,
            tokens: TokenSigner::new(&parts.session_secret),
            dau: parts.dau,
            outbox: parts.outbox,
            clock: parts.clock,
            metrics: parts.metrics,
            in_progress: Counted::new(parts.logins_in_progress_per_app),
            ended: OnceLock::new(),
            unsettled: Unsettled::default(),
        })
    }

    /// The registry writes this node has yet to settle.
    pub fn unsettled(&self) -> &Unsettled {
        &self.unsettled
    }

    fn registry_down(&self, e: impl std::fmt::Display) -> Failure {
        self.registry_failed(e, "session registry unreachable");
        Failure::new(Code::InternalTimeout)
    }

    /// A registry request failed (`what`): it may have committed all the same, so the node sweeps later.
    fn registry_failed(&self, e: impl std::fmt::Display, what: &'static str) {
        tracing::warn!(error = %e, "{what}");
        if let Some(m) = &self.metrics {
            m.registry_errors.inc();
        }
        self.unsettled.suspect();
    }

    /// A registry write that failed (or whose answer did not come) is done again until the registry answers.
    fn retry_later(&self, e: impl std::fmt::Display, what: &'static str, w: Write) {
        self.registry_failed(e, what);
        self.unsettled.push(w);
    }

    fn remember_ms(&self) -> i64 {
        (self.timing.reconnect_grace.as_millis() as i64).max(MIN_KICK_MEMORY_MS)
    }

    /// Emits a state change caused by the instance's own client (see [`Sessions::emit`]).
    pub(crate) fn emit_change(&self, instance: &Instance, seq: Seq, cause: Cause, actor: Actor) {
        self.emit(instance, seq, cause, actor, Vec::new());
    }

    /// Emits a state change of `user` if the app has a webhook.
    fn emit(
        &self,
        instance: &Instance,
        seq: Seq,
        cause: Cause,
        actor: Actor,
        kicked: Vec<Platform>,
    ) {
        let has_webhook = self
            .auth
            .apps()
            .get(instance.sdkappid)
            .is_some_and(|a| a.webhook.is_some());
        if !has_webhook {
            return;
        }
        let (platform, client_ip) = match actor {
            Actor::Client(ip) => (Some(instance.platform), ip),
            Actor::Admin(ip) => (None, ip),
        };
        self.outbox.emit(StateChange {
            sdkappid: instance.sdkappid,
            user_id: instance.user_id.clone(),
            seq,
            cause,
            platform,
            kicked,
            client_ip,
            at_ms: self.clock.now_ms(),
        });
    }

    /// A fresh `login` (WebSocket when `conn` is given, else HTTP: the instance starts disconnected).
    pub async fn login(
        &self,
        request: LoginRequest,
        ip: IpAddr,
        conn: Option<ConnRef>,
    ) -> Result<LoginOk, Failure> {
        let Some(metrics) = &self.metrics else {
            return self.login_inner(request, ip, conn).await;
        };
        let started = std::time::Instant::now();
        // Only a configured app is a label value: what clients send cannot grow the label set.
        let app = request
            .sdkappid()
            .filter(|a| self.auth.apps().get(*a).is_some())
            .unwrap_or(0);
        let result = self.login_inner(request, ip, conn).await;
        let code = result.as_ref().map_or_else(|f| f.code.number(), |_| 0);
        metrics.login(app, code, started.elapsed());
        result
    }

    async fn login_inner(
        &self,
        request: LoginRequest,
        ip: IpAddr,
        conn: Option<ConnRef>,
    ) -> Result<LoginOk, Failure> {
        // Only a configured app is counted: what clients send cannot grow the map.
        let _in_progress = match request.sdkappid() {
            Some(app) if self.auth.apps().get(app).is_some() => {
                Some(self.in_progress.take(app).ok_or_else(|| {
                    Failure::with_message(
                        Code::InternalTimeout,
                        "too many logins of this app in progress; retry",
                    )
                })?)
            }
            _ => None,
        };
        let a = self.auth.login(&request, ip).await.inspect_err(|f| {
            // The authenticator's only internal failure is the account store's.
            if let (Code::InternalTimeout, Some(m)) = (f.code, &self.metrics) {
                m.db_error("accounts");
            }
        })?;
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
            ip,
        };
        let policy = self.policies.effective(&a.app);
        let admitted = match self
            .registry
            .admit(instance.clone(), &policy, self.remember_ms())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                // It may have committed: the login is answered with an error, so the instance must not stay.
                let undo = Write::Remove {
                    key: instance.key(),
                    cond: RemoveIf::Always,
                    cause: None,
                };
                self.retry_later(e, "session registry unreachable", undo);
                return Err(Failure::new(Code::InternalTimeout));
            }
        };
        self.deliver_kicks(&admitted.kicked, Some(instance.platform))
            .await;
        // A reload may have removed the app while this login ran, after its kicks listed the app's instances.
        if self.auth.apps().get(instance.sdkappid).is_none() {
            let key = instance.key();
            match self
                .registry
                .kick(&key, KickReason::AppRemoved, self.remember_ms())
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    let undo = Write::Remove {
                        key,
                        cond: RemoveIf::Always,
                        cause: None,
                    };
                    self.retry_later(e, "session registry unreachable", undo);
                }
            }
            return Err(Code::SdkAppIdNotFound.into());
        }
        self.dau.mark(instance.sdkappid, &instance.user_id);
        let kicked = admitted.kicked.iter().map(|(i, _)| i.platform).collect();
        self.emit(
            &instance,
            admitted.seq,
            Cause::Login,
            Actor::Client(ip),
            kicked,
        );
        tracing::debug!(sdkappid = instance.sdkappid, platform = %instance.platform, kicked = admitted.kicked.len(), "login");
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
            .map_err(|e| self.registry_down(e))?
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
        }
    }

    /// The instance a session token names, if it verifies.
    pub fn token_key(&self, token: &str) -> Option<InstanceKey> {
        self.tokens.verify(token)
    }

    /// The instance a session token names, if it verifies and its app is still configured: a reload that
    /// removes an app ends its sessions as it ends its tickets (70020), whatever the registry still holds.
    fn token_instance(&self, token: &str) -> Result<InstanceKey, Failure> {
        let key = self.tokens.verify(token).ok_or(Code::NoPreviousLogin)?;
        if self.auth.apps().get(key.sdkappid).is_none() {
            return Err(Code::SdkAppIdNotFound.into());
        }
        Ok(key)
    }

    /// `resume` from `ip`: attaches the instance named by `token` to `conn`; the connection it was attached to
    /// is closed with 4002. An instance whose UserSig has expired is not attached (6026): a disconnected one is
    /// removed, an attached one is left to its connection, which tells its client `user_sig_expired`.
    pub async fn resume(&self, token: &str, conn: ConnRef, ip: IpAddr) -> Result<LoginOk, Failure> {
        let key = self.token_instance(token)?;
        let attached = match self
            .registry
            .attach(&key, conn, self.clock.now_secs())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                // It may have committed: undone on this connection number, which the connection gives up.
                let undo = Write::Detach {
                    key,
                    conn,
                    cause: None,
                };
                self.retry_later(e, "session registry unreachable", undo);
                return Err(Failure::new(Code::InternalTimeout));
            }
        };
        let (instance, previous, seq) = match attached {
            Attach::Attached {
                instance,
                previous,
                seq,
            } => (instance, previous, seq),
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
                    match self
                        .registry
                        .kicked(&key)
                        .await
                        .map_err(|e| self.registry_down(e))?
                    {
                        Some(Kick { reason, .. }) => Failure::with_message(
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
        self.emit(&instance, seq, Cause::Resume, Actor::Client(ip), Vec::new());
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
            .map_err(|e| self.registry_down(e))?
        {
            return Err(Code::NotLoggedIn.into());
        }
        Ok(v.expires_at)
    }

    /// Removes the instance (`logout`, or switching away from it). `true` if it existed.
    pub async fn logout(
        &self,
        key: &InstanceKey,
        cause: Cause,
        ip: IpAddr,
    ) -> Result<bool, Failure> {
        let removed = self
            .registry
            .remove(key, RemoveIf::Always)
            .await
            .map_err(|e| self.registry_down(e))?;
        if let Some((inst, seq)) = &removed {
            self.emit(inst, *seq, cause, Actor::Client(ip), Vec::new());
        }
        Ok(removed.is_some())
    }

    /// Removes the instance because its UserSig expired at `expires_at` (unless renewed meanwhile).
    pub async fn expire(&self, key: &InstanceKey, expires_at: i64) {
        match self
            .registry
            .remove(key, RemoveIf::SigExpiresAt(expires_at))
            .await
        {
            Ok(Some((inst, seq))) => self.emit(
                &inst,
                seq,
                Cause::UserSigExpired,
                Actor::Client(inst.ip),
                Vec::new(),
            ),
            Ok(None) => {}
            Err(e) => {
                let w = Write::Remove {
                    key: key.clone(),
                    cond: RemoveIf::SigExpiresAt(expires_at),
                    cause: Some(Cause::UserSigExpired),
                };
                self.retry_later(e, "could not remove an instance whose UserSig expired", w)
            }
        }
    }

    /// Logs out the instance a connection switches away from (a login as someone else, a resume of another
    /// instance); the connection no longer holds it, so a removal that fails is done again later.
    pub async fn switch_away(&self, key: &InstanceKey, ip: IpAddr) {
        match self.registry.remove(key, RemoveIf::Always).await {
            Ok(Some((inst, seq))) => {
                self.emit(&inst, seq, Cause::Switch, Actor::Client(ip), Vec::new())
            }
            Ok(None) => {}
            Err(e) => {
                let w = Write::Remove {
                    key: key.clone(),
                    cond: RemoveIf::Always,
                    cause: Some(Cause::Switch),
                };
                self.retry_later(
                    e,
                    "could not log out the instance being switched away from",
                    w,
                )
            }
        }
    }

    /// The connection ended without `logout` (`cause`: lost, or silent past the heartbeat): the instance stays,
    /// disconnected, for the grace (the reaper removes it after that).
    pub async fn detach(&self, key: &InstanceKey, conn: ConnRef, cause: Cause) {
        match self.registry.detach(key, conn, self.clock.now_ms()).await {
            Ok(Some((inst, seq))) => {
                self.emit(&inst, seq, cause, Actor::Client(inst.ip), Vec::new())
            }
            Ok(None) => {}
            Err(e) => {
                let w = Write::Detach {
                    key: key.clone(),
                    conn,
                    cause: Some(cause),
                };
                self.retry_later(e, "could not mark an instance disconnected", w)
            }
        }
    }

    /// [`Sessions::detach`] without waiting: the connection ends now, and its instance is marked disconnected with
    /// others that ended meanwhile, in one call to the registry. `Err` gives the key back when that does not run
    /// (the memory registry, where a detach is cheap, or when stopping): detach it then.
    pub fn detach_later(
        &self,
        key: InstanceKey,
        conn: ConnRef,
        cause: Cause,
    ) -> Result<(), InstanceKey> {
        match self.ended.get() {
            Some(tx) => tx.send((key, conn, cause)).map_err(|e| e.0 .0),
            None => Err(key),
        }
    }

    /// Marks the instances of connections that ended disconnected (see [`Sessions::detach_later`]) until `stop`,
    /// then those still queued. For the cluster registry: one script call for every end queued while the call
    /// before it ran, instead of a round trip each; an end waits at most for the call in flight.
    pub async fn detach_until(self: Arc<Self>, stop: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if self.ended.set(tx).is_err() {
            return;
        }
        let mut batch = Vec::with_capacity(DETACH_BATCH);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut batch, DETACH_BATCH) => n,
                // Connections are closed before workers stop: what is queued now is the last of them.
                _ = stop.cancelled() => {
                    rx.close();
                    rx.recv_many(&mut batch, DETACH_BATCH).await
                }
            };
            if n == 0 {
                return;
            }
            self.write_detaches(&mut batch).await;
        }
    }

    async fn write_detaches(&self, batch: &mut Vec<Ended>) {
        let (ended, causes): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|(key, conn, cause)| ((key, conn), cause))
            .unzip();
        match self.registry.detach_many(&ended, self.clock.now_ms()).await {
            Ok(results) => {
                for (r, cause) in results.into_iter().zip(causes) {
                    if let Some((inst, seq)) = r {
                        self.emit(&inst, seq, cause, Actor::Client(inst.ip), Vec::new());
                    }
                }
            }
            Err(e) => {
                self.registry_failed(e, "could not mark instances disconnected");
                for ((key, conn), cause) in ended.into_iter().zip(causes) {
                    let cause = Some(cause);
                    self.unsettled.push(Write::Detach { key, conn, cause });
                }
            }
        }
    }

    /// The instance a session token names (HTTP API).
    pub async fn session(&self, token: &str) -> Result<Instance, Failure> {
        let key = self.token_instance(token)?;
        let inst = self
            .registry
            .get(&key)
            .await
            .map_err(|e| self.registry_down(e))?
            .ok_or(Code::NoPreviousLogin)?;
        if self.clock.now_secs() > inst.sig_expires_at {
            return Err(Code::NoPreviousLogin.into());
        }
        Ok(inst)
    }

    /// `POST /v1/logout` from `ip`: removes the instance; an attached connection is told `logged_out`.
    pub async fn http_logout(&self, token: &str, ip: IpAddr) -> Result<(), Failure> {
        let key = self.tokens.verify(token).ok_or(Code::NoPreviousLogin)?;
        let removed = self
            .registry
            .remove(&key, RemoveIf::Always)
            .await
            .map_err(|e| self.registry_down(e))?;
        let (inst, seq) = removed.ok_or(Code::NoPreviousLogin)?;
        self.emit(&inst, seq, Cause::Logout, Actor::Client(ip), Vec::new());
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
            match self.registry.reap(self.clock.now_ms(), grace_ms).await {
                Ok(reaped) => {
                    for r in reaped {
                        // The end of the grace sends nothing: the disconnection was reported when it happened.
                        let (inst, seq, cause) = match r {
                            Reaped::Expired(inst, seq) => (inst, seq, Cause::UserSigExpired),
                            Reaped::Disconnected(inst, seq) => (inst, seq, Cause::Disconnect),
                            Reaped::GraceEnded(_) => continue,
                        };
                        let ip = inst.ip;
                        self.emit(&inst, seq, cause, Actor::Client(ip), Vec::new());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not reap disconnected instances"),
            }
        }
    }
    /// Heartbeats into the cluster registry every second until `stop`; when the cluster had given this node up
    /// (it was silent too long), its connections are checked against the registry. At the end, the node leaves.
    pub async fn heartbeat_until(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            match self.registry.heartbeat().await {
                Ok(forgotten) => {
                    if forgotten && !first {
                        tracing::warn!(
                            "the cluster had given this node up; checking its connections"
                        );
                        self.reconcile().await;
                    }
                    first = false;
                }
                Err(e) => tracing::warn!(error = %e, "cluster heartbeat failed"),
            }
        }
        if let Err(e) = self.registry.leave().await {
            tracing::warn!(error = %e, "could not leave the cluster; it will notice the silence");
        }
    }

    /// Handles what the bus brings until it closes or `stop`.
    pub async fn follow_bus(
        self: Arc<Self>,
        mut incoming: mpsc::Receiver<Incoming>,
        stop: CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                n = incoming.recv() => n,
                _ = stop.cancelled() => None,
            };
            match next {
                None => return,
                Some(Incoming::Resynced) => {
                    self.reconcile().await;
                }
                Some(Incoming::Message(e)) => match e.message {
                    Message::Account { sdkappid, user_id } => {
                        self.auth.accounts().invalidate(sdkappid, &user_id)
                    }
                    Message::Policies => {
                        if let Err(e) = self.policies.reload().await {
                            tracing::warn!(error = %e, "could not reload the admins' policies");
                        }
                    }
                    // Rate-limited: the settler checks the connections at its next sweep.
                    Message::Recheck => self.unsettled.recheck(),
                    message => self.hub.on_message(e.from, message),
                },
            }
        }
    }

    /// Tells every node that an account's login state changed (an admin disabled, deleted or revoked it).
    pub fn account_changed(&self, sdkappid: u32, user_id: &str) {
        self.hub.bus().broadcast(Message::Account {
            sdkappid,
            user_id: user_id.to_owned(),
        });
    }

    /// Tells every node that an admin changed a policy.
    pub fn policies_changed(&self) {
        self.hub.bus().broadcast(Message::Policies);
    }

    /// Brings this node back in line with the registry after pushes may have been lost: every connection checks
    /// its instance ([`Sessions::recheck`]), and instances the registry holds as attached here, on connections
    /// that no longer exist, are marked disconnected.
    pub async fn reconcile(&self) -> bool {
        self.hub.recheck_all();
        self.sweep_ghosts().await
    }

    /// Tells every node (this one too) to check its connections against the registry: an undone write may have
    /// kicked instances anywhere.
    pub(crate) fn recheck_everywhere(&self) {
        self.unsettled.recheck();
        self.hub.bus().broadcast(Message::Recheck);
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
        let users: std::collections::BTreeSet<String> =
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

    /// Marks disconnected every instance the registry holds as attached to a connection number this node does
    /// not hold (a connection that ended while the registry could not be told, an attempt that failed); the
    /// reaper removes them after the grace. `false` if the registry could not be read.
    pub async fn sweep_ghosts(&self) -> bool {
        match self.registry.node_instances().await {
            Ok(instances) => {
                let mut ghosts = 0;
                for inst in instances {
                    if let Some(conn) = inst.conn.filter(|c| !self.hub.holds(*c)) {
                        self.detach(&inst.key(), conn, Cause::Disconnect).await;
                        ghosts += 1;
                    }
                }
                if ghosts > 0 {
                    // Written by a request that reached the registry late, which may have kicked others too.
                    tracing::warn!(
                        ghosts,
                        "instances of connections this node no longer holds were disconnected"
                    );
                    self.recheck_everywhere();
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not list this node's instances");
                false
            }
        }
    }

    /// Checks that the instance is still attached to `conn` (attaching it again if the cluster marked it
    /// disconnected meanwhile).
    pub async fn recheck(&self, key: &InstanceKey, conn: ConnRef) -> Recheck {
        match self.registry.attach(key, conn, self.clock.now_secs()).await {
            Ok(Attach::Attached { previous, .. }) => {
                if let Some(previous) = previous {
                    let push = Push::ResumedElsewhere {
                        instance_id: key.instance_id.clone(),
                    };
                    self.hub.send(previous, push).await;
                }
                Recheck::Attached
            }
            // The connection's own timer tells its client.
            Ok(Attach::Expired(_)) => Recheck::Attached,
            Ok(Attach::Gone) => match self.registry.kicked(key).await {
                Ok(Some(kick)) => Recheck::Kicked(kick),
                _ => Recheck::Gone,
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not check an instance against the registry");
                Recheck::Attached
            }
        }
    }
}

/// Where a connection's instance stands in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    Attached,
    /// Removed by a kick this node did not hear of.
    Kicked(Kick),
    /// Removed (its grace ended while the node was cut off): the client must resume, which tells it to log in.
    Gone,
}

/// The webhook cause of an admin's removal.
fn cause_of(reason: KickReason) -> Cause {
    match reason {
        KickReason::AccountDeleted => Cause::AccountDeleted,
        KickReason::AccountDisabled => Cause::AccountDisabled,
        _ => Cause::AdminKick,
    }
}
