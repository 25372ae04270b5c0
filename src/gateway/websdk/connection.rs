//! The Web SDK's protocol on one connection: the same login service, registry and pushes as a `/v1/ws`
//! connection, spoken in the SDK's frames. Its [`State`] is in one place; the loop that feeds it (frames, pushes,
//! the login in progress, one timer) is the [`driver`](crate::gateway::driver)'s, shared with `/v1/ws`.
//!
//! Where the SDK differs from the native protocol: a kicked or expired connection stays open (the SDK answers a
//! kick with `wslogout` and closes by itself), expiry is told as 70001 on the next request but a keepalive
//! (once) rather than as an event, and an A2Key that no longer names a live instance is answered 70001 so that
//! the SDK asks the app for a new login. A kick is told as the `stat_forceoffline` push, once: every SDK version
//! tested reads that push (docs/websdk.md), while no answer code is read as a kick by all of them.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::{json, Value};

use super::frames::{self, Command, LoginAnswer, Request};
use super::{inst_id, kick_type, tiny_id, HELLO_INTERVAL_SECS};
use crate::gateway::driver::{start, Dialect, Flow, Running, Shell, Started, Transport};
use crate::gateway::io::{Inbound, Outbound};
use crate::gateway::native::protocol::close;
use crate::login::service::{LoginOk, Recheck, Sessions};
use crate::model::error::{Code, Failure};
use crate::model::Cause;
use crate::model::KickReason;
use crate::model::{ConnRef, InstanceKey, Kick};
use crate::push::hub::Push;
use crate::runtime::metrics::OnlineMark;

/// The instance this connection is logged in as.
struct Current {
    key: InstanceKey,
    sig_expires_at: i64,
    /// Counts it in `imlogin_sessions_online` while it is held here.
    _online: Option<OnlineMark>,
}

#[derive(Default)]
enum State {
    #[default]
    LoggedOut,
    LoggingIn(Box<LoggingIn>),
    LoggedIn(Current),
    /// The UserSig expired while online, not told yet: the next request but a new login or a keepalive is
    /// answered 70001.
    Expired,
    /// The session ended on the server, and the SDK was told once. Told again, lite-chat 4.x (which stays logged
    /// in after `REST_API_Kick` and `userSigExpired`) would fire `KICKED_OUT` again at each `wshello`: that is
    /// answered with a code no SDK takes for a kick.
    Ended(Ended),
}

/// How a connection's session ended (see [`State::Ended`]).
#[derive(Clone, Copy)]
enum Ended {
    Kicked(KickReason),
    /// Logged out through HTTP with its A2Key (told as a kick by the server).
    LoggedOutElsewhere,
    Expired,
}

impl Ended {
    /// The answer to a `wshello` after the end.
    fn hello_failure(self) -> Failure {
        match self {
            Ended::Kicked(reason) => Failure::with_message(
                reason.code(),
                format!("kicked offline ({}); log in again", reason.as_str()),
            ),
            Ended::LoggedOutElsewhere => {
                Failure::with_message(Code::NotLoggedIn, "logged out; log in again")
            }
            Ended::Expired => Failure::with_message(
                Code::UserSigExpiredOnline,
                "the UserSig expired; log in again with a new one",
            ),
        }
    }
}

/// A `wslogin` still running (polled by the connection).
struct LoggingIn {
    servcmd: String,
    seq: Value,
    result: Running,
    attempt: Attempt,
    /// A kick that arrived for the instance before its login answered: (instance_id, the kick).
    early_kick: Option<(String, Kick)>,
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
}

/// The Web SDK's protocol on a connection: its login state. Served by [`crate::gateway::driver::serve`].
#[derive(Default)]
pub struct WebSdk {
    state: State,
}

impl Dialect for WebSdk {
    fn span(conn: ConnRef, ip: IpAddr) -> tracing::Span {
        tracing::info_span!("websdk", conn = conn.conn, client_ip = %ip)
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
            State::LoggingIn(l) => Some(l.result),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Expired once the time is past `sig_expires_at` (as on `/v1/ws`); the SDK gets no notice before.
    fn sig_due_ms(&self, _: &Sessions) -> Option<i64> {
        let cur = self.state.current()?;
        Some(cur.sig_expires_at.saturating_add(1).saturating_mul(1000))
    }

    /// Told as 70001 on the SDK's next request, not as an event.
    async fn on_sig_due<T: Transport>(&mut self, sh: &mut Shell<'_, T>) {
        if let Some(cur) = self.state.take_current() {
            sh.sessions.expire(&cur.key, cur.sig_expires_at).await;
            self.state = State::Expired;
        }
    }

    async fn on_inbound<T: Transport>(&mut self, sh: &mut Shell<'_, T>, frame: Inbound) -> Flow {
        let bytes = match &frame {
            Inbound::Text(t) => t.as_bytes(),
            Inbound::Binary(b) => b.as_ref(),
            Inbound::TooLarge => return sh.close(close::TOO_LARGE, "message too large"),
            Inbound::Close => return Flow::Stop,
            Inbound::Control => return Flow::Continue,
        };
        if bytes.len() > sh.limits.max_frame {
            return sh.close(close::TOO_LARGE, "message too large");
        }
        match frames::parse(bytes) {
            Ok(req) => self.on_request(sh, req).await,
            Err(why) => {
                // Not a request the SDK is waiting for: a head it can read, matching nothing it sent.
                let code = Code::InvalidParameters.number();
                let text = frames::fail_with("imlogin.bad_frame", &Value::Null, code, why);
                sh.wire.text(text);
                Flow::Continue
            }
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
                let kick = Kick {
                    reason,
                    by: by_platform,
                };
                if self.state.is_current(&instance_id) {
                    // Removed from the registry already. The SDK answers with `wslogout` (types 1 and 2) or
                    // closes by itself (type 3): the socket stays open for that.
                    self.state = State::Ended(Ended::Kicked(reason));
                    sh.wire.send(Outbound::Text(kick_push(kick)), done);
                } else if let State::LoggingIn(l) = &mut self.state {
                    l.early_kick = Some((instance_id, kick));
                }
                Flow::Continue
            }
            Push::LoggedOut { instance_id } if self.state.is_current(&instance_id) => {
                // Logged out through HTTP with its A2Key: to the SDK, a kick by the server.
                self.state = State::Ended(Ended::LoggedOutElsewhere);
                sh.wire.text(frames::kick_push(SERVER_KICK));
                Flow::Continue
            }
            Push::ResumedElsewhere { instance_id } if self.state.is_current(&instance_id) => {
                self.state.take_current();
                sh.close(close::RESUMED_ELSEWHERE, "resumed on another connection")
            }
            Push::Shutdown => sh.close(close::RESTARTING, "server restarting; resume on any node"),
            Push::LoggedOut { .. } | Push::ResumedElsewhere { .. } => Flow::Continue,
            Push::Recheck => self.recheck(sh).await,
        }
    }

    async fn finish_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        res: Result<LoginOk, Failure>,
    ) -> Flow {
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
        self.answer_login(sh, servcmd, seq, attempt, res, early_kick)
            .await
    }
}

impl WebSdk {
    async fn recheck<T: Transport>(&mut self, sh: &mut Shell<'_, T>) -> Flow {
        let Some(key) = self.state.current().map(|c| c.key.clone()) else {
            return Flow::Continue;
        };
        match sh.sessions.recheck(&key, sh.conn).await {
            Recheck::Attached => Flow::Continue,
            Recheck::Kicked(kick) => {
                self.state = State::Ended(Ended::Kicked(kick.reason));
                sh.wire.text(kick_push(kick));
                Flow::Continue
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
        let Request {
            servcmd,
            seq,
            command,
        } = req;
        let expired = matches!(self.state, State::Expired);
        let answer = match command {
            Command::Login(request) => {
                return self
                    .start_login(sh, servcmd, seq, Login::Sig(request))
                    .await
            }
            Command::Resume { a2 } => {
                return self.start_login(sh, servcmd, seq, Login::A2(a2)).await
            }
            // The keepalive is always answered: lite-chat 4.x takes an error there for a lost socket, reconnects,
            // and hears 70001 again on its resume, as a second `userSigExpired`.
            Command::Alive | Command::PushAck => Ok(json!({})),
            _ if expired => {
                self.state = State::Ended(Ended::Expired);
                Err(Failure::new(Code::UserSigExpired))
            }
            // Not 70001 (`userSigExpired` to every SDK): after a reconnect an SDK sends again what was in flight,
            // a `wshello` among it, before it resumes; the resume's answer tells it where its session stands.
            Command::Hello => match self.state {
                State::LoggedOut => Err(Failure::with_message(
                    Code::NotLoggedIn,
                    "no session on this connection",
                )),
                State::Ended(end) => Err(end.hello_failure()),
                _ => Ok(json!({})),
            },
            Command::PageGet => Ok(frames::page_get_fields()),
            Command::PurchaseBits => Ok(frames::purchase_bits_fields()),
            Command::Logout => {
                if let Some(cur) = self.state.take_current() {
                    if let Err(f) = sh.sessions.logout(&cur.key, Cause::Logout, sh.ip).await {
                        self.state = State::LoggedIn(cur);
                        sh.wire.text(frames::fail(&servcmd, &seq, &f));
                        return Flow::Continue;
                    }
                }
                if matches!(self.state, State::Expired | State::Ended(_)) {
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
        sh.wire.text(text);
        Flow::Continue
    }

    async fn start_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        servcmd: String,
        seq: Value,
        login: Login,
    ) -> Flow {
        if matches!(self.state, State::LoggingIn(_)) {
            let f = Failure::new(Code::LoginInProgress);
            sh.wire.text(frames::fail(&servcmd, &seq, &f));
            return Flow::Continue;
        }
        let sessions = sh.sessions.clone();
        let (ip, conn) = (sh.ip, sh.conn);
        let (attempt, work): (_, Pin<Box<dyn Future<Output = _> + Send>>) = match login {
            Login::A2(a2) => {
                let key = sessions.token_key(&a2);
                if let (Some(k), Some(cur)) = (&key, self.state.current()) {
                    if *k == cur.key {
                        // Already this connection's instance: nothing to attach.
                        let fields = login_fields(&sh.sessions, &cur.key, &a2);
                        sh.wire.text(frames::ok(&servcmd, &seq, fields));
                        return Flow::Continue;
                    }
                }
                self.leave_current(sh).await;
                let work = Box::pin(async move { sessions.resume(&a2, conn, ip).await });
                (Attempt::Resume(key), work as _)
            }
            Login::Sig(request) => {
                if matches!(request, crate::login::request::LoginRequest::Valid(_)) {
                    self.leave_current(sh).await;
                }
                let work = Box::pin(async move { sessions.login(request, ip, Some(conn)).await });
                (Attempt::Fresh, work as _)
            }
        };
        match start(work).await {
            Started::Done(res) => {
                self.answer_login(sh, servcmd, seq, attempt, res, None)
                    .await
            }
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
    async fn leave_current<T: Transport>(&mut self, sh: &mut Shell<'_, T>) {
        sh.leave(self.state.take_current().map(|c| c.key)).await;
        self.state = State::LoggedOut;
    }

    async fn answer_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        servcmd: String,
        seq: Value,
        attempt: Attempt,
        res: Result<LoginOk, Failure>,
        early_kick: Option<(String, Kick)>,
    ) -> Flow {
        let ok = match res {
            Ok(ok) => ok,
            Err(f) => {
                if self.state.current().is_none() {
                    sh.retire_conn();
                }
                let text = match attempt {
                    Attempt::Resume(key) => self.resume_failed(sh, &servcmd, &seq, key, f).await,
                    Attempt::Fresh => frames::fail(&servcmd, &seq, &f),
                };
                sh.wire.text(text);
                return Flow::Continue;
            }
        };
        sh.login_deadline = None;
        let inst = &ok.instance;
        let online = sh
            .sessions
            .metrics
            .as_ref()
            .map(|m| OnlineMark::new(m.online(inst.sdkappid, inst.platform)));
        let key = inst.key();
        let fields = login_fields(&sh.sessions, &key, &ok.session_token);
        self.state = State::LoggedIn(Current {
            key,
            sig_expires_at: inst.sig_expires_at,
            _online: online,
        });
        sh.wire.text(frames::ok(&servcmd, &seq, fields));
        if let Some((kicked_id, kick)) = early_kick {
            if kicked_id == inst.instance_id {
                self.state = State::Ended(Ended::Kicked(kick.reason));
                sh.wire.text(kick_push(kick));
            }
        }
        Flow::Continue
    }

    /// The answer to an A2Key that could not be resumed. A kick while the SDK was away is told as the kick: the
    /// `stat_forceoffline` push, then the resume refused with the kick's own code (6208, 70052, …), which no SDK
    /// takes for a kick; no answer code alone would do (2.x and 3.x read only 1002 + `KickType`, lite-chat 4.x
    /// ignores 1002 and reads only 3002/3003/20002, and 2.x and 3.x take 20002 for `userSigExpired`). The socket
    /// is then kept without a login deadline: lite-chat stays logged in after `REST_API_Kick`, and would come back
    /// on a new socket to hear the kick again. Any other loss is answered 70001, on which the SDK asks for a new
    /// login.
    async fn resume_failed<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        servcmd: &str,
        seq: &Value,
        key: Option<InstanceKey>,
        f: Failure,
    ) -> String {
        match f.code {
            Code::InternalTimeout | Code::FrequencyLimit => frames::fail(servcmd, seq, &f),
            Code::NoPreviousLogin => {
                frames::fail_with(servcmd, seq, Code::UserSigExpired.number(), &f.message)
            }
            _ => {
                let kick = match &key {
                    Some(key) => sh.sessions.registry.kicked(key).await.ok().flatten(),
                    None => None,
                };
                // Forgotten meanwhile, or an app removed from the configuration: a kick by the server.
                let kick = kick.unwrap_or(Kick {
                    reason: KickReason::AdminKick,
                    by: None,
                });
                sh.wire.text(kick_push(kick));
                sh.login_deadline = None;
                self.state = State::Ended(Ended::Kicked(kick.reason));
                frames::fail(servcmd, seq, &f)
            }
        }
    }
}

/// The `KickType` of a kick by the server (an admin, or a logout through HTTP).
const SERVER_KICK: u8 = 3;

/// The push that tells the SDK of `kick`.
fn kick_push(kick: Kick) -> String {
    frames::kick_push(kick_type(kick.reason, kick.by))
}

enum Login {
    Sig(crate::login::request::LoginRequest),
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
