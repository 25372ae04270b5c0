//! Daily active users (PROTOCOL §8): a successful `login` marks (app, UTC day, user) once. The first login of a
//! user on a day queues one row; rows are written in groups (one statement per group) by a task of their own,
//! so neither a slow database nor a burst of first logins delays a login. Later logins that day find the mark
//! in memory and write nothing.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::accounts::AccountStore;

/// The UTC calendar date of a unix time, as `YYYY-MM-DD`.
pub fn utc_date(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Where a user's mark for a day stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Queued(i64),
    Written(i64),
}

/// Rows one statement writes at most.
const MAX_GROUP: usize = 512;
/// Marks that may wait for the writer; past that a mark is dropped and retried at the user's next login.
const QUEUE: usize = 16 * 1024;

/// Marks users active, once per user and day.
pub struct Dau {
    /// Keyed by a 64-bit hash of (app, user): 8 bytes a user instead of the user id again. Two users whose
    /// hashes collide (odds about n²/2⁶⁵) would share a mark, and the second one's first login of a day would
    /// go uncounted: a bounded error on a statistic, for memory on every session.
    marks: Arc<DashMap<u64, Mark>>,
    queue: mpsc::Sender<(u32, String, i64)>,
}

fn mark_key(sdkappid: u32, user_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (sdkappid, user_id).hash(&mut h);
    h.finish()
}

impl Dau {
    /// Needs a tokio runtime: it starts the writer task.
    pub fn new(store: Arc<dyn AccountStore>) -> Self {
        let marks = Arc::new(DashMap::new());
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, marks.clone(), rx));
        Dau { marks, queue }
    }

    /// Counts the user active on the day of `now` (unix s).
    pub fn mark(&self, sdkappid: u32, user_id: &str, now: i64) {
        let day = now.div_euclid(86400);
        let mut entry = self
            .marks
            .entry(mark_key(sdkappid, user_id))
            .or_insert(Mark::Queued(i64::MIN));
        if matches!(*entry, Mark::Queued(d) | Mark::Written(d) if d == day) {
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
}

async fn write_groups(
    store: Arc<dyn AccountStore>,
    marks: Arc<DashMap<u64, Mark>>,
    mut rx: mpsc::Receiver<(u32, String, i64)>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let rows: Vec<(u32, String, String)> = group
            .iter()
            .map(|(app, user, now)| (*app, utc_date(*now), user.clone()))
            .collect();
        let result = store.mark_active_many(&rows).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, rows = rows.len(), "could not record daily active users; will retry");
        }
        for (app, user, now) in group.drain(..) {
            let day = now.div_euclid(86400);
            let key = mark_key(app, &user);
            if result.is_ok() {
                marks.insert(key, Mark::Written(day));
            } else {
                // Forget it, so the user's next login queues it again.
                marks.remove_if(&key, |_, m| *m == Mark::Queued(day));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
        assert_eq!(utc_date(1_798_761_600), "2027-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
    }
}
