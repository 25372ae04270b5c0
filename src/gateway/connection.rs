//! One WebSocket connection: a single loop over inbound frames, pushes from other logins, the heartbeat, the
//! UserSig expiry timer and shutdown. A guard detaches the instance however the connection ends.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::protocol::{self, close, BadFrame, Event, Op, Request};
use crate::error::{Code, Failure};
use crate::hub::Push;
use crate::platform::Platform;
use crate::registry::{now_ms, ConnRef, InstanceKey};
use crate::sessions::{LoginOk, Sessions};

/// Requests that may wait behind a login in progress before the connection counts as abusive (close 1008).
const MAX_QUEUED: usize = 64;

/// The instance this connection is logged in as.
struct Current {
    key: InstanceKey,
    platform: Platform,
    sig_expires_at: i64,
    notice_sent: bool,
}

/// Unregisters the connection and detaches its instance (leaving it resumable for the grace) however the
/// connection task ends: normal close, error, or panic.
struct Guard {
    sessions: Arc<Sessions>,
    conn: ConnRef,
    current: Option<Current>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.sessions.hub.unregister(self.conn);
        if let Some(cur) = self.current.take() {
            // Outside a runtime (it is shutting down) there is nothing left to keep resumable.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let sessions = self.sessions.clone();
                let conn = self.conn;
                rt.spawn(async move { sessions.detach(&cur.key, conn).await });
            }
        }
    }
}

/// A `login` or `resume` running in its own task; its result arrives here.
struct Pending {
    id: u64,
    rx: oneshot::Receiver<Box<Result<LoginOk, Failure>>>,
}

struct Conn {
    guard: Guard,
    ip: IpAddr,
    max_frame: usize,
    /// A kick that arrived for an instance whose login had not answered yet: (instance_id, event).
    early_kick: Option<Box<(String, String)>>,
}

enum Flow {
    Continue,
    Stop,
}

pub async fn run(mut ws: WebSocket, sessions: Arc<Sessions>, ip: IpAddr, max_frame: usize) {
    let (conn, pushes) = sessions.hub.register();
    let heartbeat = sessions.timing.heartbeat_timeout;
    let mut c = Conn {
        guard: Guard {
            sessions,
            conn,
            current: None,
        },
        ip,
        max_frame,
        early_kick: None,
    };
    let mut pending: Option<Pending> = None;
    let mut queue: VecDeque<Request> = VecDeque::new();
    // The handlers' futures are boxed where they are awaited below: this future lives as long as the
    // connection, and its size (the largest state it can be in) is resident for every idle session.
    // One timer serves the heartbeat and the UserSig notices. It is reset only when it fires or when the UserSig
    // deadline moves, never per frame: a frame only moves `last_seen`, and the heartbeat is checked when the
    // timer fires.
    let mut last_seen = Instant::now();
    let mut heartbeat_due = last_seen + heartbeat;
    let timer = tokio::time::sleep_until(heartbeat_due);
    tokio::pin!(timer);
    let mut sig_armed: Option<i64> = None;
    loop {
        let sig_due = c.sig_due_ms();
        if sig_due != sig_armed {
            sig_armed = sig_due;
            let at = sig_due.map_or(heartbeat_due, |ms| instant_at(ms).min(heartbeat_due));
            timer.as_mut().reset(at);
        }
        let flow = tokio::select! {
            push = pushes.recv() => Box::pin(c.on_push(&mut ws, push, pending.is_some())).await,
            res = async { (&mut pending.as_mut().expect("guarded").rx).await }, if pending.is_some() => {
                let id = pending.take().expect("guarded").id;
                let res = res.map_or_else(|_| Err(Failure::new(Code::InternalTimeout)), |r| *r);
                let mut flow = Box::pin(c.finish(&mut ws, id, res)).await;
                while matches!(flow, Flow::Continue) && pending.is_none() {
                    let Some(req) = queue.pop_front() else { break };
                    flow = Box::pin(c.handle(&mut ws, req, &mut pending)).await;
                }
                flow
            }
            msg = ws.recv() => {
                last_seen = Instant::now();
                Box::pin(c.on_message(&mut ws, msg, &mut pending, &mut queue)).await
            }
            _ = &mut timer => {
                let now = Instant::now();
                let mut flow = Flow::Continue;
                if sig_armed.is_some_and(|ms| ms <= now_ms()) {
                    sig_armed = None;
                    flow = Box::pin(c.on_sig_timer(&mut ws)).await;
                }
                if matches!(flow, Flow::Continue) {
                    heartbeat_due = last_seen + heartbeat;
                    if heartbeat_due <= now {
                        Box::pin(send_close(&mut ws, close::HEARTBEAT_TIMEOUT, "heartbeat timeout")).await;
                        flow = Flow::Stop;
                    } else {
                        let at = sig_armed.map_or(heartbeat_due, |ms| instant_at(ms).min(heartbeat_due));
                        timer.as_mut().reset(at);
                    }
                }
                flow
            }
        };
        if matches!(flow, Flow::Stop) {
            break;
        }
    }
    // The usual end: detach here rather than from the guard's Drop (which needs a task of its own).
    if let Some(cur) = c.guard.current.take() {
        c.guard.sessions.detach(&cur.key, c.guard.conn).await;
    }
}

fn is_too_large(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    matches!(
        e.into_inner().downcast_ref::<WsError>(),
        Some(WsError::Capacity(_))
    )
}

async fn send(ws: &mut WebSocket, text: String) -> Flow {
    match ws.send(Message::Text(text.into())).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Stop,
    }
}

async fn send_close(ws: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// The instant at which a unix time (ms) arrives.
fn instant_at(unix_ms: i64) -> Instant {
    Instant::now() + Duration::from_millis(unix_ms.saturating_sub(now_ms()).max(0) as u64)
}

impl Conn {
    fn sessions(&self) -> &Arc<Sessions> {
        &self.guard.sessions
    }

    fn status(&self, logging_in: bool) -> u8 {
        match (&self.guard.current, logging_in) {
            (_, true) => 2,
            (Some(_), false) => 1,
            (None, false) => 3,
        }
    }

    /// When the UserSig timer fires next (unix ms): the notice, then the expiry (now > expires_at).
    fn sig_due_ms(&self) -> Option<i64> {
        let cur = self.guard.current.as_ref()?;
        let at_secs = if cur.notice_sent {
            cur.sig_expires_at.saturating_add(1)
        } else {
            cur.sig_expires_at
                .saturating_sub(self.sessions().timing.sig_expiry_notice_secs)
        };
        Some(at_secs.saturating_mul(1000))
    }

    async fn on_sig_timer(&mut self, ws: &mut WebSocket) -> Flow {
        let Some(cur) = self.guard.current.as_mut() else {
            return Flow::Continue;
        };
        if !cur.notice_sent {
            cur.notice_sent = true;
            let expires_at = cur.sig_expires_at;
            return send(ws, Event::UserSigExpiring { expires_at }.to_text()).await;
        }
        let cur = self.guard.current.take().expect("checked above");
        // If the instance is already gone (a kick racing the expiry), the ticket expired all the same.
        self.sessions().expire(&cur.key, cur.sig_expires_at).await;
        let code = Code::UserSigExpiredOnline.number();
        send(ws, Event::UserSigExpired { code }.to_text()).await
    }

    async fn on_push(&mut self, ws: &mut WebSocket, push: Push, logging_in: bool) -> Flow {
        let is_current = |id: &str| {
            self.guard
                .current
                .as_ref()
                .is_some_and(|c| c.key.instance_id == id)
        };
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
                if is_current(&instance_id) {
                    // Already removed from the registry: nothing to detach.
                    self.guard.current = None;
                    let _ = send(ws, event).await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    send_close(ws, close::KICKED, "kicked offline").await;
                    return Flow::Stop;
                }
                if logging_in {
                    self.early_kick = Some(Box::new((instance_id, event)));
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
                Flow::Continue
            }
            Push::LoggedOut { instance_id } if is_current(&instance_id) => {
                self.guard.current = None;
                send(
                    ws,
                    Event::LoggedOut {
                        reason: "http_logout",
                    }
                    .to_text(),
                )
                .await
            }
            Push::ResumedElsewhere { instance_id } if is_current(&instance_id) => {
                // The instance lives on another connection now: do not detach it.
                self.guard.current = None;
                send_close(
                    ws,
                    close::RESUMED_ELSEWHERE,
                    "resumed on another connection",
                )
                .await;
                Flow::Stop
            }
            Push::Shutdown => {
                // The instance stays, disconnected: it can be resumed on any node.
                send_close(
                    ws,
                    close::RESTARTING,
                    "server restarting; resume on any node",
                )
                .await;
                Flow::Stop
            }
            Push::LoggedOut { .. } | Push::ResumedElsewhere { .. } => Flow::Continue,
        }
    }

    /// One inbound WebSocket message.
    async fn on_message(
        &mut self,
        ws: &mut WebSocket,
        msg: Option<Result<Message, axum::Error>>,
        pending: &mut Option<Pending>,
        queue: &mut VecDeque<Request>,
    ) -> Flow {
        match msg {
            None => Flow::Stop,
            Some(Err(e)) => {
                if is_too_large(e) {
                    send_close(ws, close::TOO_LARGE, "message too large").await;
                }
                Flow::Stop
            }
            Some(Ok(Message::Text(text))) => {
                if text.len() > self.max_frame {
                    send_close(ws, close::TOO_LARGE, "message too large").await;
                    Flow::Stop
                } else {
                    self.on_text(ws, text.as_str(), pending, queue).await
                }
            }
            Some(Ok(Message::Binary(_))) => {
                let f = Failure::with_message(
                    Code::InvalidParameters,
                    "binary frames are not part of the protocol; send JSON text",
                );
                send(ws, protocol::error(None, &f)).await
            }
            Some(Ok(Message::Close(_))) => Flow::Stop,
            // Ping or pong: it counts as heartbeat (the caller noted the time).
            Some(Ok(_)) => Flow::Continue,
        }
    }

    async fn on_text(
        &mut self,
        ws: &mut WebSocket,
        text: &str,
        pending: &mut Option<Pending>,
        queue: &mut VecDeque<Request>,
    ) -> Flow {
        let req = match protocol::parse(text) {
            Ok(r) => r,
            Err(BadFrame::NoId(why)) => {
                return send(
                    ws,
                    protocol::error(None, &Failure::with_message(Code::InvalidParameters, why)),
                )
                .await
            }
            Err(BadFrame::WithId(id, f)) => return send(ws, protocol::error(Some(id), &f)).await,
        };
        if pending.is_none() {
            return self.handle(ws, req, pending).await;
        }
        match req.op {
            Op::Ping | Op::GetLoginStatus | Op::GetLoginUser => self.handle(ws, req, pending).await,
            Op::Login | Op::Resume => {
                send(
                    ws,
                    protocol::error(Some(req.id), &Failure::new(Code::LoginInProgress)),
                )
                .await
            }
            Op::RenewSig | Op::Logout if queue.len() >= MAX_QUEUED => {
                send_close(ws, close::POLICY, "too many requests queued behind a login").await;
                Flow::Stop
            }
            Op::RenewSig | Op::Logout => {
                queue.push_back(req);
                Flow::Continue
            }
        }
    }

    /// Handles one request; `login`/`resume` start a task whose result `finish` answers.
    async fn handle(
        &mut self,
        ws: &mut WebSocket,
        req: Request,
        pending: &mut Option<Pending>,
    ) -> Flow {
        let id = req.id;
        let reply = match req.op {
            Op::Ping => Ok(json!({"server_time_ms": now_ms()})),
            Op::GetLoginStatus => Ok(json!({"status": self.status(pending.is_some())})),
            Op::GetLoginUser => {
                let user = if pending.is_some() {
                    None
                } else {
                    self.guard.current.as_ref().map(|c| c.key.user_id.clone())
                };
                Ok(json!({"user_id": user.unwrap_or_default()}))
            }
            Op::Login => {
                let started = self.start_login(req).await;
                return self.started(ws, id, started, pending).await;
            }
            Op::Resume => match req.body.get("session_token") {
                Some(Value::String(token)) => {
                    let token = token.clone();
                    let started = self.start_resume(id, token).await;
                    return self.started(ws, id, started, pending).await;
                }
                Some(_) => Err(Failure::with_message(
                    Code::InvalidParameters,
                    "`session_token` must be a string",
                )),
                None => Err(Failure::with_message(
                    Code::InvalidParameters,
                    "`session_token` is required",
                )),
            },
            Op::RenewSig => self.renew_sig(&req).await,
            Op::Logout => match self.guard.current.take() {
                None => Err(Failure::new(Code::NotLoggedIn)),
                Some(cur) => match self.sessions().logout(&cur.key).await {
                    Ok(_) => Ok(json!({})),
                    Err(f) => {
                        self.guard.current = Some(cur);
                        Err(f)
                    }
                },
            },
        };
        match reply {
            Ok(data) => send(ws, protocol::ok(id, &data)).await,
            Err(f) => send(ws, protocol::error(Some(id), &f)).await,
        }
    }

    async fn renew_sig(&mut self, req: &Request) -> Result<Value, Failure> {
        let Some(cur) = self.guard.current.as_ref() else {
            return Err(Code::NotLoggedIn.into());
        };
        let sig = match req.body.get("user_sig") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(Failure::with_message(
                    Code::InvalidParameters,
                    "`user_sig` must be a string",
                ))
            }
            None => {
                return Err(Failure::with_message(
                    Code::InvalidParameters,
                    "`user_sig` is required",
                ))
            }
        };
        let key = cur.key.clone();
        // Boxed, like every login-path future here: the connection's own future stays small while it idles.
        let expires_at = Box::pin(self.sessions().renew(&key, &sig, self.ip)).await?;
        if let Some(cur) = self.guard.current.as_mut() {
            cur.sig_expires_at = expires_at;
            cur.notice_sent = false;
        }
        Ok(json!({"sig_expires_at": expires_at}))
    }

    /// Answers a login that finished at once, or keeps the one still running.
    async fn started(
        &mut self,
        ws: &mut WebSocket,
        id: u64,
        started: Started,
        pending: &mut Option<Pending>,
    ) -> Flow {
        match started {
            Started::Done(res) => self.finish(ws, id, res).await,
            Started::Running(p) => {
                *pending = Some(p);
                Flow::Continue
            }
        }
    }

    async fn start_login(&mut self, req: Request) -> Started {
        let sessions = self.sessions().clone();
        let (ip, conn) = (self.ip, self.guard.conn);
        let body = req.body;
        let repeat = self.guard.current.as_ref().filter(|c| {
            body.get("sdkappid").and_then(Value::as_u64) == Some(u64::from(c.key.sdkappid))
                && body.get("user_id").and_then(Value::as_str) == Some(c.key.user_id.as_str())
                && body.get("platform").and_then(Value::as_str) == Some(c.platform.as_str())
        });
        if let Some(cur) = repeat {
            let key = cur.key.clone();
            return start(
                req.id,
                conn,
                sessions.clone(),
                Box::pin(async move { sessions.repeat_login(&body, ip, &key).await }),
            )
            .await;
        }
        // Switching: the current instance is logged out first, without an event to this connection.
        self.leave_current().await;
        start(
            req.id,
            conn,
            sessions.clone(),
            Box::pin(async move { sessions.login(&body, ip, Some(conn)).await }),
        )
        .await
    }

    async fn start_resume(&mut self, id: u64, token: String) -> Started {
        let sessions = self.sessions().clone();
        let conn = self.guard.conn;
        let resumes_current = self
            .guard
            .current
            .as_ref()
            .is_some_and(|c| sessions.token_key(&token).as_ref() == Some(&c.key));
        if !resumes_current {
            self.leave_current().await;
        }
        start(
            id,
            conn,
            sessions.clone(),
            Box::pin(async move { sessions.resume(&token, conn).await }),
        )
        .await
    }

    async fn leave_current(&mut self) {
        if let Some(cur) = self.guard.current.take() {
            if let Err(f) = self.sessions().logout(&cur.key).await {
                tracing::warn!(
                    code = f.code.number(),
                    "could not log out the instance being switched away from"
                );
            }
        }
    }

    /// Answers a finished `login`/`resume` and takes on its instance.
    async fn finish(&mut self, ws: &mut WebSocket, id: u64, res: Result<LoginOk, Failure>) -> Flow {
        let ok = match res {
            Ok(ok) => ok,
            Err(f) => {
                self.early_kick = None;
                return send(ws, protocol::error(Some(id), &f)).await;
            }
        };
        let inst = &ok.instance;
        let fresh = self
            .guard
            .current
            .as_ref()
            .is_none_or(|c| c.key.instance_id != inst.instance_id);
        if fresh {
            self.guard.current = Some(Current {
                key: inst.key(),
                platform: inst.platform,
                sig_expires_at: inst.sig_expires_at,
                notice_sent: false,
            });
        }
        let flow = send(ws, protocol::ok(id, &ok.data())).await;
        if let Some((kicked_id, event)) = self.early_kick.take().map(|b| *b) {
            if kicked_id == inst.instance_id {
                self.guard.current = None;
                let _ = send(ws, event).await;
                send_close(ws, close::KICKED, "kicked offline").await;
                return Flow::Stop;
            }
        }
        flow
    }
}

/// A login or resume that finished during its first poll, or one left running in its own task.
enum Started {
    Done(Result<LoginOk, Failure>),
    Running(Pending),
}

/// Polls a login once here: a known user's login usually completes at once (no I/O), and then costs no task.
/// One that waits (a database write, kicked connections writing their events) moves to a task of its own, so
/// it completes even if this connection drops meanwhile; if nobody is there to take its result, the new
/// instance is detached (it stays resumable for the grace).
async fn start(
    id: u64,
    conn: ConnRef,
    sessions: Arc<Sessions>,
    mut work: Pin<Box<dyn Future<Output = Result<LoginOk, Failure>> + Send>>,
) -> Started {
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(res) = first {
        return Started::Done(res);
    }
    let (tx, rx) = oneshot::channel();
    // The task polls it again at once, with its own waker.
    tokio::spawn(async move {
        let res = Box::new(work.await);
        if let Err(Ok(ok)) = tx.send(res).map_err(|r| *r) {
            if !ok.repeat_login {
                sessions.detach(&ok.instance.key(), conn).await;
            }
        }
    });
    Started::Running(Pending { id, rx })
}
