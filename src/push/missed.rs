//! Messages given up on, made up for. A message no node heard is published again for a while ([`super::unheard`]);
//! past that, its sender marks the channel it was for in Redis: a hash of counters (`NS:bus:missed`, a field per
//! channel: each node's, and the broadcasts'), each bumped when messages to it were dropped. Every node reads
//! the counters of its two channels every [`POLL`], and when one moved it checks its connections against the registry, which holds what
//! the messages said, as after its subscription was cut. That covers a node whose subscription stayed up while
//! its channel's master stalled (a pause, an overloaded master), which nothing else would tell to check.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

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

/// The sender's side: marks the channels whose messages were dropped.
pub struct Marks {
    key: String,
    last: HashMap<String, Instant>,
}

impl Marks {
    pub fn new(ns: &str) -> Marks {
        Marks {
            key: key(ns),
            last: HashMap::new(),
        }
    }

    /// Marks `channels` (those not marked within the last second), in one round trip, in a task of its own (so
    /// publishing does not wait on the master of the counters, which may be the one that stalled).
    pub fn mark(&mut self, conn: &RedisConn, channels: Vec<String>) {
        let now = Instant::now();
        self.last
            .retain(|_, at| now.duration_since(*at) < MARK_EVERY);
        let mut pipe = redis::pipe();
        let mut any = false;
        for channel in channels {
            if self.last.contains_key(&channel) {
                continue;
            }
            pipe.hincr(&self.key, &channel, 1).ignore();
            self.last.insert(channel, now);
            any = true;
        }
        if !any {
            return;
        }
        pipe.pexpire(&self.key, KEEP_MS as i64).ignore();
        let mut conn = conn.clone();
        tokio::spawn(async move {
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "bus: could not mark the nodes whose messages were dropped");
            }
        });
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
