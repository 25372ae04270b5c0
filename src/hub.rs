//! The connections of this node, each reachable through a bounded mailbox: how a kick or a logout made
//! elsewhere reaches the connection that holds the instance.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::{oneshot, Notify};

use crate::platform::Platform;
use crate::registry::policy::KickReason;
use crate::registry::ConnRef;

/// Pushes a connection can receive.
#[derive(Debug)]
pub enum Push {
    /// Send `kicked_offline` and close with 4001; `done` fires once the event is written.
    Kicked {
        instance_id: String,
        reason: KickReason,
        by_platform: Option<Platform>,
        done: Option<oneshot::Sender<()>>,
    },
    /// The instance was logged out through HTTP: send `logged_out`, stay open.
    LoggedOut { instance_id: String },
    /// The instance was resumed on another connection: close with 4002.
    ResumedElsewhere { instance_id: String },
    /// The server is stopping: close with 1012, leaving the instance resumable.
    Shutdown,
}

/// Pushes a connection may have waiting; one more is refused (a connection that far behind is stuck, and the
/// login that kicks it stops waiting for it after a bound anyway).
pub const PUSH_QUEUE: usize = 16;

/// A connection's bounded queue of pushes. Lighter than a channel (which allocates a block of slots and
/// cache-padded state up front, ~1 KB): an idle connection's mailbox is an empty deque and a `Notify`.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Push>>,
    notify: Notify,
}

impl Mailbox {
    /// Queues a push; `false` if the queue is full (a shutdown always fits).
    fn put(&self, push: Push) -> bool {
        {
            let mut q = self.queue.lock().expect("not poisoned");
            if q.len() >= PUSH_QUEUE && !matches!(push, Push::Shutdown) {
                return false;
            }
            q.push_back(push);
        }
        self.notify.notify_one();
        true
    }

    /// The next push, waiting for one.
    pub async fn recv(&self) -> Push {
        loop {
            if let Some(p) = self.queue.lock().expect("not poisoned").pop_front() {
                return p;
            }
            // A push that lands between the check and this wait leaves a permit, so it is not missed.
            self.notify.notified().await;
        }
    }
}

pub struct Hub {
    node: u64,
    next: AtomicU64,
    conns: DashMap<u64, Arc<Mailbox>>,
    closing: AtomicBool,
}

impl Hub {
    pub fn new(node: u64) -> Self {
        Hub {
            node,
            next: AtomicU64::new(1),
            conns: DashMap::new(),
            closing: AtomicBool::new(false),
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

    pub fn unregister(&self, conn: ConnRef) {
        self.conns.remove(&conn.conn);
    }

    /// Delivers to a connection of this node; `false` if it is gone or its queue is full.
    pub async fn send(&self, conn: ConnRef, push: Push) -> bool {
        if conn.node != self.node {
            return false;
        }
        let Some(mailbox) = self.conns.get(&conn.conn).map(|m| m.clone()) else {
            return false;
        };
        mailbox.put(push)
    }
}
