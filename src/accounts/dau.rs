//! Daily active users (PROTOCOL §8): a successful `login` marks (app, UTC day, user) once. The first login of a
//! user on a day queues one row; a worker writes queued rows in groups (one statement per group), so neither a
//! slow database nor a burst of first logins delays a login. Later logins that day find the mark in memory and
//! write nothing; marks of past days are dropped when the day changes.

use crate::runtime::batch::{group_commit, Grouping, WriteGroup};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountStore;
use crate::registry::users::Users;
use crate::runtime::clock::utc_date;
use crate::runtime::metrics::Metrics;

/// Rows one statement writes at most.
const MAX_GROUP: usize = 512;
/// Marks that may wait for the writer; past that a mark is dropped and retried at the user's next login.
const QUEUE: usize = 16 * 1024;

/// One queued row: (app, user, unix seconds of the login).
type Row = (u32, String, i64);

/// Marks users active, once per user and day (the mark is kept in the user's record of [`Users`], and dropped
/// with it or when the day changes).
pub struct Dau {
    users: Arc<Users>,
    queue: mpsc::Sender<Row>,
}

/// The task that writes queued marks, owned by the application (see [`crate::runtime::workers`]).
pub struct DauWorker {
    store: Arc<dyn AccountStore>,
    users: Arc<Users>,
    /// Taken by `run`: the queue is read there, the rest written to.
    rx: Option<mpsc::Receiver<Row>>,
    metrics: Option<Arc<Metrics>>,
}

impl Dau {
    /// The service, and the worker that writes its rows (the caller runs it).
    pub fn new(store: Arc<dyn AccountStore>, users: Arc<Users>) -> (Dau, DauWorker) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let worker = DauWorker {
            store,
            users: users.clone(),
            rx: Some(rx),
            metrics: None,
        };
        (Dau { users, queue }, worker)
    }

    /// Counts the user active today.
    pub fn mark(&self, sdkappid: u32, user_id: &str) {
        let now = self.users.clock().now_secs();
        self.users.mark_active(sdkappid, user_id, now, || {
            let queued = self
                .queue
                .try_send((sdkappid, user_id.to_owned(), now))
                .is_ok();
            if !queued {
                tracing::warn!(
                    sdkappid,
                    "daily-active queue full; the mark waits for the user's next login"
                );
            }
            queued
        });
    }

    /// Whether this node holds today's mark of the user (queued or written).
    pub fn is_marked(&self, sdkappid: u32, user_id: &str) -> bool {
        self.users.is_marked(sdkappid, user_id)
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
        let mut rx = self.rx.take().expect("a worker runs once");
        let grouping = Grouping::at_most(MAX_GROUP);
        group_commit(&mut rx, grouping, &stop, &mut self).await;
    }
}

impl WriteGroup<Row> for DauWorker {
    async fn write_group(&mut self, group: &mut Vec<Row>) {
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
            self.users.mark_written(app, &user, now, result.is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock::Clock;
    use crate::store::sqlite::SqliteStore;
    use std::time::Duration;

    #[tokio::test]
    async fn marks_of_past_days_are_dropped_when_the_day_changes() {
        let store: Arc<dyn AccountStore> =
            Arc::new(SqliteStore::connect("sqlite::memory:", 1).await.unwrap());
        tokio::time::pause();
        // Noon UTC on some day.
        let clock =
            Clock::following_tokio(1_700_000_000_000 / 86_400_000 * 86_400_000 + 43_200_000);
        let users = Users::new(clock);
        let (dau, _worker) = Dau::new(store, users.clone());
        for u in ["a", "b", "c"] {
            dau.mark(1, u);
        }
        assert_eq!((users.marks(), dau.queued()), (3, 3));
        dau.mark(1, "a");
        assert_eq!(dau.queued(), 3, "once per user and day");
        users.sweep();
        assert_eq!(users.marks(), 3, "nothing to drop the same day");
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert!(
            !dau.is_marked(1, "a"),
            "yesterday's mark does not count today"
        );
        dau.mark(1, "a");
        assert_eq!(dau.queued(), 4);
        users.sweep();
        assert_eq!(users.marks(), 1, "only today's mark is kept");
        assert_eq!(users.len(), 1, "and the records of the others are gone");
        assert!(dau.is_marked(1, "a"));
    }
}
