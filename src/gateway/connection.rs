//! One WebSocket connection as a state machine: its login [`State`] in one place, what it has to send in a
//! bounded queue, and one loop over inbound frames, pushes from other logins, the login in progress, and one
//! timer (heartbeat, UserSig notice and expiry, write deadline).
//!
//! Writes never block the loop: frames are queued and written as the client takes them, so the timers fire
//! while a write is pending. A client that stops reading stops being read once a bounded amount waits for it,
//! and is dropped when a frame waits longer than the write timeout. The loop is generic over its transport
//! (a stream of [`Inbound`], a sink of [`Outbound`]), so tests drive it over channels on a paused clock.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::io::{Inbound, Outbound};
use super::protocol::{self, close, BadFrame, Event, LoginStatus, Op, Request};
use super::wire::{Ending, Wire, WireEvent};
use crate::error::{Code, Failure};
use crate::hub::{Mailbox, Push};
use crate::metrics::OnlineMark;
use crate::platform::Platform;
use crate::registry::{ConnRef, InstanceKey};
use crate::request::LoginRequest;
use crate::sessions::{LoginOk, Recheck, Sessions};
use crate::webhooks::event::Cause;

/// Requests that may wait behind a login in progress before the connection counts as abusive (close 1008).
pub const MAX_QUEUED: usize = 64;
pub use super::wire::OUT_HIGH_WATER;

/// A connection's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Silence after which the connection is closed (4003).
    pub heartbeat: Duration,
    /// How long a frame may wait for the client to take it before the connection is dropped.
    pub write_timeout: Duration,
    /// The largest text message accepted (1009 above).
    pub max_frame: usize,
    /// How long after opening a connection must have logged in (1008 after).
    pub login_timeout: Duration,
    /// Frames per second a client may send, with bursts of twice that (1008 above).
    pub frames_per_second: u32,
}

/// The instance this connection is logged in as.
struct Current {
    key: InstanceKey,
    platform: Platform,
    sig_expires_at: i64,
    notice_sent: bool,
    /// Counts it in `imlogin_sessions_online` while it is held here.
    _online: Option<OnlineMark>,
}

/// Where the connection's login stands.
enum State {
    LoggedOut,
    LoggedIn(Current),
    LoggingIn(Box<LoggingIn>),
}

/// A `login` or `resume` running in a task of its own.
struct LoggingIn {
    id: u64,
    result: oneshot::Receiver<Box<Result<LoginOk, Failure>>>,
    /// `renew_sig` and `logout` sent meanwhile, answered after it in order.
    queue: VecDeque<Request>,
    /// The instance held meanwhile: a repeat login of it, or a resume of it.
    keeps: Option<Current>,
    /// A kick that arrived for an instance whose login had not answered yet: (instance_id, event).
    early_kick: Option<(String, String)>,
}

impl State {
    fn current(&self) -> Option<&Current> {
        match self {
            State::LoggedIn(c) => Some(c),
            State::LoggingIn(l) => l.keeps.as_ref(),
            State::LoggedOut => None,
        }
    }

    fn current_mut(&mut self) -> Option<&mut Current> {
        match self {
            State::LoggedIn(c) => Some(c),
            State::LoggingIn(l) => l.keeps.as_mut(),
            State::LoggedOut => None,
        }
    }

    /// Takes the current instance out, leaving the state without one.
    fn take_current(&mut self) -> Option<Current> {
        match self {
            State::LoggingIn(l) => l.keeps.take(),
            State::LoggedIn(_) => match std::mem::replace(self, State::LoggedOut) {
                State::LoggedIn(c) => Some(c),
                _ => unreachable!("matched above"),
            },
            State::LoggedOut => None,
        }
    }

    fn is_current(&self, instance_id: &str) -> bool {
        self.current()
            .is_some_and(|c| c.key.instance_id == instance_id)
    }

    fn status(&self) -> LoginStatus {
        match self {
            State::LoggedOut => LoginStatus::LoggedOut,
            State::LoggedIn(_) => LoginStatus::LoggedIn,
            State::LoggingIn(_) => LoginStatus::LoggingIn,
        }
    }

    fn poll_login(&mut self, cx: &mut Context<'_>) -> Poll<Result<LoginOk, Failure>> {
        match self {
            State::LoggingIn(l) => poll_login_result(&mut l.result, cx),
            _ => Poll::Pending,
        }
    }
}

/// One connection: its state, its transport, its timers.
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
    /// Why the instance is left disconnected if the connection ends now (its webhook's cause).
    end: Cause,
}

enum Flow {
    Continue,
    Stop,
}

/// Runs a connection until it ends; `io` is left for the caller to close (see
/// [`super::io::WsIo::close_lingering`]).
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
    // The usual end: detach here rather than from Drop (which needs a task of its own).
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
    /// Unregisters the connection, and detaches its instance (leaving it resumable for the grace) however the
    /// connection ends: normally, on error, or in a panic.
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
        // One timer serves the heartbeat, the UserSig notices and the write deadline. It is moved earlier only
        // when a deadline before it appears (a new UserSig deadline, a blocked write), never per frame: a frame
        // only moves `last_seen`, and the heartbeat is checked when the timer fires.
        let mut armed = self.next_deadline(None);
        let timer = tokio::time::sleep_until(armed);
        tokio::pin!(timer);
        let mut sig_armed: Option<i64> = None;
        loop {
            let sig_due = self.sig_due_ms();
            let mut wanted = armed;
            if sig_due != sig_armed {
                sig_armed = sig_due;
                wanted = self.next_deadline(sig_due);
            } else if let Some(w) = self.wire.write_deadline {
                wanted = wanted.min(w);
            }
            if wanted != armed {
                armed = wanted;
                timer.as_mut().reset(armed);
            }
            // The handlers' futures are boxed where they are awaited: this future lives as long as the
            // connection, and its size (the largest state it can be in) is resident for every idle session.
            // Each step runs in a span of its own carrying the connection's id and client address (a span held
            // for the connection's life would cost every idle session its formatted fields).
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
                    let flow = Box::pin(self.on_timer(sig_armed)).instrument(span).await;
                    sig_armed = None;
                    armed = self.next_deadline(self.sig_due_ms());
                    timer.as_mut().reset(armed);
                    flow
                }
            };
            if matches!(flow, Flow::Stop) {
                return;
            }
        }
    }

    /// The span of one step of this connection (disabled, and free, below INFO).
    fn span(&self) -> tracing::Span {
        tracing::info_span!("ws", conn = self.conn.conn, client_ip = %self.ip)
    }

    /// The earliest of the heartbeat, the UserSig deadline and the write deadline.
    fn next_deadline(&self, sig_due_ms: Option<i64>) -> Instant {
        let mut at = self.last_seen + self.limits.heartbeat;
        if let Some(d) = self.login_deadline {
            at = at.min(d);
        }
        if let Some(ms) = sig_due_ms {
            at = at.min(self.sessions.clock.instant_at(ms));
        }
        if let Some(w) = self.wire.write_deadline {
            at = at.min(w);
        }
        at
    }

    /// When the UserSig timer fires next (unix ms): the notice, then the expiry (now > expires_at).
    fn sig_due_ms(&self) -> Option<i64> {
        let cur = self.state.current()?;
        let at_secs = if cur.notice_sent {
            cur.sig_expires_at.saturating_add(1)
        } else {
            cur.sig_expires_at
                .saturating_sub(self.sessions.timing.sig_expiry_notice_secs)
        };
        Some(at_secs.saturating_mul(1000))
    }

    fn close(&mut self, code: u16, reason: &'static str) -> Flow {
        self.wire.send(Outbound::Close(code, reason), None);
        Flow::Continue
    }

    fn reply(&mut self, id: u64, result: Result<serde_json::Value, Failure>) {
        let text = match result {
            Ok(data) => protocol::ok(id, &data),
            Err(f) => protocol::error(Some(id), &f),
        };
        self.wire.text(text);
    }

    async fn on_timer(&mut self, sig_armed: Option<i64>) -> Flow {
        let now = Instant::now();
        if self.login_deadline.is_some_and(|d| d <= now) {
            self.login_deadline = None;
            return self.close(close::POLICY, "no login within limits.login_timeout_secs");
        }
        if self.wire.write_deadline.is_some_and(|d| d <= now) {
            // The client has not taken a frame for the whole write timeout: nothing more can reach it.
            return Flow::Stop;
        }
        if sig_armed.is_some_and(|ms| ms <= self.sessions.clock.now_ms()) {
            self.on_sig_timer().await;
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

    async fn on_sig_timer(&mut self) {
        let Some(cur) = self.state.current_mut() else {
            return;
        };
        if !cur.notice_sent {
            cur.notice_sent = true;
            let expires_at = cur.sig_expires_at;
            self.wire
                .text(Event::UserSigExpiring { expires_at }.to_text());
            return;
        }
        let cur = self.state.take_current().expect("checked above");
        // If the instance is already gone (a kick racing the expiry), the ticket expired all the same.
        self.sessions.expire(&cur.key, cur.sig_expires_at).await;
        let code = Code::UserSigExpiredOnline.number();
        self.wire.text(Event::UserSigExpired { code }.to_text());
    }

    async fn on_push(&mut self, push: Push) -> Flow {
        match push {
            Push::Kicked {
                instance_id,
                reason,
                by_platform,
                done,
            } => {
                let event = Event::KickedOffline {
                    code: reason.code().number(),
                    reason: reason.as_str(),
                    by_platform,
                }
                .to_text();
                if self.state.is_current(&instance_id) {
                    // Already removed from the registry: nothing to detach.
                    self.state.take_current();
                    self.wire.send(Outbound::Text(event), done);
                    return self.close(close::KICKED, "kicked offline");
                }
                if let State::LoggingIn(l) = &mut self.state {
                    l.early_kick = Some((instance_id, event));
                }
                Flow::Continue
            }
            Push::LoggedOut { instance_id } if self.state.is_current(&instance_id) => {
                self.state.take_current();
                let event = Event::LoggedOut {
                    reason: "http_logout",
                };
                self.wire.text(event.to_text());
                Flow::Continue
            }
            Push::ResumedElsewhere { instance_id } if self.state.is_current(&instance_id) => {
                // The instance lives on another connection now: do not detach it.
                self.state.take_current();
                self.close(close::RESUMED_ELSEWHERE, "resumed on another connection")
            }
            // The instance stays, disconnected: it can be resumed on any node.
            Push::Shutdown => {
                self.close(close::RESTARTING, "server restarting; resume on any node")
            }
            Push::LoggedOut { .. } | Push::ResumedElsewhere { .. } => Flow::Continue,
            Push::Recheck => self.recheck().await,
        }
    }

    /// After pushes may have been lost (see `Sessions::reconcile`): acts on what the registry says now.
    async fn recheck(&mut self) -> Flow {
        let Some(key) = self.state.current().map(|c| c.key.clone()) else {
            return Flow::Continue;
        };
        match self.sessions.recheck(&key, self.conn).await {
            Recheck::Attached => Flow::Continue,
            Recheck::Kicked(reason) => {
                self.state.take_current();
                let event = Event::KickedOffline {
                    code: reason.code().number(),
                    reason: reason.as_str(),
                    by_platform: None,
                };
                self.wire.text(event.to_text());
                self.close(close::KICKED, "kicked offline")
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
        match frame {
            Inbound::Text(text) if text.len() > self.limits.max_frame => {
                self.close(close::TOO_LARGE, "message too large")
            }
            Inbound::TooLarge => self.close(close::TOO_LARGE, "message too large"),
            Inbound::Text(text) => match protocol::parse(text.as_bytes()) {
                Ok(req) => self.on_request(req).await,
                Err(BadFrame::NoId(why)) => {
                    let f = Failure::with_message(Code::InvalidParameters, why);
                    self.wire.text(protocol::error(None, &f));
                    Flow::Continue
                }
                Err(BadFrame::WithId(id, f)) => {
                    self.wire.text(protocol::error(Some(id), &f));
                    Flow::Continue
                }
            },
            Inbound::Binary(_) => {
                let f = Failure::with_message(
                    Code::InvalidParameters,
                    "binary frames are not part of the protocol; send JSON text",
                );
                self.wire.text(protocol::error(None, &f));
                Flow::Continue
            }
            Inbound::Close => Flow::Stop,
            // A ping or pong only counts as heartbeat (the caller noted the time).
            Inbound::Control => Flow::Continue,
        }
    }

    async fn on_request(&mut self, req: Request) -> Flow {
        let State::LoggingIn(l) = &mut self.state else {
            return self.handle(req).await;
        };
        match req.op {
            _ if req.op.answered_during_login() => self.handle(req).await,
            Op::Login(_) | Op::Resume(_) => {
                self.reply(req.id, Err(Code::LoginInProgress.into()));
                Flow::Continue
            }
            _ if l.queue.len() >= MAX_QUEUED => {
                self.close(close::POLICY, "too many requests queued behind a login")
            }
            _ => {
                l.queue.push_back(req);
                Flow::Continue
            }
        }
    }

    /// Handles one request; `login` and `resume` may leave a login in progress, answered by `finish_login`.
    async fn handle(&mut self, req: Request) -> Flow {
        let id = req.id;
        let reply = match req.op {
            Op::Ping => Ok(json!({"server_time_ms": self.sessions.clock.now_ms()})),
            Op::GetLoginStatus => Ok(json!({"status": self.state.status()})),
            Op::GetLoginUser => {
                let user = match &self.state {
                    State::LoggedIn(c) => c.key.user_id.as_str(),
                    _ => "",
                };
                Ok(json!({"user_id": user}))
            }
            Op::Login(request) => return self.start_login(id, request).await,
            Op::Resume(Ok(token)) => return self.start_resume(id, token).await,
            Op::Resume(Err(f)) => Err(f),
            Op::RenewSig(sig) => self.renew_sig(sig).await,
            Op::Logout => self.logout().await,
        };
        self.reply(id, reply);
        Flow::Continue
    }

    async fn logout(&mut self) -> Result<serde_json::Value, Failure> {
        let Some(cur) = self.state.take_current() else {
            return Err(Code::NotLoggedIn.into());
        };
        match self.sessions.logout(&cur.key, Cause::Logout, self.ip).await {
            Ok(_) => Ok(json!({})),
            Err(f) => {
                self.state = State::LoggedIn(cur);
                Err(f)
            }
        }
    }

    async fn renew_sig(
        &mut self,
        sig: Result<String, Failure>,
    ) -> Result<serde_json::Value, Failure> {
        let key = match &self.state {
            State::LoggedIn(cur) => cur.key.clone(),
            _ => return Err(Code::NotLoggedIn.into()),
        };
        let sig = sig?;
        let expires_at = self.sessions.renew(&key, &sig, self.ip).await?;
        if let Some(cur) = self.state.current_mut() {
            cur.sig_expires_at = expires_at;
            cur.notice_sent = false;
        }
        Ok(json!({"sig_expires_at": expires_at}))
    }

    async fn start_login(&mut self, id: u64, request: LoginRequest) -> Flow {
        let sessions = self.sessions.clone();
        let (ip, conn) = (self.ip, self.conn);
        let repeat = match (&self.state, &request) {
            (State::LoggedIn(c), LoginRequest::Valid(f)) => {
                f.sdkappid == c.key.sdkappid
                    && f.user_id == c.key.user_id
                    && f.platform == c.platform
            }
            _ => false,
        };
        if repeat {
            let keeps = self.state.take_current();
            let key = keeps.as_ref().expect("logged in").key.clone();
            let work = Box::pin(async move { sessions.repeat_login(request, ip, &key).await });
            return self.started(id, keeps, start(conn, self.sessions.clone(), work).await);
        }
        // Switching: the current instance is logged out first, without an event to this connection. A request
        // whose fields are malformed changes nothing: it is answered with its error (after the throttle).
        if matches!(request, LoginRequest::Valid(_)) {
            self.leave_current().await;
        }
        let keeps = self.state.take_current();
        let work = Box::pin(async move { sessions.login(request, ip, Some(conn)).await });
        self.started(id, keeps, start(conn, self.sessions.clone(), work).await)
    }

    async fn start_resume(&mut self, id: u64, token: String) -> Flow {
        let sessions = self.sessions.clone();
        let conn = self.conn;
        let resumes_current = self
            .state
            .current()
            .is_some_and(|c| sessions.token_key(&token).as_ref() == Some(&c.key));
        if !resumes_current {
            self.leave_current().await;
        }
        let keeps = self.state.take_current();
        let ip = self.ip;
        let work = Box::pin(async move { sessions.resume(&token, conn, ip).await });
        self.started(id, keeps, start(conn, self.sessions.clone(), work).await)
    }

    async fn leave_current(&mut self) {
        if let Some(cur) = self.state.take_current() {
            if let Err(f) = self.sessions.logout(&cur.key, Cause::Switch, self.ip).await {
                tracing::warn!(
                    code = f.code.number(),
                    "could not log out the instance being switched away from"
                );
            }
        }
    }

    /// Answers a login that finished at once, or waits for the one still running.
    fn started(&mut self, id: u64, keeps: Option<Current>, started: Started) -> Flow {
        match started {
            Started::Done(res) => {
                self.state = match keeps {
                    Some(c) => State::LoggedIn(c),
                    None => State::LoggedOut,
                };
                self.answer_login(id, res, None)
            }
            Started::Running(result) => {
                self.state = State::LoggingIn(Box::new(LoggingIn {
                    id,
                    result,
                    queue: VecDeque::new(),
                    keeps,
                    early_kick: None,
                }));
                Flow::Continue
            }
        }
    }

    /// The login in progress finished: answer it, then the requests that waited behind it, in order.
    async fn finish_login(&mut self, res: Result<LoginOk, Failure>) -> Flow {
        let State::LoggingIn(l) = std::mem::replace(&mut self.state, State::LoggedOut) else {
            return Flow::Continue;
        };
        let LoggingIn {
            id,
            mut queue,
            keeps,
            early_kick,
            ..
        } = *l;
        if let Some(c) = keeps {
            self.state = State::LoggedIn(c);
        }
        let mut flow = self.answer_login(id, res, early_kick);
        while matches!(flow, Flow::Continue)
            && !self.wire.closing
            && !matches!(self.state, State::LoggingIn(_))
        {
            let Some(req) = queue.pop_front() else { break };
            flow = self.handle(req).await;
        }
        if let State::LoggingIn(l) = &mut self.state {
            // A queued request started another login: what is left waits behind it.
            l.queue.extend(queue);
        }
        flow
    }

    /// Answers a finished `login`/`resume` and takes on its instance.
    fn answer_login(
        &mut self,
        id: u64,
        res: Result<LoginOk, Failure>,
        early_kick: Option<(String, String)>,
    ) -> Flow {
        let ok = match res {
            Ok(ok) => ok,
            Err(f) => {
                self.reply(id, Err(f));
                return Flow::Continue;
            }
        };
        self.login_deadline = None;
        let inst = &ok.instance;
        if !self.state.is_current(&inst.instance_id) {
            let online = self
                .sessions
                .metrics
                .as_ref()
                .map(|m| OnlineMark::new(m.online(inst.sdkappid, inst.platform)));
            self.state = State::LoggedIn(Current {
                key: inst.key(),
                platform: inst.platform,
                sig_expires_at: inst.sig_expires_at,
                notice_sent: false,
                _online: online,
            });
        }
        self.wire.text(protocol::ok(id, &ok.data()));
        match early_kick {
            Some((kicked_id, event)) if kicked_id == inst.instance_id => {
                self.state.take_current();
                self.wire.text(event);
                self.close(close::KICKED, "kicked offline")
            }
            _ => Flow::Continue,
        }
    }
}

/// A running login's result (a task that ended without one is 70169).
pub(super) fn poll_login_result(
    rx: &mut oneshot::Receiver<Box<Result<LoginOk, Failure>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<LoginOk, Failure>> {
    Pin::new(rx)
        .poll(cx)
        .map(|r| r.map_or_else(|_| Err(Failure::new(Code::InternalTimeout)), |r| *r))
}

/// What a connection does as it is dropped: unregister from the hub, and detach the instance it holds (leaving it
/// resumable for the grace), in a task since Drop cannot wait.
pub(super) fn unregister_and_detach(
    sessions: &Arc<Sessions>,
    conn: ConnRef,
    key: Option<&InstanceKey>,
) {
    sessions.hub.unregister(conn);
    // Outside a runtime (it is shutting down) there is nothing left to keep resumable.
    if let (Some(key), Ok(rt)) = (key, tokio::runtime::Handle::try_current()) {
        let (sessions, key) = (sessions.clone(), key.clone());
        rt.spawn(async move { sessions.detach(&key, conn, Cause::Disconnect).await });
    }
}

/// A login or resume that finished during its first poll, or one left running in its own task.
pub(super) enum Started {
    Done(Result<LoginOk, Failure>),
    Running(oneshot::Receiver<Box<Result<LoginOk, Failure>>>),
}

/// Polls a login once here: a known user's login usually completes at once (no I/O), and then costs no task.
/// One that waits (a database write, kicked connections writing their events) moves to a task of its own, so
/// it completes even if this connection drops meanwhile; if nobody is there to take its result, the new
/// instance is detached (it stays resumable for the grace).
pub(super) async fn start(
    conn: ConnRef,
    sessions: Arc<Sessions>,
    mut work: Pin<Box<dyn Future<Output = Result<LoginOk, Failure>> + Send>>,
) -> Started {
    let first = poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
    if let Poll::Ready(res) = first {
        return Started::Done(res);
    }
    let (tx, rx) = oneshot::channel();
    // The task polls it again at once, with its own waker, in the connection's span (its log lines carry it).
    tokio::spawn(
        async move {
            let res = Box::new(work.await);
            if let Err(Ok(ok)) = tx.send(res).map_err(|r| *r) {
                if !ok.repeat_login {
                    sessions
                        .detach(&ok.instance.key(), conn, Cause::Disconnect)
                        .await;
                }
            }
        }
        .in_current_span(),
    );
    Started::Running(rx)
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
