//! Messages given up on, made up for. A message no node heard is published again for a while ([`super::unheard`]);
//! past that, its sender marks the channel it was for in Redis: a hash of counters (`NS:bus:missed`, a field per
//! channel: each node's, and the broadcasts'), each bumped when messages to it were dropped. Every node reads
//! the counters of its two channels every [`POLL`], and when one moved it checks its connections against the registry, which holds what
//! the messages said, as after its subscription was cut. That covers a node whose subscription stayed up while
//! its channel's master stalled (a pause, an overloaded master), which nothing else would tell to check.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bus::Incoming;

use crate::registry::redis::RedisConn;

/// How often a node reads its counters.
pub const POLL: Duration = Duration::from_secs(1);
/// How often at most a sender marks the same node (a node gone for good has messages dropped at every probe).
const MARK_EVERY: Duration = Duration::from_secs(1);
/// The counters outlive the last mark by this much (fields of nodes gone for good go with the hash).
const KEEP_MS: u64 = 24 * 3600 * 1000;

fn key(ns: &str) -> String {
    format!("{ns}:bus:missed")
}

/// The sender's side: marks the channels whose messages were dropped. A channel marked within the last
/// second is marked again once that is up, not skipped: its node may have read its counter since.
pub struct Marks {
    key: String,
    last: HashMap<String, Instant>,
    /// Channels to mark, not marked yet.
    pending: HashSet<String>,
}

impl Marks {
    pub fn new(ns: &str) -> Marks {
        Marks {
            key: key(ns),
            last: HashMap::new(),
            pending: HashSet::new(),
        }
    }

    /// Channels whose messages were dropped.
    pub fn add(&mut self, channels: impl IntoIterator<Item = String>) {
        self.pending.extend(channels);
    }

    /// When a pending channel may be marked, if any waits.
    pub fn due(&self) -> Option<Instant> {
        let at = |c: &String| self.last.get(c).map(|t| *t + MARK_EVERY);
        self.pending
            .iter()
            .map(|c| at(c).unwrap_or_else(Instant::now))
            .min()
    }

    /// Marks, in one round trip, the pending channels whose time has come (all of them if `now_all`, as when
    /// the node stops); `None` if none. The caller runs it, in a task of its own while publishing goes on (the
    /// master of the counters may be the one that stalled).
    pub fn flush(
        &mut self,
        conn: &RedisConn,
        now_all: bool,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let now = Instant::now();
        self.last
            .retain(|_, at| now.duration_since(*at) < MARK_EVERY);
        let last = &self.last;
        let ready: Vec<String> = self
            .pending
            .iter()
            .filter(|c| now_all || !last.contains_key(*c))
            .cloned()
            .collect();
        if ready.is_empty() {
            return None;
        }
        let mut pipe = redis::pipe();
        for channel in ready {
            pipe.hincr(&self.key, &channel, 1).ignore();
            self.pending.remove(&channel);
            self.last.insert(channel, now);
        }
        pipe.pexpire(&self.key, KEEP_MS as i64).ignore();
        let mut conn = conn.clone();
        Some(async move {
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "bus: could not mark the nodes whose messages were dropped");
            }
        })
    }
}

/// A node's side: whether the counters of its channels moved since it last looked.
pub struct Watch {
    key: String,
    channels: [String; 2],
    seen: Option<[Option<i64>; 2]>,
}

impl Watch {
    /// For the node subscribed to `channels` (its own, the broadcasts').
    pub fn new(ns: &str, channels: [String; 2]) -> Watch {
        Watch {
            key: key(ns),
            channels,
            seen: None,
        }
    }

    /// Whether messages to this node (or to every node) were dropped since the last look; the first look only
    /// learns where the counters are. `false` if Redis does not answer (it is asked again at the next look).
    pub async fn moved(&mut self, conn: &RedisConn) -> bool {
        let now: Result<[Option<i64>; 2], _> = redis::cmd("HMGET")
            .arg(&self.key)
            .arg(&self.channels[..])
            .query_async(&mut conn.clone())
            .await;
        let Ok(now) = now else { return false };
        let moved = self
            .seen
            .is_some_and(|seen| now.iter().zip(seen).any(|(n, s)| n.is_some() && *n != s));
        self.seen = Some(now);
        moved
    }
}

/// Reads the counters every [`POLL`] and tells the node to check when one moved, in a task of its own: the
/// master of the counters may be the one that stalled, and no message waits on it.
pub struct Watching {
    watch: Watch,
    registry: RedisConn,
    incoming: mpsc::Sender<Incoming>,
}

impl Watching {
    pub fn new(watch: Watch, registry: RedisConn, incoming: mpsc::Sender<Incoming>) -> Watching {
        Watching {
            watch,
            registry,
            incoming,
        }
    }

    pub async fn run(mut self, stop: &CancellationToken) {
        let mut look = tokio::time::interval(POLL);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = look.tick() => {}
            }
            let moved = tokio::select! {
                _ = stop.cancelled() => return,
                moved = self.watch.moved(&self.registry) => moved,
            };
            if moved {
                tracing::warn!(
                    "bus: messages to this node were dropped; checking against the registry"
                );
                let _ = self.incoming.send(Incoming::Resynced).await;
            }
        }
    }
}
