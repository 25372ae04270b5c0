//! Daily active users (PROTOCOL §8): a successful `login` marks (app, UTC day, user) once. The first login of a
//! user on a day queues one row; a worker writes queued rows in groups (one statement per group), so neither a
//! slow database nor a burst of first logins delays a login. Later logins that day find the mark in memory and
//! write nothing; marks of past days are dropped when the day changes.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountStore;
use crate::clock::{utc_date, Clock};
use crate::metrics::Metrics;

/// Where a user's mark for a day stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Queued(i64),
    Written(i64),
}

impl Mark {
    fn day(self) -> i64 {
        match self {
            Mark::Queued(d) | Mark::Written(d) => d,
        }
    }
}

/// Rows one statement writes at most.
const MAX_GROUP: usize = 512;
/// Marks that may wait for the writer; past that a mark is dropped and retried at the user's next login.
const QUEUE: usize = 16 * 1024;
/// How often the worker looks whether the day has changed (to drop the marks of past days).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One queued row: (app, user, unix seconds of the login).
type Row = (u32, String, i64);

struct Marks {
    /// Keyed by a 64-bit hash of (app, user) under this process's random key: 8 bytes a user instead of the user
    /// id again. Two users whose hashes collide (odds about n²/2⁶⁵, not choosable by an attacker) would share
    /// a mark, and the second one's first login of a day would go uncounted: a bounded error on a statistic,
    /// for memory on every session.
    map: DashMap<u64, Mark>,
    hasher: std::collections::hash_map::RandomState,
    /// The day the map was last pruned to.
    pruned_day: AtomicI64,
}

impl Marks {
    fn key(&self, sdkappid: u32, user_id: &str) -> u64 {
        self.hasher.hash_one((sdkappid, user_id))
    }
}

/// Marks users active, once per user and day.
pub struct Dau {
    marks: Arc<Marks>,
    queue: mpsc::Sender<Row>,
    clock: Clock,
}

/// The task that writes queued marks, owned by the application (see [`crate::workers`]).
pub struct DauWorker {
    store: Arc<dyn AccountStore>,
    marks: Arc<Marks>,
    rx: mpsc::Receiver<Row>,
    clock: Clock,
    metrics: Option<Arc<Metrics>>,
}

impl Dau {
    /// The service, and the worker that writes its rows (the caller runs it).
    pub fn new(store: Arc<dyn AccountStore>, clock: Clock) -> (Dau, DauWorker) {
        let marks = Arc::new(Marks {
            map: DashMap::new(),
            hasher: Default::default(),
            pruned_day: AtomicI64::new(clock.now_secs().div_euclid(86400)),
        });
        let (queue, rx) = mpsc::channel(QUEUE);
        let worker = DauWorker {
            store,
            marks: marks.clone(),
            rx,
            clock: clock.clone(),
            metrics: None,
        };
        (
            Dau {
                marks,
                queue,
                clock,
            },
            worker,
        )
    }

    /// Counts the user active today.
    pub fn mark(&self, sdkappid: u32, user_id: &str) {
        let now = self.clock.now_secs();
        let day = now.div_euclid(86400);
        let mut entry = self
            .marks
            .map
            .entry(self.marks.key(sdkappid, user_id))
            .or_insert(Mark::Queued(i64::MIN));
        if entry.day() == day {
            return;
        }
        if self
            .queue
            .try_send((sdkappid, user_id.to_owned(), now))
            .is_ok()
        {
            *entry = Mark::Queued(day);
        } else {
            tracing::warn!(
                sdkappid,
                "daily-active queue full; the mark waits for the user's next login"
            );
        }
    }

    /// Whether this node holds today's mark of the user (queued or written).
    pub fn is_marked(&self, sdkappid: u32, user_id: &str) -> bool {
        let day = self.clock.now_secs().div_euclid(86400);
        self.marks
            .map
            .get(&self.marks.key(sdkappid, user_id))
            .is_some_and(|m| m.day() == day)
    }

    /// Marks held in memory.
    pub fn len(&self) -> usize {
        self.marks.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.map.is_empty()
    }

    /// Rows waiting for the writer.
    pub fn queued(&self) -> usize {
        QUEUE - self.queue.capacity()
    }
}

impl DauWorker {
    /// Counts failed writes in `metrics` (`imlogin_database_errors_total{area="daily_active"}`).
    pub fn counting(mut self, metrics: Option<Arc<Metrics>>) -> DauWorker {
        self.metrics = metrics;
        self
    }

    /// Writes queued rows in groups until `stop`; then takes no more and writes what is queued.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut group, MAX_GROUP) => {
                    if n == 0 {
                        return;
                    }
                    self.write(&mut group).await;
                }
                _ = prune.tick() => self.prune(),
                _ = stop.cancelled() => break,
            }
        }
        self.rx.close();
        while self.rx.recv_many(&mut group, MAX_GROUP).await > 0 {
            self.write(&mut group).await;
        }
    }

    /// Drops the marks of past days, once the day has changed.
    fn prune(&self) {
        let today = self.clock.now_secs().div_euclid(86400);
        if self.marks.pruned_day.swap(today, Ordering::Relaxed) < today {
            self.marks.map.retain(|_, m| m.day() >= today);
        }
    }

    async fn write(&self, group: &mut Vec<Row>) {
        let rows: Vec<(u32, String, String)> = group
            .iter()
            .map(|(app, user, now)| (*app, utc_date(*now), user.clone()))
            .collect();
        let result = self.store.mark_active_many(&rows).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, rows = rows.len(), "could not record daily active users; will retry");
            if let Some(m) = &self.metrics {
                m.db_error("daily_active");
            }
        }
        for (app, user, now) in group.drain(..) {
            let day = now.div_euclid(86400);
            let key = self.marks.key(app, &user);
            if result.is_ok() {
                self.marks
                    .map
                    .entry(key)
                    .and_modify(|m| {
                        if m.day() <= day {
                            *m = Mark::Written(day)
                        }
                    })
                    .or_insert(Mark::Written(day));
            } else {
                // Forget it, so the user's next login queues it again.
                self.marks
                    .map
                    .remove_if(&key, |_, m| *m == Mark::Queued(day));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::SqliteStore;

    #[tokio::test]
    async fn marks_of_past_days_are_dropped_when_the_day_changes() {
        let store: Arc<dyn AccountStore> =
            Arc::new(SqliteStore::connect("sqlite::memory:", 1).await.unwrap());
        tokio::time::pause();
        // Noon UTC on some day.
        let clock =
            Clock::following_tokio(1_700_000_000_000 / 86_400_000 * 86_400_000 + 43_200_000);
        let (dau, worker) = Dau::new(store, clock);
        for u in ["a", "b", "c"] {
            dau.mark(1, u);
        }
        assert_eq!((dau.len(), dau.queued()), (3, 3));
        dau.mark(1, "a");
        assert_eq!(dau.queued(), 3, "once per user and day");
        worker.prune();
        assert_eq!(dau.len(), 3, "nothing to drop the same day");
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert!(
            !dau.is_marked(1, "a"),
            "yesterday's mark does not count today"
        );
        dau.mark(1, "a");
        assert_eq!(dau.queued(), 4);
        worker.prune();
        assert_eq!(dau.len(), 1, "only today's mark is kept");
        assert!(dau.is_marked(1, "a"));
    }
}
