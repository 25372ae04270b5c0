//! What a connection is logged in as, and its login in progress: one state for both dialects (`/v1/ws` and the
//! Web SDK), with what they do alike. A dialect parses its requests and renders the frames of what happened here
//! (a finished login's [`Answer`], a push's [`Pushed`]); what it keeps beside is named by its [`Keeps`].
//!
//! The state lives in every connection's future for the connection's whole life, so its size is every idle
//! session's: what exists only during a login is boxed, and what only one dialect needs is its own
//! type (the native protocol's platform and notice, the Web SDK's memory of how its session ended), not a field
//! the other pays for.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::Instrument;

use super::driver::{Flow, Shell, Transport};
use super::native::protocol::close;
use crate::login::service::{LoginOk, Recheck, Sessions};
use crate::model::{Cause, ConnRef, Failure, Instance, InstanceKey, Kick, LoginFacts, Seq};
use crate::push::hub::{Ack, Push};
use crate::runtime::metrics::OnlineMark;

/// What a dialect keeps in its [`InstanceState`] beside what both keep.
pub trait Keeps {
    /// What a login in progress is answered with when it finishes (the request's id, the requests waiting...).
    type Reply: Send;
    /// Kept with the instance the connection is logged in as.
    type Held: Send;
    /// Kept while logged out (how the last session ended).
    type Out: Default + Send;
    /// What is kept with `instance` once a login of it succeeds.
    fn hold(instance: &Instance) -> Self::Held;
}

/// The instance a connection is logged in as.
pub struct Current<H> {
    pub key: InstanceKey,
    pub sig_expires_at: i64,
    /// Enough to put the instance back if the registry loses it (a Redis failover).
    pub facts: LoginFacts,
    pub held: H,
    /// Counts it in `imlogin_sessions_online` while it is held here.
    _online: Option<OnlineMark>,
}

/// Where a connection's login stands.
enum State<K: Keeps> {
    LoggedOut(K::Out),
    LoggedIn(Current<K::Held>),
    LoggingIn(Box<Login<K>>),
}

/// Kicks, and moves, a login in flight keeps at most (for its new instance, or late for earlier ones).
const EARLY_KICKS: usize = 4;
/// Keeps `x` in `kept`, the oldest dropped past [`EARLY_KICKS`].
fn keep_latest<T>(kept: &mut Vec<T>, x: T) {
    if kept.len() >= EARLY_KICKS {
        kept.remove(0);
    }
    kept.push(x);
}

/// A `login` or resume still running (polled by the connection).
struct Login<K: Keeps> {
    reply: K::Reply,
    running: Running,
    /// The instance held meanwhile: a repeat login of it, or a resume of it.
    keeps: Option<Current<K::Held>>,
    /// Kicks that arrived before the answer, as (instance_id, kick): for the new instance, or late for others.
    early_kicks: Vec<(String, Kick)>,
    /// `ResumedElsewhere` pushes that arrived before the answer: handled after it, against its attachment.
    moves: Vec<(String, Option<Seq>)>,
}

/// What a finished login did, for the dialect to answer (with the [`Keeps::Reply`] it started with).
pub enum Answer {
    /// Refused; the connection holds what it held when the login started.
    Failed(Failure),
    /// The connection holds the instance now, unless `kicked` (a kick that arrived before the answer, told after
    /// it: the instance is gone again).
    LoggedIn { ok: LoginOk, kicked: Option<Kick> },
}

/// What a push did to the instance held, for the dialect to tell its client.
pub enum Pushed {
    /// Nothing this connection tells: a push for another instance, or a recheck that found it attached.
    Nothing,
    /// Kicked (already out of the registry); `done` is dropped once the client is told.
    Kicked(Kick, Option<Ack>),
    /// Logged out through HTTP.
    LoggedOut,
    /// The connection ends, alike in both dialects.
    Ends(Ends),
}

/// Why a push ends a connection, told by its close code alone.
pub enum Ends {
    /// The instance was resumed on another connection: it lives there now (not to be detached).
    ResumedElsewhere,
    /// The server is stopping: the instance stays, disconnected, resumable on any node.
    Shutdown,
    /// The registry lost the instance while this node may have missed pushes (a recheck).
    Lost,
}

impl Ends {
    /// Closes the connection with the code that says why.
    pub fn close<T: Transport>(self, sh: &mut Shell<'_, T>) -> Flow {
        match self {
            Ends::ResumedElsewhere => {
                sh.close(close::RESUMED_ELSEWHERE, "resumed on another connection")
            }
            Ends::Shutdown => sh.close(close::RESTARTING, "server restarting; resume on any node"),
            Ends::Lost => sh.close(
                close::RESTARTING,
                "the session was lost; resume or log in again",
            ),
        }
    }
}

/// A connection's login state, logged out at first.
pub struct InstanceState<K: Keeps> {
    state: State<K>,
}

impl<K: Keeps> Default for InstanceState<K> {
    fn default() -> Self {
        InstanceState {
            state: State::LoggedOut(K::Out::default()),
        }
    }
}

impl<K: Keeps> InstanceState<K> {
    /// The instance held: logged in, or kept while a login runs.
    pub fn current(&self) -> Option<&Current<K::Held>> {
        match &self.state {
            State::LoggedIn(c) => Some(c),
            State::LoggingIn(l) => l.keeps.as_ref(),
            State::LoggedOut(_) => None,
        }
    }

    pub fn current_mut(&mut self) -> Option<&mut Current<K::Held>> {
        match &mut self.state {
            State::LoggedIn(c) => Some(c),
            State::LoggingIn(l) => l.keeps.as_mut(),
            State::LoggedOut(_) => None,
        }
    }

    /// The instance logged in as, with no login running.
    pub fn logged_in(&self) -> Option<&Current<K::Held>> {
        match &self.state {
            State::LoggedIn(c) => Some(c),
            _ => None,
        }
    }

    /// Takes the instance held out of the state, leaving the state without one.
    pub fn take_current(&mut self) -> Option<Current<K::Held>> {
        match &mut self.state {
            State::LoggingIn(l) => l.keeps.take(),
            State::LoggedIn(_) => {
                match std::mem::replace(&mut self.state, State::LoggedOut(K::Out::default())) {
                    State::LoggedIn(c) => Some(c),
                    _ => unreachable!("matched above"),
                }
            }
            State::LoggedOut(_) => None,
        }
    }

    /// Whether the current instance was attached here after change `attachment` (a push about it came late).
    fn attached_after(&self, attachment: Option<Seq>) -> bool {
        match (self.current(), attachment) {
            (Some(c), Some(a)) => c.facts.seq > a,
            _ => false,
        }
    }

    pub fn is_current(&self, instance_id: &str) -> bool {
        self.current()
            .is_some_and(|c| c.key.instance_id == instance_id)
    }

    pub fn is_logging_in(&self) -> bool {
        matches!(self.state, State::LoggingIn(_))
    }

    /// While logged out: what the dialect remembers of how.
    pub fn out(&self) -> Option<&K::Out> {
        match &self.state {
            State::LoggedOut(out) => Some(out),
            _ => None,
        }
    }

    /// While logged out, remembers `out` (what the dialect tells of how the session ended); no-op otherwise.
    pub fn set_out(&mut self, out: K::Out) {
        if let State::LoggedOut(o) = &mut self.state {
            *o = out;
        }
    }

    /// What the login in progress will be answered with.
    pub fn reply_mut(&mut self) -> Option<&mut K::Reply> {
        match &mut self.state {
            State::LoggingIn(l) => Some(&mut l.reply),
            _ => None,
        }
    }

    /// The login in progress, if any, when it finishes.
    pub fn poll_login(&mut self, cx: &mut Context<'_>) -> Poll<Result<LoginOk, Failure>> {
        match &mut self.state {
            State::LoggingIn(l) => l.running.poll_result(cx),
            _ => Poll::Pending,
        }
    }

    /// Takes the login in progress out of the state (the connection ends); the instance it kept meanwhile stays
    /// the connection's (detached as it ends).
    pub fn take_login(&mut self) -> Option<Running> {
        self.end_login().map(|l| l.running)
    }

    /// Takes the login in progress out of the state, leaving the instance it kept meanwhile held.
    fn end_login(&mut self) -> Option<Box<Login<K>>> {
        if !self.is_logging_in() {
            return None;
        }
        let State::LoggingIn(mut l) =
            std::mem::replace(&mut self.state, State::LoggedOut(K::Out::default()))
        else {
            unreachable!("checked above")
        };
        if let Some(c) = l.keeps.take() {
            self.state = State::LoggedIn(c);
        }
        Some(l)
    }

    /// Logs out the instance held before a login as someone else (or a resume of another instance) replaces it,
    /// and forgets how an earlier session ended.
    pub async fn leave<T: Transport>(&mut self, sh: &mut Shell<'_, T>) {
        sh.leave(self.take_current().map(|c| c.key)).await;
        if let State::LoggedOut(out) = &mut self.state {
            *out = K::Out::default();
        }
    }

    /// Logs out the instance held; `None` if none is. On failure the connection keeps it.
    pub async fn logout<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
    ) -> Option<Result<(), Failure>> {
        let cur = self.take_current()?;
        let s = &sh.sessions;
        let res = s.logout(&cur.key, sh.conn, Cause::Logout, sh.ip).await;
        if res.is_err() {
            self.state = State::LoggedIn(cur);
        }
        Some(res.map(|_| ()))
    }

    /// The UserSig of the instance held expired: removes it (if it is already gone, a kick racing the expiry, the
    /// ticket expired all the same). False if none is held.
    pub async fn expire<T: Transport>(&mut self, sh: &mut Shell<'_, T>) -> bool {
        let Some(cur) = self.take_current() else {
            return false;
        };
        sh.sessions.expire(&cur.key, cur.sig_expires_at).await;
        true
    }

    /// Polls `work` (a login or resume) once, holding the current instance meanwhile: the answer if it finished
    /// at once, else `None` and the connection polls it from then on.
    pub async fn start<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        reply: K::Reply,
        work: LoginWork,
    ) -> Option<(K::Reply, Answer)> {
        let keeps = self.take_current();
        match start(work).await {
            Started::Done(res) => {
                if let Some(c) = keeps {
                    self.state = State::LoggedIn(c);
                }
                Some((reply, self.answer(sh, res, Vec::new())))
            }
            Started::Running(running) => {
                self.state = State::LoggingIn(Box::new(Login {
                    reply,
                    running,
                    keeps,
                    early_kicks: Vec::new(),
                    moves: Vec::new(),
                }));
                None
            }
        }
    }

    /// The login in progress finished with `res`: takes it out of the state, and takes on its instance.
    pub fn finish<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        res: Result<LoginOk, Failure>,
    ) -> Option<(K::Reply, Answer)> {
        let l = self.end_login()?;
        let Login {
            reply,
            early_kicks,
            moves,
            ..
        } = *l;
        let answer = self.answer(sh, res, early_kicks);
        for (instance_id, attachment) in moves {
            let push = Push::ResumedElsewhere {
                instance_id,
                attachment,
            };
            sh.sessions.hub().deliver(sh.conn.conn, push);
        }
        Some((reply, answer))
    }

    fn answer<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        res: Result<LoginOk, Failure>,
        early_kicks: Vec<(String, Kick)>,
    ) -> Answer {
        let ok = match res {
            Ok(ok) => ok,
            Err(f) => {
                if self.current().is_none() {
                    sh.retire_conn();
                }
                return Answer::Failed(f);
            }
        };
        sh.login_deadline = None;
        let inst = &ok.instance;
        if let Some(c) = self
            .current_mut()
            .filter(|c| c.key.instance_id == inst.instance_id)
        {
            // A resume of the current instance attached it again: a push about an earlier attachment no
            // longer holds.
            c.facts.seq = c.facts.seq.max(ok.seq);
        } else {
            let online = sh
                .sessions
                .metrics()
                .map(|m| OnlineMark::new(m.online(inst.sdkappid, inst.platform)));
            self.state = State::LoggedIn(Current {
                key: inst.key(),
                sig_expires_at: inst.sig_expires_at,
                facts: LoginFacts::of(inst, ok.seq),
                held: K::hold(inst),
                _online: online,
            });
        }
        let early = early_kicks.into_iter().find(|k| k.0 == inst.instance_id);
        let kicked = early.map(|(_, kick)| {
            self.take_current();
            kick
        });
        Answer::LoggedIn { ok, kicked }
    }

    /// What `push` does to the instance held.
    pub async fn on_push<T: Transport>(&mut self, sh: &mut Shell<'_, T>, push: Push) -> Pushed {
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
                if self.is_current(&instance_id) {
                    // Already removed from the registry: nothing to detach.
                    self.take_current();
                    return Pushed::Kicked(kick, done);
                }
                if let State::LoggingIn(l) = &mut self.state {
                    keep_latest(&mut l.early_kicks, (instance_id, kick));
                }
                Pushed::Nothing
            }
            Push::LoggedOut { instance_id } if self.is_current(&instance_id) => {
                self.take_current();
                Pushed::LoggedOut
            }
            Push::ResumedElsewhere {
                instance_id,
                attachment,
            } if self.is_logging_in() => {
                if let State::LoggingIn(l) = &mut self.state {
                    keep_latest(&mut l.moves, (instance_id, attachment));
                }
                Pushed::Nothing
            }
            Push::ResumedElsewhere {
                instance_id,
                attachment,
            } if self.is_current(&instance_id) && !self.attached_after(attachment) => {
                self.take_current();
                Pushed::Ends(Ends::ResumedElsewhere)
            }
            Push::Shutdown => Pushed::Ends(Ends::Shutdown),
            Push::LoggedOut { .. } | Push::ResumedElsewhere { .. } => Pushed::Nothing,
            Push::Recheck => self.recheck(sh).await,
        }
    }

    /// After pushes may have been lost (see `Sessions::reconcile`): what the registry says of the instance now.
    async fn recheck<T: Transport>(&mut self, sh: &mut Shell<'_, T>) -> Pushed {
        let Some(c) = self.current() else {
            return Pushed::Nothing;
        };
        let (key, sig_expires_at, facts) = (c.key.clone(), c.sig_expires_at, c.facts.clone());
        match sh
            .sessions
            .recheck(&key, sh.conn, sig_expires_at, &facts)
            .await
        {
            Recheck::Attached(seq) => {
                if let (Some(seq), Some(c)) = (seq, self.current_mut()) {
                    c.facts.seq = c.facts.seq.max(seq);
                }
                Pushed::Nothing
            }
            Recheck::Kicked(kick) => {
                self.take_current();
                Pushed::Kicked(kick, None)
            }
            Recheck::Gone => {
                self.take_current();
                Pushed::Ends(Ends::Lost)
            }
            Recheck::Elsewhere => {
                self.take_current();
                Pushed::Ends(Ends::ResumedElsewhere)
            }
        }
    }
}

/// A login or resume, boxed (a connection holds it only while it runs).
pub type LoginWork = Pin<Box<dyn Future<Output = Result<LoginOk, Failure>> + Send>>;

/// A login or resume not finished at its first poll: the connection polls it (no task, no channel) from then on.
pub struct Running(tracing::instrument::Instrumented<LoginWork>);

impl Running {
    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<LoginOk, Failure>> {
        Pin::new(&mut self.0).poll(cx)
    }

    /// The connection ended while the login ran: it finishes in a task of its own (a login is never cut off
    /// halfway through its writes), and the instance it made, which no connection holds, is detached (it stays
    /// resumable for the grace).
    pub fn abandon(self, sessions: Arc<Sessions>, conn: ConnRef, rt: &tokio::runtime::Handle) {
        let tasks = sessions.tasks().clone();
        let finish = async move {
            if let Ok(ok) = self.0.await {
                if !ok.repeat_login {
                    sessions.detach_later(ok.instance.key(), conn, Cause::Disconnect);
                }
            }
        };
        tasks.spawn_on(finish, rt);
    }
}

/// A login or resume that finished during its first poll, or one still running.
enum Started {
    Done(Result<LoginOk, Failure>),
    Running(Running),
}

/// Polls a login once: a known user's login usually completes at once; one that waits is left to the connection.
async fn start(work: LoginWork) -> Started {
    let mut work = work.in_current_span();
    let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut work).poll(cx))).await;
    match first {
        Poll::Ready(res) => Started::Done(res),
        Poll::Pending => Started::Running(Running(work)),
    }
}
