//! One Web SDK connection: the same login service, registry and pushes as a `/v1/ws` connection, spoken in the
//! SDK's frames. Its [`State`] is in one place; one loop serves inbound frames, pushes, the login in progress and
//! one timer (heartbeat, UserSig expiry, write deadline).
//!
//! Where the SDK differs from the native protocol: a kicked or expired connection stays open (the SDK answers a
//! kick with `wslogout` and closes by itself), expiry is told as 70001 on the next request rather than as an
//! event, and an A2Key that no longer names a live instance is answered 70001 so that the SDK asks the app for a
//! new login.

use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::frames::{self, Command, LoginAnswer, Request};
use super::{inst_id, kick_type, tiny_id, HELLO_INTERVAL_SECS};
use crate::error::{Code, Failure};
use crate::gateway::connection::{
    poll_login_result, start, unregister_and_detach, Limits, Started,
};
use crate::gateway::io::{Inbound, Outbound};
use crate::gateway::protocol::close;
use crate::gateway::wire::{Ending, Wire, WireEvent};
use crate::hub::{Mailbox, Push};
use crate::metrics::OnlineMark;
use crate::registry::policy::KickReason;
use crate::registry::{ConnRef, InstanceKey};
use crate::sessions::{LoginOk, Recheck, Sessions};
use crate::webhooks::event::Cause;

/// The instance this connection is logged in as.
struct Current {
    key: InstanceKey,
    sig_expires_at: i64,
    /// Counts it in `imlogin_sessions_online` while it is held here.
    _online: Option<OnlineMark>,
}

enum State {
    LoggedOut,
    LoggingIn(Box<LoggingIn>),
    LoggedIn(Current),
    /// The UserSig expired while online: every request but a new login is answered 70001.
    Expired,
}

/// A `wslogin` running in a task of its own.
struct LoggingIn {
    servcmd: String,
    seq: Value,
    result: oneshot::Receiver<Box<Result<LoginOk, Failure>>>,
    attempt: Attempt,
    /// A kick that arrived for the instance before its login answered: (instance_id, KickType).
    early_kick: Option<(String, u8)>,
}

impl State {
    fn current(&self) -> Option<&Current> {
        match self {
            State::LoggedIn(c) => Some(c),
            _ => None,
        }
    }

    fn take_current(&mut self) -> Option<Current> {
        match std::mem::replace(self, State::LoggedOut) {
            State::LoggedIn(c) => Some(c),
            other => {
                *self = other;
                None
            }
        }
    }

    fn is_current(&self, instance_id: &str) -> bool {
        self.current()
            .is_some_and(|c| c.key.instance_id == instance_id)
    }

    fn poll_login(&mut self, cx: &mut Context<'_>) -> Poll<Result<LoginOk, Failure>> {
        match self {
            State::LoggingIn(l) => poll_login_result(&mut l.result, cx),
            _ => Poll::Pending,
        }
    }
}

struct Connection<'a, T> {
    sessions: Arc<Sessions>,
    conn: ConnRef,
    ip: IpAddr,
    /// Borrowed from the task that runs the connection: a copy here would cost every idle session its size.
    limits: &'a Limits,
    state: State,
    wire: Wire<'a, T>,
    last_seen: Instant,
    /// Until the first login succeeds: when the connection is closed for not logging in.
    login_deadline: Option<Instant>,
    end: Cause,
}

enum Flow {
    Continue,
    Stop,
}

/// Runs a Web SDK connection until it ends; `io` is left for the caller to close.
pub async fn serve<T>(io: &mut T, sessions: Arc<Sessions>, ip: IpAddr, limits: &Limits) -> Ending
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin,
{
    let (conn, mailbox) = sessions.hub.register();
    let mut c = Connection {
        sessions,
        conn,
        ip,
        limits,
        state: State::LoggedOut,
        wire: Wire::new(io, limits),
        last_seen: Instant::now(),
        login_deadline: Some(Instant::now() + limits.login_timeout),
        end: Cause::Disconnect,
    };
    c.run(&mailbox).await;
    let ending = if c.wire.abusive {
        Ending::Abort
    } else {
        Ending::Linger
    };
    if let Some(cur) = c.state.take_current() {
        let span = c.span();
        c.sessions
            .detach(&cur.key, c.conn, c.end)
            .instrument(span)
            .await;
    }
    ending
}

impl<T> Drop for Connection<'_, T> {
    /// Unregisters the connection and detaches its instance however the connection ends.
    fn drop(&mut self) {
        let key = self.state.current().map(|c| &c.key);
        unregister_and_detach(&self.sessions, self.conn, key);
    }
}

impl<T> Connection<'_, T>
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin,
{
    async fn run(&mut self, mailbox: &Mailbox) {
        // As on `/v1/ws`: the timer moves only when an earlier deadline appears, never per frame.
        let mut armed = self.next_deadline();
        let timer = tokio::time::sleep_until(armed);
        tokio::pin!(timer);
        loop {
            let wanted = self.next_deadline();
            if wanted < armed {
                armed = wanted;
                timer.as_mut().reset(armed);
            }
            let flow = tokio::select! {
                ev = poll_fn(|cx| self.wire.poll_event(cx)) => match ev {
                    WireEvent::Inbound(frame) => {
                        self.last_seen = Instant::now();
                        let span = self.span();
                        Box::pin(self.on_inbound(frame)).instrument(span).await
                    }
                    WireEvent::TooFast => {
                        self.wire.abusive = true;
                        self.close(close::POLICY, "too many frames per second")
                    }
                    WireEvent::Ended => Flow::Stop,
                },
                push = mailbox.recv() => {
                    let span = self.span();
                    Box::pin(self.on_push(push)).instrument(span).await
                }
                res = poll_fn(|cx| self.state.poll_login(cx)) => {
                    let span = self.span();
                    Box::pin(self.finish_login(res)).instrument(span).await
                }
                _ = &mut timer => {
                    let span = self.span();
                    let flow = Box::pin(self.on_timer()).instrument(span).await;
                    armed = self.next_deadline();
                    timer.as_mut().reset(armed);
                    flow
                }
            };
            if matches!(flow, Flow::Stop) {
                return;
            }
        }
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("websdk", conn = self.conn.conn, client_ip = %self.ip)
    }

    /// The earliest of the heartbeat, the UserSig expiry and the write deadline.
    fn next_deadline(&self) -> Instant {
        let mut at = self.last_seen + self.limits.heartbeat;
        if let Some(d) = self.login_deadline {
            at = at.min(d);
        }
        if let Some(cur) = self.state.current() {
            // Expired once the time is past `sig_expires_at` (as on `/v1/ws`).
            let ms = cur.sig_expires_at.saturating_add(1).saturating_mul(1000);
            at = at.min(self.sessions.clock.instant_at(ms));
        }
        if let Some(w) = self.wire.write_deadline {
            at = at.min(w);
        }
        at
    }

    fn close(&mut self, code: u16, reason: &'static str) -> Flow {
        self.wire.send(Outbound::Close(code, reason), None);
        Flow::Continue
    }

    async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        if self.login_deadline.is_some_and(|d| d <= now) {
            self.login_deadline = None;
            return self.close(close::POLICY, "no login within limits.login_timeout_secs");
        }
        if self.wire.write_deadline.is_some_and(|d| d <= now) {
            return Flow::Stop;
        }
        let now_secs = self.sessions.clock.now_secs();
        if let Some(cur) = self.state.current() {
            if now_secs > cur.sig_expires_at {
                let cur = self.state.take_current().expect("checked above");
                self.sessions.expire(&cur.key, cur.sig_expires_at).await;
                self.state = State::Expired;
            }
        }
        if self.last_seen + self.limits.heartbeat <= now {
            self.end = Cause::HeartbeatTimeout;
            if self.wire.blocked() {
                return Flow::Stop;
            }
            return self.close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
        }
        Flow::Continue
    }

    async fn on_push(&mut self, push: Push) -> Flow {
        match push {
            Push::Kicked {
                instance_id,
                reason,
                by_platform,
                done,
            } => {
                let kick = kick_type(reason, by_platform);
                if self.state.is_current(&instance_id) {
                    // Removed from the registry already. The SDK answers with `wslogout` (types 1 and 2) or
                    // closes by itself (type 3): the socket stays open for that.
                    self.state.take_current();
                    self.wire
                        .send(Outbound::Text(frames::kick_push(kick)), done);
                } else if let State::LoggingIn(l) = &mut self.state {
                    l.early_kick = Some((instance_id, kick));
                }
                Flow::Continue
            }
            Push::LoggedOut { instance_id } if self.state.is_current(&instance_id) => {
                // Logged out through HTTP with its A2Key: to the SDK, a kick by the server.
                self.state.take_current();
                self.wire.text(frames::kick_push(3));
                Flow::Continue
            }
            Push::ResumedElsewhere { instance_id } if self.state.is_current(&instance_id) => {
                self.state.take_current();
                self.close(close::RESUMED_ELSEWHERE, "resumed on another connection")
            }
            Push::Shutdown => {
                self.close(close::RESTARTING, "server restarting; resume on any node")
            }
            Push::LoggedOut { .. } | Push::ResumedElsewhere { .. } => Flow::Continue,
            Push::Recheck => self.recheck().await,
        }
    }

    async fn recheck(&mut self) -> Flow {
        let Some(key) = self.state.current().map(|c| c.key.clone()) else {
            return Flow::Continue;
        };
        match self.sessions.recheck(&key, self.conn).await {
            Recheck::Attached => Flow::Continue,
            Recheck::Kicked(reason) => {
                self.state.take_current();
                self.wire.text(frames::kick_push(kick_type(reason, None)));
                Flow::Continue
            }
            Recheck::Gone => {
                self.state.take_current();
                self.close(
                    close::RESTARTING,
                    "the session was lost; resume or log in again",
                )
            }
        }
    }

    async fn on_inbound(&mut self, frame: Inbound) -> Flow {
        let bytes = match &frame {
            Inbound::Text(t) => t.as_bytes(),
            Inbound::Binary(b) => b.as_ref(),
            Inbound::TooLarge => return self.close(close::TOO_LARGE, "message too large"),
            Inbound::Close => return Flow::Stop,
            Inbound::Control => return Flow::Continue,
        };
        if bytes.len() > self.limits.max_frame {
            return self.close(close::TOO_LARGE, "message too large");
        }
        match frames::parse(bytes) {
            Ok(req) => self.on_request(req).await,
            Err(why) => {
                // Not a request the SDK is waiting for: a head it can read, matching nothing it sent.
                let code = Code::InvalidParameters.number();
                let text = frames::fail_with("imlogin.bad_frame", &Value::Null, code, why, None);
                self.wire.text(text);
                Flow::Continue
            }
        }
    }

    async fn on_request(&mut self, req: Request) -> Flow {
        let Request {
            servcmd,
            seq,
            command,
        } = req;
        let expired = matches!(self.state, State::Expired);
        let answer = match command {
            Command::Login(request) => {
                return self.start_login(servcmd, seq, Login::Sig(request)).await
            }
            Command::Resume { a2 } => return self.start_login(servcmd, seq, Login::A2(a2)).await,
            _ if expired => Err(Failure::new(Code::UserSigExpired)),
            Command::Alive | Command::PushAck => Ok(json!({})),
            Command::Hello => match self.state {
                State::LoggedOut => Err(Failure::with_message(
                    Code::UserSigExpired,
                    "no session on this connection; log in again",
                )),
                _ => Ok(json!({})),
            },
            Command::PageGet => Ok(frames::page_get_fields()),
            Command::PurchaseBits => {
                Ok(frames::purchase_bits_fields(self.sessions.clock.now_secs()))
            }
            Command::Logout => {
                if let Some(cur) = self.state.take_current() {
                    if let Err(f) = self.sessions.logout(&cur.key, Cause::Logout, self.ip).await {
                        self.state = State::LoggedIn(cur);
                        self.wire.text(frames::fail(&servcmd, &seq, &f));
                        return Flow::Continue;
                    }
                }
                if expired {
                    self.state = State::LoggedOut;
                }
                Ok(json!({}))
            }
            Command::Other => Err(Failure::with_message(
                Code::Unsupported,
                format!("{servcmd} is not supported: imlogin serves login and presence only"),
            )),
        };
        let text = match answer {
            Ok(fields) => frames::ok(&servcmd, &seq, fields),
            Err(f) => frames::fail(&servcmd, &seq, &f),
        };
        self.wire.text(text);
        Flow::Continue
    }

    async fn start_login(&mut self, servcmd: String, seq: Value, login: Login) -> Flow {
        if matches!(self.state, State::LoggingIn(_)) {
            let f = Failure::new(Code::LoginInProgress);
            self.wire.text(frames::fail(&servcmd, &seq, &f));
            return Flow::Continue;
        }
        let sessions = self.sessions.clone();
        let (ip, conn) = (self.ip, self.conn);
        let (attempt, work): (_, Pin<Box<dyn Future<Output = _> + Send>>) = match login {
            Login::A2(a2) => {
                let key = sessions.token_key(&a2);
                if let (Some(k), Some(cur)) = (&key, self.state.current()) {
                    if *k == cur.key {
                        // Already this connection's instance: nothing to attach.
                        let fields = login_fields(&self.sessions, &cur.key, &a2);
                        self.wire.text(frames::ok(&servcmd, &seq, fields));
                        return Flow::Continue;
                    }
                }
                self.leave_current().await;
                let work = Box::pin(async move { sessions.resume(&a2, conn, ip).await });
                (Attempt::Resume(key), work as _)
            }
            Login::Sig(request) => {
                if matches!(request, crate::request::LoginRequest::Valid(_)) {
                    self.leave_current().await;
                }
                let work = Box::pin(async move { sessions.login(request, ip, Some(conn)).await });
                (Attempt::Fresh, work as _)
            }
        };
        match start(conn, self.sessions.clone(), work).await {
            Started::Done(res) => self.answer_login(servcmd, seq, attempt, res, None).await,
            Started::Running(result) => {
                self.state = State::LoggingIn(Box::new(LoggingIn {
                    servcmd,
                    seq,
                    result,
                    attempt,
                    early_kick: None,
                }));
                Flow::Continue
            }
        }
    }

    /// Logs out the instance this connection holds (a login as someone else, or again, replaces it).
    async fn leave_current(&mut self) {
        if let Some(cur) = self.state.take_current() {
            if let Err(f) = self.sessions.logout(&cur.key, Cause::Switch, self.ip).await {
                tracing::warn!(
                    code = f.code.number(),
                    "could not log out the instance being switched away from"
                );
            }
        }
        self.state = State::LoggedOut;
    }

    async fn finish_login(&mut self, res: Result<LoginOk, Failure>) -> Flow {
        let State::LoggingIn(l) = std::mem::replace(&mut self.state, State::LoggedOut) else {
            return Flow::Continue;
        };
        let LoggingIn {
            servcmd,
            seq,
            attempt,
            early_kick,
            ..
        } = *l;
        self.answer_login(servcmd, seq, attempt, res, early_kick)
            .await
    }

    async fn answer_login(
        &mut self,
        servcmd: String,
        seq: Value,
        attempt: Attempt,
        res: Result<LoginOk, Failure>,
        early_kick: Option<(String, u8)>,
    ) -> Flow {
        let ok = match res {
            Ok(ok) => ok,
            Err(f) => {
                let text = match attempt {
                    Attempt::Resume(key) => self.resume_failed(&servcmd, &seq, key, f).await,
                    Attempt::Fresh => frames::fail(&servcmd, &seq, &f),
                };
                self.wire.text(text);
                return Flow::Continue;
            }
        };
        self.login_deadline = None;
        let inst = &ok.instance;
        let online = self
            .sessions
            .metrics
            .as_ref()
            .map(|m| OnlineMark::new(m.online(inst.sdkappid, inst.platform)));
        let key = inst.key();
        let fields = login_fields(&self.sessions, &key, &ok.session_token);
        self.state = State::LoggedIn(Current {
            key,
            sig_expires_at: inst.sig_expires_at,
            _online: online,
        });
        self.wire.text(frames::ok(&servcmd, &seq, fields));
        if let Some((kicked_id, kick)) = early_kick {
            if kicked_id == inst.instance_id {
                self.state.take_current();
                self.wire.text(frames::kick_push(kick));
            }
        }
        Flow::Continue
    }

    /// The answer to an A2Key that could not be resumed: a kick while the SDK was away is told as the kick (1002
    /// with its `KickType`, so the SDK shows why); any other loss as 70001, on which the SDK asks for a new login.
    async fn resume_failed(
        &mut self,
        servcmd: &str,
        seq: &Value,
        key: Option<InstanceKey>,
        f: Failure,
    ) -> String {
        match f.code {
            Code::InternalTimeout | Code::FrequencyLimit => frames::fail(servcmd, seq, &f),
            Code::NoPreviousLogin => frames::fail_with(
                servcmd,
                seq,
                Code::UserSigExpired.number(),
                &f.message,
                None,
            ),
            _ => {
                let reason = match &key {
                    Some(key) => self.sessions.registry.kicked(key).await.ok().flatten(),
                    None => None,
                };
                let kick = kick_type(reason.unwrap_or(KickReason::AdminKick), None);
                frames::fail_with(servcmd, seq, KICKED_CODE, &f.message, Some(kick))
            }
        }
    }
}

/// The SDK's code for "this answer is a kick" (with `KickType`).
const KICKED_CODE: u32 = 1002;

enum Login {
    Sig(crate::request::LoginRequest),
    A2(String),
}

/// What a `wslogin` was: a fresh login, or a resume with the instance its A2Key names (if it verifies).
enum Attempt {
    Fresh,
    Resume(Option<InstanceKey>),
}

fn login_fields<'a>(sessions: &Sessions, key: &InstanceKey, a2: &'a str) -> LoginAnswer<'a> {
    LoginAnswer {
        a2_key: a2,
        tiny_id: tiny_id(key.sdkappid, &key.user_id).to_string(),
        inst_id: inst_id(&key.instance_id),
        hello_interval: HELLO_INTERVAL_SECS,
        time_stamp: sessions.clock.now_secs(),
    }
}
