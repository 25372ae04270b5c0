//! The login service: what a `login`, `resume`, `renew_sig` or `logout` does to accounts, the registry and the
//! connections (PROTOCOL §4). The WebSocket gateway and the HTTP API both call it, so the two cannot differ.

pub use super::answer::{LoginData, LoginOk};
use super::ends::{Ended, EndsWorker};
use super::kicks::ended;
pub use super::upkeep::Recheck;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

use tokio::sync::mpsc;

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
use crate::push::bus::Bus;
use crate::push::hub::{Hub, Push};
use crate::registry::policies::Policies;
use crate::registry::{Attach, Registry, RemoveIf, Take};
use crate::runtime::clock::Clock;
use crate::runtime::metrics::Metrics;
use crate::webhooks::event::StateChange;
use crate::webhooks::outbox::Outbox;

/// Kicks are remembered for the grace, and at least this long, so a `resume` learns why.
const MIN_KICK_MEMORY_MS: i64 = 60 * 1000;

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

/// The login service: the only writer of the session registry. Its parts are private so every change goes
/// through the methods that keep its rules (policy, kicks told, webhooks, settling); others get read access.
pub struct Sessions {
    pub(super) auth: Arc<Authenticator>,
    pub(super) registry: Arc<dyn Registry>,
    pub(super) policies: Policies,
    pub(super) hub: Hub,
    pub(super) timing: SessionTiming,
    pub(super) dau: Dau,
    pub(super) outbox: Outbox,
    pub(super) clock: Clock,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) tokens: TokenSigner,
    /// Logins in progress per app (`limits.logins_in_progress_per_app`).
    pub(super) in_progress: Arc<Counted<u32>>,
    /// Connection ends waiting for the [`EndsWorker`].
    pub(super) ended: mpsc::UnboundedSender<Ended>,
    /// Work that outlives the connection that started it (a login still running when its connection ended),
    /// and the connections' own tasks: closed and awaited at shutdown.
    tasks: TaskTracker,
    /// Registry writes to do again once the registry answers (see [`crate::login::settle`]).
    pub(super) unsettled: Unsettled,
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

/// Who caused a change, for its webhook: the instance's client, or an admin (`OptPlatform=RESTAPI`).
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    Client(IpAddr),
    Admin(IpAddr),
}

impl Sessions {
    /// The service, and the worker that writes its connections' ends (the caller runs it).
    pub fn new(parts: Parts) -> (Arc<Sessions>, EndsWorker) {
        let (ended, rx) = mpsc::unbounded_channel();
        let sessions = Arc::new(Sessions {
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
            ended,
            tasks: TaskTracker::new(),
            unsettled: Unsettled::default(),
        });
        let worker = EndsWorker {
            sessions: sessions.clone(),
            rx,
        };
        (sessions, worker)
    }

    /// The tasks of connections, and of logins that outlive theirs: closed and awaited at shutdown.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The registry writes this node has yet to settle.
    pub fn unsettled(&self) -> &Unsettled {
        &self.unsettled
    }

    pub(super) fn registry_down(&self, e: impl std::fmt::Display) -> Failure {
        self.registry_failed(e, "session registry unreachable");
        Failure::new(Code::InternalTimeout)
    }

    /// A registry request failed (`what`): it may have committed all the same, so the node sweeps later.
    pub(super) fn registry_failed(&self, e: impl std::fmt::Display, what: &'static str) {
        tracing::warn!(error = %e, "{what}");
        if let Some(m) = &self.metrics {
            m.registry_errors.inc();
        }
        self.unsettled.suspect();
    }

    /// A registry write that failed (or whose answer did not come) is done again until the registry answers.
    pub(super) fn retry_later(&self, e: impl std::fmt::Display, what: &'static str, w: Write) {
        self.registry_failed(e, what);
        self.unsettled.push(w);
    }

    pub(super) fn remember_ms(&self) -> i64 {
        (self.timing.reconnect_grace.as_millis() as i64).max(MIN_KICK_MEMORY_MS)
    }

    /// Emits a state change caused by the instance's own client (see [`Sessions::emit`]).
    pub(crate) fn emit_change(&self, instance: &Instance, seq: Seq, cause: Cause, actor: Actor) {
        self.emit(instance, seq, cause, actor, Vec::new());
    }

    /// Emits a state change of `user` if the app has a webhook.
    pub(super) fn emit(
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
            user_id: instance.user_id.to_string(),
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
            seq: admitted.seq,
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
            seq: instance.seq,
            instance,
            session_token: self.tokens.sign(key),
            repeat_login: true,
            resumed: false,
        })
    }

    /// The instance a session token names, if it verifies.
    pub fn token_key(&self, token: &str) -> Option<InstanceKey> {
        self.tokens.verify(token)
    }

    /// The instance a session token names, if it verifies and its app is still configured: a reload that
    /// removes an app ends its sessions as it ends its tickets (70020), whatever the registry still holds.
    pub(super) fn token_instance(&self, token: &str) -> Result<InstanceKey, Failure> {
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
        // An account ended since (whose kick a Redis failover may have lost) resumes nothing.
        let account = self.account_of(&key).await?;
        if let Some(reason) = ended(&account, None) {
            return Err(self.refuse_ended(&key, reason, None, None).await);
        }
        let attached = match self
            .registry
            .attach(&key, conn, self.clock.now_secs(), Take::Always)
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
        let (instance, previous, seq, attachment) = match attached {
            Attach::Attached {
                instance,
                previous,
                seq,
                attachment,
            } => (instance, previous, seq, attachment),
            // Only a node checking its connections leaves an instance on another connection.
            Attach::Elsewhere(_) => return Err(Failure::new(Code::InternalTimeout)),
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
        if let Some(reason) = ended(&account, Some(instance.login_at_ms)) {
            return Err(self.refuse_ended(&key, reason, Some(conn), previous).await);
        }
        if let Some(previous) = previous {
            self.hub
                .send(
                    previous,
                    Push::ResumedElsewhere {
                        instance_id: key.instance_id.clone(),
                        attachment: Some(attachment),
                    },
                )
                .await;
        }
        self.emit(&instance, seq, Cause::Resume, Actor::Client(ip), Vec::new());
        Ok(LoginOk {
            instance,
            seq,
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

    /// Removes the instance connection `conn` holds (`logout`), unless another connection's resume took it
    /// meanwhile (that connection keeps it). `true` if it was removed.
    pub async fn logout(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        cause: Cause,
        ip: IpAddr,
    ) -> Result<bool, Failure> {
        let removed = self
            .registry
            .remove(key, RemoveIf::NotElsewhere(conn))
            .await
            .map_err(|e| self.registry_down(e))?;
        if let Some((inst, seq)) = &removed {
            self.emit(inst, *seq, cause, Actor::Client(ip), Vec::new());
        }
        Ok(removed.is_some())
    }
}
