//! The connections of this node, each reachable through a bounded mailbox: how a kick or a logout made
//! elsewhere reaches the connection that holds the instance. A push for a connection of another node goes
//! through the [`Bus`] as data; what arrives from the bus is delivered here ([`Hub::deliver`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::model::ConnRef;
use crate::model::KickReason;
use crate::model::Platform;
use crate::model::Seq;
use crate::push::bus::{Bus, Message};

/// Tells whoever waits for a kick that it is done: when dropped, which the connection does once the event is
/// written (or at once, if it cannot write it).
pub struct Ack(AckTo);

enum AckTo {
    Local(Option<oneshot::Sender<()>>),
    /// The kick came from another node: its login waits for [`Message::Ack`].
    Remote {
        bus: Arc<dyn Bus>,
        node: u64,
        id: u64,
    },
}

impl Ack {
    /// An acknowledgement the returned receiver completes on.
    pub fn local() -> (Ack, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Ack(AckTo::Local(Some(tx))), rx)
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        match &mut self.0 {
            AckTo::Local(tx) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
            AckTo::Remote { bus, node, id } => bus.send(*node, Message::Ack { id: *id }),
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

/// Pushes a connection can receive.
#[derive(Debug)]
pub enum Push {
    /// Send `kicked_offline` and close with 4001; `done` is dropped once the event is written.
    Kicked {
        instance_id: String,
        reason: KickReason,
        by_platform: Option<Platform>,
        done: Option<Ack>,
    },
    /// The instance was logged out through HTTP: send `logged_out`, stay open.
    LoggedOut { instance_id: String },
    /// The instance was resumed on another connection, by change `attachment`: close with 4002, unless this
    /// connection attached it later (the push came late: see [`crate::push::unheard`]).
    ResumedElsewhere {
        instance_id: String,
        attachment: Option<Seq>,
    },
    /// The server is stopping: close with 1012, leaving the instance resumable.
    Shutdown,
    /// The node may have missed pushes (the bus was cut off): check the instance against the registry.
    Recheck,
}

/// Pushes a connection may have waiting; one more is refused (a connection that far behind is stuck, and the
/// login that kicks it stops waiting for it after a bound anyway).
pub const PUSH_QUEUE: usize = 16;

/// A connection's bounded queue of pushes. Lighter than a channel (which allocates a block of slots and
/// cache-padded state up front, ~1 KB): an idle connection's mailbox is an empty deque and the waker of its
/// task, and the connection waits by polling it (no future of its own, which would be resident in every idle
/// connection's task).
#[derive(Default)]
pub struct Mailbox(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    queue: VecDeque<Push>,
    waiting: Option<Waker>,
}

impl Mailbox {
    /// Queues a push; `false` if the queue is full.
    fn put(&self, push: Push) -> bool {
        let waiting = {
            let mut slot = self.0.lock().expect("not poisoned");
            // A shutdown always fits, and so does a close because the instance moved (one a login held back
            // until it answered is handed back here, and must not be lost to a full queue).
            let always = matches!(push, Push::Shutdown | Push::ResumedElsewhere { .. });
            if slot.queue.len() >= PUSH_QUEUE && !always {
                return false;
            }
            slot.queue.push_back(push);
            slot.waiting.take()
        };
        if let Some(w) = waiting {
            w.wake();
        }
        true
    }

    /// The next push, or `Pending` (and the task is woken when one comes).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Push> {
        let mut slot = self.0.lock().expect("not poisoned");
        match slot.queue.pop_front() {
            Some(p) => {
                if slot.queue.is_empty() {
                    // A burst of pushes is over: an idle connection keeps no buffer.
                    slot.queue = VecDeque::new();
                }
                Poll::Ready(p)
            }
            None => {
                if !slot
                    .waiting
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    slot.waiting = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// Kicks sent to other nodes whose acknowledgement may still come; past that, old waits are dropped.
const ACKS_KEPT: usize = 1024;
/// Longer than any login waits for its kicks to be written.
const ACK_WAIT: Duration = Duration::from_secs(10);

pub struct Hub {
    node: u64,
    next: AtomicU64,
    conns: DashMap<u64, Arc<Mailbox>>,
    closing: AtomicBool,
    bus: Arc<dyn Bus>,
    /// Kicks sent to other nodes, by number, with when: completed when their [`Message::Ack`] arrives.
    acks: DashMap<u64, (Ack, Instant)>,
    next_ack: AtomicU64,
}

impl Hub {
    pub fn new(node: u64, bus: Arc<dyn Bus>) -> Self {
        Hub {
            node,
            next: AtomicU64::new(1),
            conns: DashMap::new(),
            closing: AtomicBool::new(false),
            bus,
            acks: DashMap::new(),
            next_ack: AtomicU64::new(1),
        }
    }

    pub fn node(&self) -> u64 {
        self.node
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Whether the connection is open on this node.
    pub fn holds(&self, conn: ConnRef) -> bool {
        conn.node == self.node && self.conns.contains_key(&conn.conn)
    }

    /// Tells every connection to check its instance against the registry.
    pub fn recheck_all(&self) {
        for m in self.conns.iter() {
            m.value().put(Push::Recheck);
        }
    }

    /// A new connection's name and its mailbox.
    pub fn register(&self) -> (ConnRef, Arc<Mailbox>) {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        self.conns.insert(conn, mailbox.clone());
        // A connection that arrives while the server stops is told at once.
        if self.closing.load(Ordering::SeqCst) {
            mailbox.put(Push::Shutdown);
        }
        (
            ConnRef {
                node: self.node,
                conn,
            },
            mailbox,
        )
    }

    /// Tells every connection, and every one that registers from now on, that the server is stopping.
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for m in self.conns.iter() {
            m.value().put(Push::Shutdown);
        }
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Moves a connection to a new number (its mailbox goes with it): the old number is no longer held here.
    pub fn rebind(&self, conn: ConnRef) -> ConnRef {
        let Some((_, mailbox)) = self.conns.remove(&conn.conn) else {
            return conn;
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.insert(n, mailbox);
        ConnRef {
            node: self.node,
            conn: n,
        }
    }

    pub fn unregister(&self, conn: ConnRef) {
        self.conns.remove(&conn.conn);
    }

    /// Delivers to a connection of this node, or sends to the node that holds it; `false` if it is known not
    /// to arrive (a local connection gone or stuck; a push to another node is assumed to arrive).
    pub async fn send(&self, conn: ConnRef, push: Push) -> bool {
        if conn.node == self.node {
            return self.deliver(conn.conn, push);
        }
        let message = match push {
            Push::Kicked {
                instance_id,
                reason,
                by_platform,
                done,
            } => {
                let ack = done.map(|done| {
                    let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
                    if self.acks.len() >= ACKS_KEPT {
                        // Nobody waits for a kick this old any more (the login stopped waiting after 2 s).
                        let old = Instant::now() - ACK_WAIT;
                        self.acks.retain(|_, (_, sent)| *sent > old);
                    }
                    self.acks.insert(id, (done, Instant::now()));
                    id
                });
                Message::Kick {
                    conn: conn.conn,
                    instance_id,
                    reason,
                    by_platform,
                    ack,
                }
            }
            Push::LoggedOut { instance_id } => Message::LoggedOut {
                conn: conn.conn,
                instance_id,
            },
            Push::ResumedElsewhere {
                instance_id,
                attachment,
            } => Message::ResumedElsewhere {
                conn: conn.conn,
                instance_id,
                attachment,
            },
            Push::Shutdown | Push::Recheck => return false,
        };
        self.bus.send(conn.node, message);
        true
    }

    /// Delivers to connection `conn` of this node; `false` if it is gone or its queue is full.
    pub fn deliver(&self, conn: u64, push: Push) -> bool {
        let Some(mailbox) = self.conns.get(&conn).map(|m| m.clone()) else {
            return false;
        };
        mailbox.put(push)
    }

    /// A message from another node for this node's connections.
    pub fn on_message(&self, from: u64, message: Message) {
        match message {
            Message::Kick {
                conn,
                instance_id,
                reason,
                by_platform,
                ack,
            } => {
                let done = ack.map(|id| {
                    Ack(AckTo::Remote {
                        bus: self.bus.clone(),
                        node: from,
                        id,
                    })
                });
                // Undelivered, the push (and with it `done`) is dropped: the sender is acknowledged at once.
                self.deliver(
                    conn,
                    Push::Kicked {
                        instance_id,
                        reason,
                        by_platform,
                        done,
                    },
                );
            }
            Message::LoggedOut { conn, instance_id } => {
                self.deliver(conn, Push::LoggedOut { instance_id });
            }
            Message::ResumedElsewhere {
                conn,
                instance_id,
                attachment,
            } => {
                let push = Push::ResumedElsewhere {
                    instance_id,
                    attachment,
                };
                self.deliver(conn, push);
            }
            // Dropping the waiting acknowledgement completes the kicking login's wait.
            Message::Ack { id } => {
                self.acks.remove(&id);
            }
            Message::Account { .. } | Message::Policies | Message::Recheck => {}
        }
    }
}
