//! The Web SDK's protocol on one connection: the same login service, registry and pushes as a `/v1/ws`
//! connection, spoken in the SDK's frames. What the connection is logged in as is its
//! [`crate::gateway::instance::InstanceState`], and the loop that feeds it (frames, pushes, the
//! login in progress, one timer) is the [`driver`](crate::gateway::driver)'s, both shared with `/v1/ws`.
//!
//! Where the SDK differs from the native protocol: a kicked or expired connection stays open (the SDK answers a
//! kick with `wslogout` and closes by itself), expiry is told as 70001 on the next request but a keepalive
//! (once) rather than as an event, and an A2Key that no longer names a live instance is answered 70001 so that
//! the SDK asks the app for a new login. A kick is told as the `stat_forceoffline` push, once: every SDK version
//! tested reads that push (docs/websdk.md), while no answer code is read as a kick by all of them.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::frames::{self, Command, LoginAnswer, Request};
use super::{inst_id, kick_type, tiny_id, HELLO_INTERVAL_SECS};
use crate::gateway::driver::{Dialect, Flow, Shell, Transport};
use crate::gateway::instance::{Answer, InstanceState, Keeps, LoginWork, Pushed};
use crate::gateway::io::{Inbound, Outbound};
use crate::gateway::native::protocol::close;
use crate::login::request::LoginRequest;
use crate::login::service::{LoginOk, Sessions};
use crate::model::error::{Code, Failure};
use crate::model::{ConnRef, Instance, InstanceKey, Kick, KickReason};
use crate::push::hub::{Ack, Push};

/// The Web SDK's protocol on a connection: its login state. Served by [`crate::gateway::driver::serve`].
#[derive(Default)]
pub struct WebSdk {
    i: InstanceState<WebSdk>,
}

/// What a connection remembers while logged out.
#[derive(Default, Clone, Copy)]
pub enum Out {
    /// No session yet, or logged out by the SDK.
    #[default]
    Fresh,
    /// The UserSig expired while online, not told yet: the next request but a new login or a keepalive is
    /// answered 70001.
    Expired,
    /// The session ended on the server, and the SDK was told once. Told again, lite-chat 4.x (which stays logged
    /// in after `REST_API_Kick` and `userSigExpired`) would fire `KICKED_OUT` again at each `wshello`: that is
    /// answered with a code no SDK takes for a kick.
    Ended(Ended),
}

/// How a connection's session ended (see [`Out::Ended`]).
#[derive(Clone, Copy)]
pub enum Ended {
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

/// A `wslogin` still running: what to echo in its answer, and what it was.
pub struct Pending {
    servcmd: String,
    seq: Value,
    attempt: Attempt,
}

impl Keeps for WebSdk {
    type Reply = Pending;
    type Held = ();
    type Out = Out;

    fn hold(_: &Instance) {}
}

impl Dialect for WebSdk {
    fn span(conn: ConnRef, ip: IpAddr) -> tracing::Span {
        tracing::info_span!("websdk", conn = conn.conn, client_ip = %ip)
    }

    fn instance(&mut self) -> &mut InstanceState<WebSdk> {
        &mut self.i
    }

    /// Expired once the time is past `sig_expires_at` (as on `/v1/ws`); the SDK gets no notice before.
    fn sig_due_ms(&self, _: &Sessions) -> Option<i64> {
        let cur = self.i.current()?;
        Some(cur.sig_expires_at.saturating_add(1).saturating_mul(1000))
    }

    /// Told as 70001 on the SDK's next request, not as an event.
    async fn on_sig_due<T: Transport>(&mut self, sh: &mut Shell<'_, T>) {
        if self.i.expire(sh).await {
            self.i.set_out(Out::Expired);
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
        match self.i.on_push(sh, push).await {
            Pushed::Nothing => Flow::Continue,
            // The SDK answers with `wslogout` (types 1 and 2) or closes by itself (type 3): the socket stays open
            // for that.
            Pushed::Kicked(kick, done) => {
                self.kicked(sh, kick, done);
                Flow::Continue
            }
            Pushed::LoggedOut => {
                // Logged out through HTTP with its A2Key: to the SDK, a kick by the server.
                self.i.set_out(Out::Ended(Ended::LoggedOutElsewhere));
                sh.wire.text(frames::kick_push(SERVER_KICK));
                Flow::Continue
            }
            Pushed::Ends(ends) => ends.close(sh),
        }
    }

    async fn finish_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        res: Result<LoginOk, Failure>,
    ) -> Flow {
        match self.i.finish(sh, res) {
            Some((pending, answer)) => self.answer_login(sh, pending, answer).await,
            None => Flow::Continue,
        }
    }
}

impl WebSdk {
    /// Tells the SDK of a kick (`done` is dropped once the push is written), once.
    fn kicked<T: Transport>(&mut self, sh: &mut Shell<'_, T>, kick: Kick, done: Option<Ack>) {
        self.i.set_out(Out::Ended(Ended::Kicked(kick.reason)));
        sh.wire.send(Outbound::Text(kick_push(kick)), done);
    }

    async fn on_request<T: Transport>(&mut self, sh: &mut Shell<'_, T>, req: Request) -> Flow {
        let Request {
            servcmd,
            seq,
            command,
        } = req;
        let expired = matches!(self.i.out(), Some(Out::Expired));
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
                self.i.set_out(Out::Ended(Ended::Expired));
                Err(Failure::new(Code::UserSigExpired))
            }
            // Not 70001 (`userSigExpired` to every SDK): after a reconnect an SDK sends again what was in flight,
            // a `wshello` among it, before it resumes; the resume's answer tells it where its session stands.
            Command::Hello => match self.i.out() {
                Some(Out::Fresh) => Err(Failure::with_message(
                    Code::NotLoggedIn,
                    "no session on this connection",
                )),
                Some(Out::Ended(end)) => Err(end.hello_failure()),
                _ => Ok(json!({})),
            },
            Command::PageGet => Ok(frames::page_get_fields()),
            Command::PurchaseBits => Ok(frames::purchase_bits_fields()),
            Command::Logout => {
                if let Some(Err(f)) = self.i.logout(sh).await {
                    sh.wire.text(frames::fail(&servcmd, &seq, &f));
                    return Flow::Continue;
                }
                self.i.set_out(Out::Fresh);
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
        if self.i.is_logging_in() {
            let f = Failure::new(Code::LoginInProgress);
            sh.wire.text(frames::fail(&servcmd, &seq, &f));
            return Flow::Continue;
        }
        let sessions = sh.sessions.clone();
        let (ip, conn) = (sh.ip, sh.conn);
        let (attempt, work): (_, LoginWork) = match login {
            Login::A2(a2) => {
                let key = sessions.token_key(&a2);
                if let (Some(k), Some(cur)) = (&key, self.i.current()) {
                    if *k == cur.key {
                        // Already this connection's instance: nothing to attach.
                        let fields = login_fields(&sh.sessions, &cur.key, &a2);
                        sh.wire.text(frames::ok(&servcmd, &seq, fields));
                        return Flow::Continue;
                    }
                }
                self.i.leave(sh).await;
                let work = Box::pin(async move { sessions.resume(&a2, conn, ip).await });
                (Attempt::Resume(key), work)
            }
            Login::Sig(request) => {
                if matches!(request, LoginRequest::Valid(_)) {
                    self.i.leave(sh).await;
                }
                let work = Box::pin(async move { sessions.login(request, ip, Some(conn)).await });
                (Attempt::Fresh, work)
            }
        };
        let pending = Pending {
            servcmd,
            seq,
            attempt,
        };
        match self.i.start(sh, pending, work).await {
            Some((pending, answer)) => self.answer_login(sh, pending, answer).await,
            None => Flow::Continue,
        }
    }

    /// Answers a finished `wslogin` (a kick that arrived meanwhile is pushed after it).
    async fn answer_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        pending: Pending,
        answer: Answer,
    ) -> Flow {
        let Pending {
            servcmd,
            seq,
            attempt,
        } = pending;
        let text = match (answer, attempt) {
            (Answer::Failed(f), Attempt::Resume(key)) => {
                self.resume_failed(sh, &servcmd, &seq, key, f).await
            }
            (Answer::Failed(f), Attempt::Fresh) => frames::fail(&servcmd, &seq, &f),
            (Answer::LoggedIn { ok, kicked }, _) => {
                let fields = login_fields(&sh.sessions, &ok.instance.key(), &ok.session_token);
                sh.wire.text(frames::ok(&servcmd, &seq, fields));
                if let Some(kick) = kicked {
                    self.kicked(sh, kick, None);
                }
                return Flow::Continue;
            }
        };
        sh.wire.text(text);
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
                    Some(key) => sh.sessions.kick_record(key).await.ok().flatten(),
                    None => None,
                };
                // Forgotten meanwhile, or an app removed from the configuration: a kick by the server.
                let kick = kick.unwrap_or(Kick {
                    reason: KickReason::AdminKick,
                    by: None,
                });
                sh.wire.text(kick_push(kick));
                sh.login_deadline = None;
                self.i.set_out(Out::Ended(Ended::Kicked(kick.reason)));
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
    Sig(LoginRequest),
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
        time_stamp: sessions.clock().now_secs(),
    }
}
