//! The `/v1/ws` protocol (PROTOCOL §3) on one connection: what each request, push, finished login and UserSig
//! deadline does, in its frames. What the connection is logged in as is its
//! [`crate::gateway::instance::InstanceState`], and the loop that feeds it (its timers, its write
//! queue) is the [`driver`](crate::gateway::driver)'s, both shared with the Web SDK's gateway.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use super::protocol::{self, close, BadFrame, Event, LoginStatus, Op, Request};
use crate::gateway::driver::{Dialect, Flow, Shell, Transport};
use crate::gateway::instance::{Answer, InstanceState, Keeps, LoginWork, Pushed};
use crate::gateway::io::{Inbound, Outbound};
use crate::login::request::LoginRequest;
use crate::login::service::{LoginOk, Sessions};
use crate::model::error::{Code, Failure};
use crate::model::{ConnRef, Instance, Kick, Platform};
use crate::push::hub::{Ack, Push};

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

/// The `/v1/ws` protocol on a connection: its login state. Served by [`crate::gateway::driver::serve`].
#[derive(Default)]
pub struct Native {
    i: InstanceState<Native>,
}

/// Kept with the instance a connection is logged in as: its platform (a login as the same user and platform is
/// a repeat login), and whether `user_sig_expiring` was sent.
pub struct Held {
    platform: Platform,
    notice_sent: bool,
}

/// A `login` or `resume` still running: its request's id, and the `renew_sig` and `logout` sent meanwhile,
/// answered after it in order.
pub struct Pending {
    id: u64,
    queue: VecDeque<Request>,
}

impl Keeps for Native {
    type Reply = Pending;
    type Held = Held;
    type Out = ();

    fn hold(instance: &Instance) -> Held {
        Held {
            platform: instance.platform,
            notice_sent: false,
        }
    }
}

impl Dialect for Native {
    fn span(conn: ConnRef, ip: IpAddr) -> tracing::Span {
        tracing::info_span!("ws", conn = conn.conn, client_ip = %ip)
    }

    fn instance(&mut self) -> &mut InstanceState<Native> {
        &mut self.i
    }

    /// The notice, then the expiry (now > expires_at).
    fn sig_due_ms(&self, sessions: &Sessions) -> Option<i64> {
        let cur = self.i.current()?;
        let at_secs = if cur.held.notice_sent {
            cur.sig_expires_at.saturating_add(1)
        } else {
            cur.sig_expires_at
                .saturating_sub(sessions.timing().sig_expiry_notice_secs)
        };
        Some(at_secs.saturating_mul(1000))
    }

    async fn on_sig_due<T: Transport>(&mut self, sh: &mut Shell<'_, T>) {
        let Some(cur) = self.i.current_mut() else {
            return;
        };
        if !cur.held.notice_sent {
            cur.held.notice_sent = true;
            let expires_at = cur.sig_expires_at;
            sh.wire
                .text(Event::UserSigExpiring { expires_at }.to_text());
            return;
        }
        self.i.expire(sh).await;
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
        match self.i.on_push(sh, push).await {
            Pushed::Nothing => Flow::Continue,
            Pushed::Kicked(kick, done) => kicked(sh, kick, done),
            Pushed::LoggedOut => {
                let event = Event::LoggedOut {
                    reason: "http_logout",
                };
                sh.wire.text(event.to_text());
                Flow::Continue
            }
            Pushed::Ends(ends) => ends.close(sh),
        }
    }

    /// The login in progress finished: answer it, then the requests that waited behind it, in order.
    async fn finish_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        res: Result<LoginOk, Failure>,
    ) -> Flow {
        let Some((Pending { id, mut queue }, answer)) = self.i.finish(sh, res) else {
            return Flow::Continue;
        };
        let mut flow = self.answer_login(sh, id, answer);
        while matches!(flow, Flow::Continue) && !sh.wire.closing && !self.i.is_logging_in() {
            let Some(req) = queue.pop_front() else { break };
            flow = self.handle(sh, req).await;
        }
        if let Some(pending) = self.i.reply_mut() {
            // A queued request started another login: what is left waits behind it.
            pending.queue.extend(queue);
        }
        flow
    }
}

/// Tells the client its instance was kicked (`done` is dropped once the event is written), and closes.
fn kicked<T: Transport>(sh: &mut Shell<'_, T>, kick: Kick, done: Option<Ack>) -> Flow {
    let event = Event::KickedOffline {
        code: kick.reason.code().number(),
        reason: kick.reason.as_str(),
        by_platform: kick.by,
    };
    sh.wire.send(Outbound::Text(event.to_text()), done);
    sh.close(close::KICKED, "kicked offline")
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

    fn status(&self) -> LoginStatus {
        if self.i.is_logging_in() {
            LoginStatus::LoggingIn
        } else if self.i.logged_in().is_some() {
            LoginStatus::LoggedIn
        } else {
            LoginStatus::LoggedOut
        }
    }

    async fn on_request<T: Transport>(&mut self, sh: &mut Shell<'_, T>, req: Request) -> Flow {
        let Some(pending) = self.i.reply_mut() else {
            return self.handle(sh, req).await;
        };
        match req.op {
            _ if req.op.answered_during_login() => self.handle(sh, req).await,
            Op::Login(_) | Op::Resume(_) => {
                self.reply(sh, req.id, Err(Code::LoginInProgress.into()));
                Flow::Continue
            }
            _ if pending.queue.len() >= MAX_QUEUED => {
                sh.close(close::POLICY, "too many requests queued behind a login")
            }
            _ => {
                pending.queue.push_back(req);
                Flow::Continue
            }
        }
    }

    /// Handles one request; `login` and `resume` may leave a login in progress, answered by `finish_login`.
    async fn handle<T: Transport>(&mut self, sh: &mut Shell<'_, T>, req: Request) -> Flow {
        let id = req.id;
        let reply = match req.op {
            Op::Ping => Ok(json!({"server_time_ms": sh.sessions.clock().now_ms()})),
            Op::GetLoginStatus => Ok(json!({"status": self.status()})),
            Op::GetLoginUser => {
                let user = self.i.logged_in().map_or("", |c| c.key.user_id.as_str());
                Ok(json!({"user_id": user}))
            }
            Op::Login(request) => return self.start_login(sh, id, request).await,
            Op::Resume(Ok(token)) => return self.start_resume(sh, id, token).await,
            Op::Resume(Err(f)) => Err(f),
            Op::RenewSig(sig) => self.renew_sig(sh, sig).await,
            Op::Logout => match self.i.logout(sh).await {
                None => Err(Code::NotLoggedIn.into()),
                Some(res) => res.map(|()| json!({})),
            },
        };
        self.reply(sh, id, reply);
        Flow::Continue
    }

    async fn renew_sig<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        sig: Result<String, Failure>,
    ) -> Result<serde_json::Value, Failure> {
        let Some(key) = self.i.logged_in().map(|c| c.key.clone()) else {
            return Err(Code::NotLoggedIn.into());
        };
        let sig = sig?;
        let expires_at = sh.sessions.renew(&key, &sig, sh.ip).await?;
        if let Some(cur) = self.i.current_mut() {
            cur.sig_expires_at = expires_at;
            cur.held.notice_sent = false;
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
        let repeat = match (self.i.logged_in(), &request) {
            (Some(c), LoginRequest::Valid(f)) => {
                f.sdkappid == c.key.sdkappid
                    && f.user_id == c.key.user_id
                    && f.platform == c.held.platform
            }
            _ => false,
        };
        if repeat {
            let key = self.i.current().expect("logged in").key.clone();
            let work = Box::pin(async move { sessions.repeat_login(request, ip, &key).await });
            return self.start(sh, id, work).await;
        }
        // Switching: the current instance is logged out first, without an event to this connection. A request
        // whose fields are malformed changes nothing: it is answered with its error (after the throttle).
        if matches!(request, LoginRequest::Valid(_)) {
            self.i.leave(sh).await;
        }
        let work = Box::pin(async move { sessions.login(request, ip, Some(conn)).await });
        self.start(sh, id, work).await
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
            .i
            .current()
            .is_some_and(|c| sessions.token_key(&token).as_ref() == Some(&c.key));
        if !resumes_current {
            self.i.leave(sh).await;
        }
        let ip = sh.ip;
        let work = Box::pin(async move { sessions.resume(&token, conn, ip).await });
        self.start(sh, id, work).await
    }

    /// Starts a login or resume, holding the current instance meanwhile; answers it if it finished at once.
    async fn start<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        id: u64,
        work: LoginWork,
    ) -> Flow {
        let pending = Pending {
            id,
            queue: VecDeque::new(),
        };
        match self.i.start(sh, pending, work).await {
            Some((pending, answer)) => self.answer_login(sh, pending.id, answer),
            None => Flow::Continue,
        }
    }

    /// Answers a finished `login`/`resume` (a kick that arrived meanwhile is told after it).
    fn answer_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        id: u64,
        answer: Answer,
    ) -> Flow {
        match answer {
            Answer::Failed(f) => {
                self.reply(sh, id, Err(f));
                Flow::Continue
            }
            Answer::LoggedIn { ok, kicked: kick } => {
                sh.wire.text(protocol::ok(id, &ok.data()));
                match kick {
                    Some(kick) => kicked(sh, kick, None),
                    None => Flow::Continue,
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "tests/mod.rs"]
mod tests;
