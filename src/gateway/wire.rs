//! The write side shared by the gateway's connection loops: frames wait in a bounded queue and are written as
//! the client takes them, so a connection's timers fire while a write is pending; a client that does not read
//! stops being read once [`OUT_HIGH_WATER`] bytes wait for it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::time::Instant;

use super::io::{Inbound, Outbound};
use super::native::connection::Limits;
use crate::limits::bucket::TokenBucket;
use crate::push::hub::Ack;

/// Bytes waiting to be sent above which the connection stops reading requests until the client reads.
pub const OUT_HIGH_WATER: usize = 64 * 1024;

/// How a connection's socket is to be closed once its loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Wait for the client to take the close frame (see `WsIo::close_lingering`).
    Linger,
    /// The client floods: it is counted against its address, and its socket lingers only briefly, reading at
    /// most a bounded amount of what it still sends (`gateway::ABORT_LINGER`, `ABORT_DRAIN`).
    Abort,
}

/// What the transport did.
pub enum WireEvent {
    Inbound(Inbound),
    /// The client sends frames faster than `limits.frames_per_second` allows.
    TooFast,
    /// The client is gone, the transport failed, or our close frame is out.
    Ended,
}

/// The transport and what waits to be written to it.
pub struct Wire<'a, T> {
    io: &'a mut T,
    queue: VecDeque<(Outbound, Option<Ack>)>,
    queued_bytes: usize,
    /// Frames handed to the transport but not yet flushed, with their write acknowledgements.
    unflushed: Vec<Ack>,
    pending_flush: bool,
    /// Set while a write waits for the client; the connection is dropped when it passes.
    pub(super) write_deadline: Option<Instant>,
    write_timeout: Duration,
    /// A close frame is queued: nothing more is read or sent.
    pub(super) closing: bool,
    /// The client broke a limit meant for abuse: its socket is dropped without the lingering close.
    pub(super) abusive: bool,
    /// Inbound frames: `limits.frames_per_second`, bursts of twice that.
    rate: TokenBucket,
}

impl<'a, T> Wire<'a, T>
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin,
{
    pub fn new(io: &'a mut T, limits: &Limits) -> Self {
        Wire {
            io,
            queue: VecDeque::new(),
            queued_bytes: 0,
            unflushed: Vec::new(),
            pending_flush: false,
            write_deadline: None,
            write_timeout: limits.write_timeout,
            closing: false,
            abusive: false,
            rate: TokenBucket::new(limits.frames_per_second),
        }
    }

    pub fn send(&mut self, frame: Outbound, written: Option<Ack>) {
        if self.closing {
            return;
        }
        self.closing = matches!(frame, Outbound::Close(..));
        self.queued_bytes += frame.len();
        self.queue.push_back((frame, written));
    }

    pub fn text(&mut self, text: String) {
        self.send(Outbound::Text(text), None);
    }

    pub fn blocked(&self) -> bool {
        self.write_deadline.is_some()
    }

    /// Writes what it can, then reads the next frame (unless too much waits to be sent, or it is closing).
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<WireEvent> {
        if self.poll_write(cx).is_err() {
            return Poll::Ready(WireEvent::Ended);
        }
        let idle = self.queue.is_empty() && !self.pending_flush;
        if self.closing {
            return if idle {
                Poll::Ready(WireEvent::Ended)
            } else {
                Poll::Pending
            };
        }
        if self.queued_bytes > OUT_HIGH_WATER {
            return Poll::Pending;
        }
        match Pin::new(&mut *self.io).poll_next(cx) {
            Poll::Ready(Some(_)) if !self.rate.admit(Instant::now()) => {
                Poll::Ready(WireEvent::TooFast)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(WireEvent::Inbound(frame)),
            Poll::Ready(None) => Poll::Ready(WireEvent::Ended),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), ()> {
        let mut io = Pin::new(&mut *self.io);
        while !self.queue.is_empty() {
            match io.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Err(()),
                Poll::Pending => break,
            }
            let (frame, written) = self.queue.pop_front().expect("not empty");
            self.queued_bytes -= frame.len();
            io.as_mut().start_send(frame).map_err(|_| ())?;
            self.unflushed.extend(written);
            self.pending_flush = true;
        }
        if self.pending_flush {
            match io.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.pending_flush = false;
                    // Each acknowledgement fires as it is dropped (and an idle connection keeps no buffer).
                    self.unflushed = Vec::new();
                }
                Poll::Ready(Err(_)) => return Err(()),
                Poll::Pending => {}
            }
        }
        if self.queue.is_empty() && !self.pending_flush {
            // Most connections are idle most of the time: a drained queue gives its buffer back rather than
            // keep it for the connection's life.
            if self.queue.capacity() > 0 {
                self.queue = VecDeque::new();
            }
            self.write_deadline = None;
        } else if self.write_deadline.is_none() {
            self.write_deadline = Some(Instant::now() + self.write_timeout);
        }
        Ok(())
    }
}
