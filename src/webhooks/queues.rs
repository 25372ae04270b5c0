//! What the deliverer holds: a queue per user ordered by `Seq`, the users whose head may be sent now
//! (`runnable`) or later (`delayed`, by due time), the rows loaded and those finished. Pure bookkeeping: no I/O,
//! no clock of its own, so it is unit-tested here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::outbox::{Batch, DeadLetter, OutboxEvent};

/// How long an event waits after it happened before it may be sent (see [`super::delivery`]).
pub const SETTLE: Duration = Duration::from_millis(100);

pub(super) type UserKey = (u32, String);

/// One event waiting, with the row it came in.
pub(super) struct Pending {
    pub(super) row: i64,
    pub(super) event: OutboxEvent,
    pub(super) attempts: i32,
}

#[derive(Default)]
pub(super) struct UserQueue {
    /// Pending events by `Seq`.
    pub(super) events: BTreeMap<u64, Pending>,
    /// An attempt of its head is in flight.
    pub(super) busy: bool,
    /// It is in `runnable` or `delayed`.
    pub(super) scheduled: bool,
    /// The head's next attempt may not start before this (unix ms).
    pub(super) not_before_ms: i64,
}

/// What the deliverer holds while it holds the lease.
#[derive(Default)]
pub(super) struct Queues {
    pub(super) users: HashMap<UserKey, UserQueue>,
    /// Rows loaded, with how many of their events are not finished.
    pub(super) rows: HashMap<i64, usize>,
    /// Every row with an id up to this is loaded or finished.
    pub(super) cursor: i64,
    /// Finished rows whose deletion is not written yet (a read of the outbox must not load them again).
    pub(super) finished: HashSet<i64>,
    pub(super) runnable: VecDeque<UserKey>,
    pub(super) delayed: BinaryHeap<Reverse<(i64, UserKey)>>,
    pub(super) dead: Vec<DeadLetter>,
    pub(super) in_flight: usize,
    pub(super) pending: usize,
}

impl Queues {
    pub(super) fn knows(&self, row: i64) -> bool {
        self.rows.contains_key(&row) || self.finished.contains(&row)
    }

    /// Takes a row's events.
    pub(super) fn load(&mut self, batch: Batch, now_ms: i64) {
        if self.knows(batch.id) {
            return;
        }
        let mut count = 0;
        for event in batch.events {
            let key = (event.sdkappid, event.user_id.clone());
            let q = self.users.entry(key.clone()).or_default();
            // A retried dead letter may come back while a copy is known: keep one per `Seq`.
            if q.events.contains_key(&event.seq) {
                continue;
            }
            q.events.insert(
                event.seq,
                Pending {
                    row: batch.id,
                    event,
                    attempts: 0,
                },
            );
            count += 1;
            self.schedule(key, now_ms);
        }
        self.pending += count;
        if count == 0 {
            self.finished.insert(batch.id);
        } else {
            self.rows.insert(batch.id, count);
        }
    }

    /// An event is delivered or dead-lettered: its row is finished when it was the row's last.
    pub(super) fn finish(&mut self, row: i64) {
        self.pending -= 1;
        if let Some(left) = self.rows.get_mut(&row) {
            *left -= 1;
            if *left == 0 {
                self.rows.remove(&row);
                self.finished.insert(row);
            }
        }
    }

    /// Puts a user whose head can go (not busy, not yet scheduled) in line, now or when it is due.
    pub(super) fn schedule(&mut self, key: UserKey, now_ms: i64) {
        let Some(q) = self.users.get_mut(&key) else {
            return;
        };
        if q.busy || q.scheduled {
            return;
        }
        let Some(head) = q.events.values().next() else {
            self.users.remove(&key);
            return;
        };
        q.scheduled = true;
        let due = (head.event.created_at_ms + SETTLE.as_millis() as i64).max(q.not_before_ms);
        if due <= now_ms {
            self.runnable.push_back(key);
        } else {
            self.delayed.push(Reverse((due, key)));
        }
    }

    pub(super) fn promote_due(&mut self, now_ms: i64) {
        while let Some(Reverse((due, _))) = self.delayed.peek() {
            if *due > now_ms {
                break;
            }
            let Reverse((_, key)) = self.delayed.pop().expect("peeked");
            self.runnable.push_back(key);
        }
    }

    pub(super) fn next_due_ms(&self) -> Option<i64> {
        self.delayed.peek().map(|Reverse((due, _))| *due)
    }

    pub(super) fn idle(&self) -> bool {
        self.runnable.is_empty() && self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: &str, seq: u64, created: i64) -> OutboxEvent {
        OutboxEvent {
            event_id: format!("e{seq}"),
            sdkappid: 1,
            user_id: user.into(),
            seq,
            client_ip: String::new(),
            opt_platform: String::new(),
            created_at_ms: created,
            body: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        }
    }

    #[test]
    fn a_user_is_scheduled_once_by_its_lowest_seq_after_the_settle_time() {
        let mut q = Queues::default();
        q.load(
            Batch {
                id: 1,
                events: vec![ev("a", 20, 1000), ev("b", 5, 1000)],
            },
            1000,
        );
        q.load(
            Batch {
                id: 2,
                events: vec![ev("a", 10, 1000)],
            },
            1000,
        );
        q.load(
            Batch {
                id: 2,
                events: vec![ev("a", 10, 1000)],
            },
            1000,
        );
        assert_eq!(q.pending, 3, "a row is loaded once");
        assert!(q.runnable.is_empty(), "nothing before the settle time");
        assert_eq!(q.delayed.len(), 2, "one entry per user");
        q.promote_due(1000 + SETTLE.as_millis() as i64);
        assert_eq!(q.runnable.len(), 2);
        let head = q.users[&(1, "a".to_string())]
            .events
            .values()
            .next()
            .unwrap();
        assert_eq!(
            head.event.seq, 10,
            "the lower Seq goes first, though written later"
        );
        // A row is finished once each of its events is.
        q.finish(1);
        assert!(!q.finished.contains(&1));
        q.finish(1);
        assert!(q.finished.contains(&1) && q.knows(1));
    }
}
