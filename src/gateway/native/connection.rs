//! The `/v1/ws` protocol (PROTOCOL §3) on one connection, as a state machine: its login [`State`] in one place,
//! and what each request, push, finished login and UserSig deadline does to it. The loop that feeds it, its
//! timers and its write queue are the [`driver`](super::driver)'s, shared with the Web SDK's gateway.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::json;

use super::protocol::{self, close, BadFrame, Event, LoginStatus, Op, Request};
use crate::gateway::driver::{start, Dialect, Flow, Running, Shell, Started, Transport};
use crate::gateway::io::{Inbound, Outbound};
use crate::login::request::LoginRequest;
use crate::login::service::{LoginOk, Recheck, Sessions};
use crate::model::error::{Code, Failure};
use crate::model::Cause;
use crate::model::Platform;
use crate::model::{ConnRef, InstanceKey};
use crate::push::hub::Push;
use crate::runtime::metrics::OnlineMark;

/// Requests that may wait behind a login in progress before the connection counts as abusive (close 1008).
pub const MAX_QUEUED: usize = 64;
pub use crate::gateway::wire::OUT_HIGH_WATER;

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
#[derive(Default)]
enum State {
    #[default]
    LoggedOut,
    LoggedIn(Current),
    LoggingIn(Box<LoggingIn>),
}

/// A `login` or `resume` still running (polled by the connection).
struct LoggingIn {
    id: u64,
    result: Running,
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
}

/// The `/v1/ws` protocol on a connection: its login state. Served by [`super::driver::serve`].
#[derive(Default)]
pub struct Native {
    state: State,
}

impl Dialect for Native {
    fn span(conn: ConnRef, ip: IpAddr) -> tracing::Span {
        tracing::info_span!("ws", conn = conn.conn, client_ip = %ip)
    }

    fn current(&self) -> Option<&InstanceKey> {
        self.state.current().map(|c| &c.key)
    }

    fn take_current(&mut self) -> Option<InstanceKey> {
        self.state.take_current().map(|c| c.key)
    }

    fn poll_login(&mut self, cx: &mut Context<'_>) -> Poll<Result<LoginOk, Failure>> {
        match &mut self.state {
            State::LoggingIn(l) => l.result.poll_result(cx),
            _ => Poll::Pending,
        }
    }

    fn take_login(&mut self) -> Option<Running> {
        match std::mem::take(&mut self.state) {
            // The instance it keeps meanwhile stays the connection's (detached as it ends).
            State::LoggingIn(l) => {
                if let Some(c) = l.keeps {
                    self.state = State::LoggedIn(c);
                }
                Some(l.result)
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The notice, then the expiry (now > expires_at).
    fn sig_due_ms(&self, sessions: &Sessions) -> Option<i64> {
        let cur = self.state.current()?;
        let at_secs = if cur.notice_sent {
            cur.sig_expires_at.saturating_add(1)
        } else {
            cur.sig_expires_at
                .saturating_sub(sessions.timing.sig_expiry_notice_secs)
        };
        Some(at_secs.saturating_mul(1000))
    }

    async fn on_sig_due<T: Transport>(&mut self, sh: &mut Shell<'_, T>) {
        let Some(cur) = self.state.current_mut() else {
            return;
        };
        if !cur.notice_sent {
            cur.notice_sent = true;
            let expires_at = cur.sig_expires_at;
            sh.wire
                .text(Event::UserSigExpiring { expires_at }.to_text());
            return;
        }
        let cur = self.state.take_current().expect("checked above");
        // If the instance is already gone (a kick racing the expiry), the ticket expired all the same.
        sh.sessions.expire(&cur.key, cur.sig_expires_at).await;
        let code = Code::UserSigExpiredOnline.number();
        sh.wire.text(Event::UserSigExpired { code }.to_text());
    }

    async fn on_inbound<T: Transport>(&mut self, sh: &mut Shell<'_, T>, frame: Inbound) -> Flow {
        match frame {
            Inbound::Text(text) if text.len() > sh.limits.max_frame => {
                sh.close(close::TOO_LARGE, "message too large")
            }
            Inbound::TooLarge => sh.close(close::TOO_LARGE, "message too large"),
            Inbound::Text(text) => match protocol::parse(text.as_bytes()) {
                Ok(req) => self.on_request(sh, req).await,
                Err(BadFrame::NoId(why)) => {
                    let f = Failure::with_message(Code::InvalidParameters, why);
                    sh.wire.text(protocol::error(None, &f));
                    Flow::Continue
                }
                Err(BadFrame::WithId(id, f)) => {
                    sh.wire.text(protocol::error(Some(id), &f));
                    Flow::Continue
                }
            },
            Inbound::Binary(_) => {
                let f = Failure::with_message(
                    Code::InvalidParameters,
                    "binary frames are not part of the protocol; send JSON text",
                );
                sh.wire.text(protocol::error(None, &f));
                Flow::Continue
            }
            Inbound::Close => Flow::Stop,
            // A ping or pong only counts as heartbeat (the caller noted the time).
            Inbound::Control => Flow::Continue,
        }
    }

    async fn on_push<T: Transport>(&mut self, sh: &mut Shell<'_, T>, push: Push) -> Flow {
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
                    sh.wire.send(Outbound::Text(event), done);
                    return sh.close(close::KICKED, "kicked offline");
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
                sh.wire.text(event.to_text());
                Flow::Continue
            }
            Push::ResumedElsewhere { instance_id } if self.state.is_current(&instance_id) => {
                // The instance lives on another connection now: do not detach it.
                self.state.take_current();
                sh.close(close::RESUMED_ELSEWHERE, "resumed on another connection")
            }
            // The instance stays, disconnected: it can be resumed on any node.
            Push::Shutdown => sh.close(close::RESTARTING, "server restarting; resume on any node"),
            Push::LoggedOut { .. } | Push::ResumedElsewhere { .. } => Flow::Continue,
            Push::Recheck => self.recheck(sh).await,
        }
    }

    /// The login in progress finished: answer it, then the requests that waited behind it, in order.
    async fn finish_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        res: Result<LoginOk, Failure>,
    ) -> Flow {
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
        let mut flow = self.answer_login(sh, id, res, early_kick);
        while matches!(flow, Flow::Continue)
            && !sh.wire.closing
            && !matches!(self.state, State::LoggingIn(_))
        {
            let Some(req) = queue.pop_front() else { break };
            flow = self.handle(sh, req).await;
        }
        if let State::LoggingIn(l) = &mut self.state {
            // A queued request started another login: what is left waits behind it.
            l.queue.extend(queue);
        }
        flow
    }
}

impl Native {
    fn reply<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        id: u64,
        result: Result<serde_json::Value, Failure>,
    ) {
        let text = match result {
            Ok(data) => protocol::ok(id, &data),
            Err(f) => protocol::error(Some(id), &f),
        };
        sh.wire.text(text);
    }

    /// After pushes may have been lost (see `Sessions::reconcile`): acts on what the registry says now.
    async fn recheck<T: Transport>(&mut self, sh: &mut Shell<'_, T>) -> Flow {
        let Some(key) = self.state.current().map(|c| c.key.clone()) else {
            return Flow::Continue;
        };
        match sh.sessions.recheck(&key, sh.conn).await {
            Recheck::Attached => Flow::Continue,
            Recheck::Kicked(kick) => {
                self.state.take_current();
                let event = Event::KickedOffline {
                    code: kick.reason.code().number(),
                    reason: kick.reason.as_str(),
                    by_platform: kick.by,
                };
                sh.wire.text(event.to_text());
                sh.close(close::KICKED, "kicked offline")
            }
            Recheck::Gone => {
                self.state.take_current();
                sh.close(
                    close::RESTARTING,
                    "the session was lost; resume or log in again",
                )
            }
        }
    }

    async fn on_request<T: Transport>(&mut self, sh: &mut Shell<'_, T>, req: Request) -> Flow {
        let State::LoggingIn(l) = &mut self.state else {
            return self.handle(sh, req).await;
        };
        match req.op {
            _ if req.op.answered_during_login() => self.handle(sh, req).await,
            Op::Login(_) | Op::Resume(_) => {
                self.reply(sh, req.id, Err(Code::LoginInProgress.into()));
                Flow::Continue
            }
            _ if l.queue.len() >= MAX_QUEUED => {
                sh.close(close::POLICY, "too many requests queued behind a login")
            }
            _ => {
                l.queue.push_back(req);
                Flow::Continue
            }
        }
    }

    /// Handles one request; `login` and `resume` may leave a login in progress, answered by `finish_login`.
    async fn handle<T: Transport>(&mut self, sh: &mut Shell<'_, T>, req: Request) -> Flow {
        let id = req.id;
        let reply = match req.op {
            Op::Ping => Ok(json!({"server_time_ms": sh.sessions.clock.now_ms()})),
            Op::GetLoginStatus => Ok(json!({"status": self.state.status()})),
            Op::GetLoginUser => {
                let user = match &self.state {
                    State::LoggedIn(c) => c.key.user_id.as_str(),
                    _ => "",
                };
                Ok(json!({"user_id": user}))
            }
            Op::Login(request) => return self.start_login(sh, id, request).await,
            Op::Resume(Ok(token)) => return self.start_resume(sh, id, token).await,
            Op::Resume(Err(f)) => Err(f),
            Op::RenewSig(sig) => self.renew_sig(sh, sig).await,
            Op::Logout => self.logout(sh).await,
        };
        self.reply(sh, id, reply);
        Flow::Continue
    }

    async fn logout<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
    ) -> Result<serde_json::Value, Failure> {
        let Some(cur) = self.state.take_current() else {
            return Err(Code::NotLoggedIn.into());
        };
        match sh.sessions.logout(&cur.key, Cause::Logout, sh.ip).await {
            Ok(_) => Ok(json!({})),
            Err(f) => {
                self.state = State::LoggedIn(cur);
                Err(f)
            }
        }
    }

    async fn renew_sig<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        sig: Result<String, Failure>,
    ) -> Result<serde_json::Value, Failure> {
        let key = match &self.state {
            State::LoggedIn(cur) => cur.key.clone(),
            _ => return Err(Code::NotLoggedIn.into()),
        };
        let sig = sig?;
        let expires_at = sh.sessions.renew(&key, &sig, sh.ip).await?;
        if let Some(cur) = self.state.current_mut() {
            cur.sig_expires_at = expires_at;
            cur.notice_sent = false;
        }
        Ok(json!({"sig_expires_at": expires_at}))
    }

    async fn start_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        id: u64,
        request: LoginRequest,
    ) -> Flow {
        let sessions = sh.sessions.clone();
        let (ip, conn) = (sh.ip, sh.conn);
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
            return self.started(sh, id, keeps, start(work).await);
        }
        // Switching: the current instance is logged out first, without an event to this connection. A request
        // whose fields are malformed changes nothing: it is answered with its error (after the throttle).
        if matches!(request, LoginRequest::Valid(_)) {
            self.leave_current(sh).await;
        }
        let keeps = self.state.take_current();
        let work = Box::pin(async move { sessions.login(request, ip, Some(conn)).await });
        self.started(sh, id, keeps, start(work).await)
    }

    async fn start_resume<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        id: u64,
        token: String,
    ) -> Flow {
        let sessions = sh.sessions.clone();
        let conn = sh.conn;
        let resumes_current = self
            .state
            .current()
            .is_some_and(|c| sessions.token_key(&token).as_ref() == Some(&c.key));
        if !resumes_current {
            self.leave_current(sh).await;
        }
        let keeps = self.state.take_current();
        let ip = sh.ip;
        let work = Box::pin(async move { sessions.resume(&token, conn, ip).await });
        self.started(sh, id, keeps, start(work).await)
    }

    async fn leave_current<T: Transport>(&mut self, sh: &mut Shell<'_, T>) {
        sh.leave(self.state.take_current().map(|c| c.key)).await;
    }

    /// Answers a login that finished at once, or waits for the one still running.
    fn started<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        id: u64,
        keeps: Option<Current>,
        started: Started,
    ) -> Flow {
        match started {
            Started::Done(res) => {
                self.state = match keeps {
                    Some(c) => State::LoggedIn(c),
                    None => State::LoggedOut,
                };
                self.answer_login(sh, id, res, None)
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

    /// Answers a finished `login`/`resume` and takes on its instance.
    fn answer_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        id: u64,
        res: Result<LoginOk, Failure>,
        early_kick: Option<(String, String)>,
    ) -> Flow {
        let ok = match res {
            Ok(ok) => ok,
            Err(f) => {
                if self.state.current().is_none() {
                    sh.retire_conn();
                }
                self.reply(sh, id, Err(f));
                return Flow::Continue;
            }
        };
        sh.login_deadline = None;
        let inst = &ok.instance;
        if !self.state.is_current(&inst.instance_id) {
            let online = sh
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
        sh.wire.text(protocol::ok(id, &ok.data()));
        match early_kick {
            Some((kicked_id, event)) if kicked_id == inst.instance_id => {
                self.state.take_current();
                sh.wire.text(event);
                sh.close(close::KICKED, "kicked offline")
            }
            _ => Flow::Continue,
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
