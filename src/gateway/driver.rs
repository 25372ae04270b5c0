//! The loop every WebSocket connection runs, whatever protocol it speaks: one loop over inbound frames, pushes
//! from other logins, the login in progress, and one timer (heartbeat, login deadline, UserSig deadline, write
//! deadline). What the frames mean is its [`Dialect`]'s business (`/v1/ws` in [`super::native::connection`], the
//! Web SDK in [`super::websdk::connection`]), over what a connection is logged in as (its
//! [`super::instance::InstanceState`], the same for both); what every connection has (its
//! transport and write queue, its limits, its timers) is the [`Shell`] handed to each of the dialect's steps.
//!
//! Writes never block the loop: frames are queued and written as the client takes them, so the timers fire while
//! a write is pending. A client that stops reading stops being read once a bounded amount waits for it, and is
//! dropped when a frame waits longer than the write timeout. The loop is generic over its transport (a stream of
//! [`Inbound`], a sink of [`Outbound`]), so tests drive it over channels on a paused clock.

use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Sink, Stream};
use tokio::time::Instant;
use tracing::Instrument;

use super::instance::{InstanceState, Keeps};
use super::io::{Inbound, Outbound};
use super::native::connection::Limits;
use super::native::protocol::close;
use super::wire::{Ending, Wire, WireEvent};
use crate::login::service::{LoginOk, Sessions};
use crate::model::Cause;
use crate::model::Failure;
use crate::model::{ConnRef, InstanceKey};
use crate::push::hub::{Mailbox, Push};

/// What a connection reads from and writes to.
pub trait Transport: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send {}
impl<T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send> Transport for T {}

/// Whether the loop goes on after a step.
pub enum Flow {
    Continue,
    Stop,
}

/// What every connection has, whatever its protocol.
pub struct Shell<'a, T> {
    pub sessions: Arc<Sessions>,
    pub conn: ConnRef,
    pub ip: IpAddr,
    /// Borrowed from the task that runs the connection: a copy here would cost every idle session its size.
    pub limits: &'a Limits,
    pub wire: Wire<'a, T>,
    pub last_seen: Instant,
    /// Until the first login succeeds: when the connection is closed for not logging in.
    pub login_deadline: Option<Instant>,
    /// Why the instance is left disconnected if the connection ends now (its webhook's cause).
    pub end: Cause,
}

impl<T: Transport> Shell<'_, T> {
    /// Queues a close frame: nothing more is read or sent after it.
    pub fn close(&mut self, code: u16, reason: &'static str) -> Flow {
        self.wire.send(Outbound::Close(code, reason), None);
        Flow::Continue
    }

    /// Logs out the instance a connection held before a login as someone else (or a resume of another
    /// instance) replaces it.
    pub fn leave(&self, left: Option<InstanceKey>) -> impl Future<Output = ()> + Send + 'static {
        // Owns what it needs: the shell (and its transport) is not borrowed across the wait.
        let (sessions, ip, conn) = (self.sessions.clone(), self.ip, self.conn);
        async move {
            if let Some(key) = left {
                sessions.switch_away(&key, conn, ip).await;
            }
        }
    }

    /// A login or resume failed, and the connection holds no instance: it takes a new number, so that whatever
    /// the attempt may have written under the old one is known for a ghost (see [`crate::login::settle`]).
    pub fn retire_conn(&mut self) {
        self.conn = self.sessions.hub().rebind(self.conn);
    }
}

/// A protocol spoken on a connection: its login state (an [`InstanceState`], logged out by default), and what it
/// does with each step. Each step gets the connection's [`Shell`].
pub trait Dialect: Default + Keeps {
    /// The span of one step of a connection (disabled, and free, below INFO).
    fn span(conn: ConnRef, ip: IpAddr) -> tracing::Span;
    /// What the connection is logged in as, and its login in progress.
    fn instance(&mut self) -> &mut InstanceState<Self>;
    /// When the next UserSig step is due (unix ms): a notice or the expiry.
    fn sig_due_ms(&self, sessions: &Sessions) -> Option<i64>;
    /// The UserSig step that was due.
    fn on_sig_due<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
    ) -> impl Future<Output = ()> + Send;
    /// A frame from the client (already counted as heartbeat and against the frame rate).
    fn on_inbound<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        frame: Inbound,
    ) -> impl Future<Output = Flow> + Send;
    /// A push to this connection: a kick, a logout or resume elsewhere, a recheck, the server stopping.
    fn on_push<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        push: Push,
    ) -> impl Future<Output = Flow> + Send;
    /// The login in progress finished with `res`.
    fn finish_login<T: Transport>(
        &mut self,
        sh: &mut Shell<'_, T>,
        res: Result<LoginOk, Failure>,
    ) -> impl Future<Output = Flow> + Send;
}

/// What one turn of the loop does: something decided at once, or a step that waits (in its span).
enum Step<'s> {
    Now(Flow),
    Later(
        tracing::Span,
        Pin<Box<dyn Future<Output = Flow> + Send + 's>>,
    ),
}

struct Connection<'a, T, D: Dialect> {
    sh: Shell<'a, T>,
    d: D,
}

/// Runs a connection speaking `D` until it ends; `io` is left for the caller to close (see
/// [`super::io::WsIo::close_lingering`]).
pub async fn serve<T, D>(io: &mut T, sessions: Arc<Sessions>, ip: IpAddr, limits: &Limits) -> Ending
where
    T: Transport,
    D: Dialect + Send,
{
    let (conn, mailbox) = sessions.hub().register();
    let mut c = Connection {
        sh: Shell {
            sessions,
            conn,
            ip,
            limits,
            wire: Wire::new(io, limits),
            last_seen: Instant::now(),
            login_deadline: Some(Instant::now() + limits.login_timeout),
            end: Cause::Disconnect,
        },
        // Made here, not passed in: an argument would stay in this future beside the moved value.
        d: D::default(),
    };
    c.run(&mailbox).await;
    let ending = if c.sh.wire.abusive {
        Ending::Abort
    } else {
        Ending::Linger
    };
    // The usual end: detach here rather than from Drop (which needs a task of its own); queued with other ends
    // where the registry takes them in one step.
    if let Some(key) = c.d.instance().take_current().map(|c| c.key) {
        c.sh.sessions.detach_later(key, c.sh.conn, c.sh.end);
    }
    ending
}

impl<T, D: Dialect> Drop for Connection<'_, T, D> {
    /// Unregisters the connection, and detaches its instance (leaving it resumable for the grace) however the
    /// connection ends: normally, on error, or in a panic.
    fn drop(&mut self) {
        self.sh.sessions.hub().unregister(self.sh.conn);
        // Outside a runtime (it is shutting down) there is nothing left to keep resumable.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (sessions, conn) = (&self.sh.sessions, self.sh.conn);
        let d = self.d.instance();
        if let Some(running) = d.take_login() {
            running.abandon(sessions.clone(), conn, &rt);
        }
        if let Some(cur) = d.current() {
            sessions.detach_later(cur.key.clone(), conn, Cause::Disconnect);
        }
    }
}

impl<T: Transport, D: Dialect + Send> Connection<'_, T, D> {
    async fn run(&mut self, mailbox: &Mailbox) {
        // One timer serves the heartbeat, the login deadline, the UserSig steps and the write deadline. It is
        // moved earlier only when a deadline before it appears (a new UserSig deadline, a blocked write), never
        // per frame: a frame only moves `last_seen`, and the heartbeat is checked when the timer fires.
        let mut armed = self.next_deadline(None);
        let timer = tokio::time::sleep_until(armed);
        tokio::pin!(timer);
        let mut sig_armed: Option<i64> = None;
        loop {
            let sig_due = self.d.sig_due_ms(&self.sh.sessions);
            let mut wanted = armed;
            if sig_due != sig_armed {
                sig_armed = sig_due;
                wanted = self.next_deadline(sig_due);
            } else if let Some(w) = self.sh.wire.write_deadline {
                wanted = wanted.min(w);
            }
            if wanted != armed {
                armed = wanted;
                timer.as_mut().reset(armed);
            }
            // A step that waits is boxed, and awaited outside the `select!`: this future lives as long as the
            // connection, and its size (the largest state it can be in) is resident for every idle session;
            // awaited inside, each branch's output (a login's result is hundreds of bytes) would be kept across
            // the wait. Each step runs in a span of its own (a span held for the connection's life would cost
            // every idle session its formatted fields).
            let mut timer_fired = false;
            let flow = {
                let step = tokio::select! {
                    ev = poll_fn(|cx| self.sh.wire.poll_event(cx)) => match ev {
                        WireEvent::Inbound(frame) => {
                            self.sh.last_seen = Instant::now();
                            let span = self.span();
                            Step::Later(span, Box::pin(self.d.on_inbound(&mut self.sh, frame)))
                        }
                        WireEvent::TooFast => {
                            self.sh.wire.abusive = true;
                            Step::Now(self.sh.close(close::POLICY, "too many frames per second"))
                        }
                        WireEvent::Ended => Step::Now(Flow::Stop),
                    },
                    push = poll_fn(|cx| mailbox.poll_recv(cx)) => {
                        let span = self.span();
                        Step::Later(span, Box::pin(self.d.on_push(&mut self.sh, push)))
                    }
                    res = poll_fn(|cx| self.d.instance().poll_login(cx)) => {
                        let span = self.span();
                        Step::Later(span, Box::pin(self.d.finish_login(&mut self.sh, res)))
                    }
                    _ = &mut timer => {
                        timer_fired = true;
                        let span = self.span();
                        Step::Later(span, Box::pin(self.on_timer(sig_armed)))
                    }
                };
                match step {
                    Step::Now(flow) => flow,
                    Step::Later(span, step) => step.instrument(span).await,
                }
            };
            if timer_fired {
                sig_armed = None;
                armed = self.next_deadline(self.d.sig_due_ms(&self.sh.sessions));
                timer.as_mut().reset(armed);
            }
            if matches!(flow, Flow::Stop) {
                return;
            }
        }
    }

    fn span(&self) -> tracing::Span {
        D::span(self.sh.conn, self.sh.ip)
    }

    /// The earliest of the heartbeat, the login deadline, the UserSig step and the write deadline.
    fn next_deadline(&self, sig_due_ms: Option<i64>) -> Instant {
        let sh = &self.sh;
        let mut at = sh.last_seen + sh.limits.heartbeat;
        if let Some(d) = sh.login_deadline {
            at = at.min(d);
        }
        if let Some(ms) = sig_due_ms {
            at = at.min(sh.sessions.clock().instant_at(ms));
        }
        if let Some(w) = sh.wire.write_deadline {
            at = at.min(w);
        }
        at
    }

    async fn on_timer(&mut self, sig_armed: Option<i64>) -> Flow {
        let now = Instant::now();
        if self.sh.login_deadline.is_some_and(|d| d <= now) {
            self.sh.login_deadline = None;
            return self
                .sh
                .close(close::POLICY, "no login within limits.login_timeout_secs");
        }
        if self.sh.wire.write_deadline.is_some_and(|d| d <= now) {
            // The client has not taken a frame for the whole write timeout: nothing more can reach it.
            return Flow::Stop;
        }
        if sig_armed.is_some_and(|ms| ms <= self.sh.sessions.clock().now_ms()) {
            self.d.on_sig_due(&mut self.sh).await;
        }
        if self.sh.last_seen + self.sh.limits.heartbeat <= now {
            self.sh.end = Cause::HeartbeatTimeout;
            if self.sh.wire.blocked() {
                return Flow::Stop;
            }
            return self.sh.close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
        }
        Flow::Continue
    }
}
