//! The connections of this node, each reachable through a bounded channel: how a kick or a logout made
//! elsewhere reaches the connection that holds the instance.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

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
}

/// Pushes a slow connection may have queued before senders wait. Pushes travel boxed: a channel allocates a
/// block of slots up front, and pointer-sized slots keep that small for every idle connection.
pub const PUSH_QUEUE: usize = 16;

pub struct Hub {
    node: u64,
    next: AtomicU64,
    conns: DashMap<u64, mpsc::Sender<Box<Push>>>,
}

impl Hub {
    pub fn new(node: u64) -> Self {
        Hub {
            node,
            next: AtomicU64::new(1),
            conns: DashMap::new(),
        }
    }

    pub fn node(&self) -> u64 {
        self.node
    }

    /// A new connection's name and the receiving end of its pushes.
    pub fn register(&self) -> (ConnRef, mpsc::Receiver<Box<Push>>) {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        self.conns.insert(conn, tx);
        (
            ConnRef {
                node: self.node,
                conn,
            },
            rx,
        )
    }

    pub fn unregister(&self, conn: ConnRef) {
        self.conns.remove(&conn.conn);
    }

    /// Number of open connections on this node.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Delivers to a connection of this node; `false` if it is gone.
    pub async fn send(&self, conn: ConnRef, push: Push) -> bool {
        if conn.node != self.node {
            return false;
        }
        let Some(tx) = self.conns.get(&conn.conn).map(|t| t.clone()) else {
            return false;
        };
        tx.send(Box::new(push)).await.is_ok()
    }
}
