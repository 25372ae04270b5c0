//! What the deliverer holds: a queue per user ordered by `Seq`, the users whose head may be sent now (in their
//! app's lane) or later (`delayed`, by due time), the rows loaded and those finished. Apps with a user ready take
//! turns, one attempt a turn, each within its share of attempts in flight, so one app's stalled receiver never
//! holds another app's events. Pure bookkeeping: no I/O, no clock of its own, so it is unit-tested here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::outbox::{Batch, DeadLetter, OutboxEvent};

/// How long an event waits after it happened before it may be sent (see [`super::delivery`]).
pub const SETTLE: Duration = Duration::from_millis(100);

/// Attempts in flight at once, over every app.
pub(super) const MAX_IN_FLIGHT: usize = 256;
/// Attempts in flight at once for one app: a receiver that hangs holds at most these (each until its
/// `timeout_ms`), and the other apps keep the rest (docs/admin.md).
pub(super) const PER_APP_IN_FLIGHT: usize = 32;
/// Attempts in flight an app may always start, even when [`MAX_IN_FLIGHT`] are: eight apps whose receivers hang
/// hold every shared slot (8 × 32), and must not hold the other apps' events with them. So at most
/// `MAX_IN_FLIGHT` + this × apps are in flight.
pub(super) const GUARANTEED_IN_FLIGHT: usize = 4;

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
    /// It is in its app's lane or in `delayed`.
    pub(super) scheduled: bool,
    /// The head's next attempt may not start before this (unix ms).
    pub(super) not_before_ms: i64,
}

/// One app's users whose head may be sent now, and its attempts in flight.
#[derive(Default)]
struct Lane {
    ready: VecDeque<UserKey>,
    in_flight: usize,
    /// It is in `Queues::turns`.
    in_turns: bool,
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
    /// Per app (a few, as configured; kept once seen).
    lanes: HashMap<u32, Lane>,
    /// Apps with a user ready and room in their share, in the order of their next turn.
    turns: VecDeque<u32>,
    pub(super) delayed: BinaryHeap<Reverse<(i64, UserKey)>>,
    pub(super) dead: Vec<DeadLetter>,
    /// Attempts in flight, over every app.
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
            self.ready(key);
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
            self.ready(key);
        }
    }

    /// A user's head may be sent now: it waits in its app's lane.
    fn ready(&mut self, key: UserKey) {
        let app = key.0;
        self.lanes.entry(app).or_default().ready.push_back(key);
        self.offer_turn(app);
    }

    /// Puts an app in line for a turn when it has a user ready and room in its share.
    fn offer_turn(&mut self, app: u32) {
        let Some(lane) = self.lanes.get_mut(&app) else {
            return;
        };
        if !lane.in_turns && !lane.ready.is_empty() && lane.in_flight < PER_APP_IN_FLIGHT {
            lane.in_turns = true;
            self.turns.push_back(app);
        }
    }

    /// The next user whose head to send, with a slot taken for its attempt (give it back with
    /// [`Queues::ended`]): apps take turns, one user a turn, each within its share, all within
    /// [`MAX_IN_FLIGHT`] but for each app's [`GUARANTEED_IN_FLIGHT`].
    pub(super) fn take_turn(&mut self) -> Option<UserKey> {
        loop {
            // The first in line; when every shared slot is taken, the first still within its guarantee.
            let at = if self.in_flight < MAX_IN_FLIGHT {
                (!self.turns.is_empty()).then_some(0)
            } else {
                let lanes = &self.lanes;
                self.turns.iter().position(|app| {
                    lanes
                        .get(app)
                        .is_some_and(|l| l.in_flight < GUARANTEED_IN_FLIGHT)
                })
            };
            let app = self.turns.remove(at?).expect("a position in turns");
            let lane = self
                .lanes
                .get_mut(&app)
                .expect("an app in turns has a lane");
            lane.in_turns = false;
            let Some(key) = lane.ready.pop_front() else {
                continue;
            };
            lane.in_flight += 1;
            self.in_flight += 1;
            // To the back of the line, if it has more ready and room.
            self.offer_turn(app);
            return Some(key);
        }
    }

    /// The slot an attempt of `app` took is free again.
    pub(super) fn ended(&mut self, app: u32) {
        self.in_flight -= 1;
        if let Some(lane) = self.lanes.get_mut(&app) {
            lane.in_flight -= 1;
        }
        self.offer_turn(app);
    }

    pub(super) fn next_due_ms(&self) -> Option<i64> {
        self.delayed.peek().map(|Reverse((due, _))| *due)
    }

    /// Nothing in flight and nobody ready (with nothing in flight, every app with a user ready is in `turns`).
    pub(super) fn idle(&self) -> bool {
        self.turns.is_empty() && self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: &str, seq: u64, created: i64) -> OutboxEvent {
        ev_of(1, user, seq, created)
    }

    fn ev_of(sdkappid: u32, user: &str, seq: u64, created: i64) -> OutboxEvent {
        OutboxEvent {
            event_id: format!("e{seq}"),
            sdkappid,
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
        assert!(q.idle(), "nothing before the settle time");
        assert_eq!(q.delayed.len(), 2, "one entry per user");
        q.promote_due(1000 + SETTLE.as_millis() as i64);
        assert_eq!(q.lanes[&1].ready.len(), 2);
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

    /// `users` users of each app, each with one event due now.
    fn ready_queues(apps: &[(u32, usize)]) -> Queues {
        let mut q = Queues::default();
        for (id, &(app, users)) in apps.iter().enumerate() {
            let events = (0..users)
                .map(|u| ev_of(app, &format!("u{u}"), 1, 0))
                .collect();
            q.load(
                Batch {
                    id: id as i64,
                    events,
                },
                1000,
            );
        }
        q
    }

    #[test]
    fn apps_take_turns_each_within_its_share() {
        let mut q = ready_queues(&[(1, 600), (2, 3)]);
        let mut taken = Vec::new();
        while let Some((app, _)) = q.take_turn() {
            taken.push(app);
        }
        assert_eq!(&taken[..6], [1, 2, 1, 2, 1, 2], "one turn each");
        assert_eq!(taken.iter().filter(|a| **a == 1).count(), PER_APP_IN_FLIGHT);
        assert_eq!(
            taken.len(),
            PER_APP_IN_FLIGHT + 3,
            "app 2 got all of its own"
        );
        assert!(!q.idle());
        // An attempt of app 1 ends: app 1 gets that slot back, and only that one.
        q.ended(1);
        assert_eq!(q.take_turn().map(|k| k.0), Some(1));
        assert_eq!(q.take_turn(), None);
    }

    #[test]
    fn every_app_together_stays_within_the_global_bound() {
        let apps: Vec<(u32, usize)> = (1..=10).map(|app| (app, 100)).collect();
        let mut q = ready_queues(&apps);
        let mut taken = HashMap::<u32, usize>::new();
        while let Some((app, _)) = q.take_turn() {
            *taken.entry(app).or_default() += 1;
        }
        assert_eq!(taken.values().sum::<usize>(), MAX_IN_FLIGHT);
        assert!(taken.values().all(|n| *n <= PER_APP_IN_FLIGHT), "{taken:?}");
    }

    #[test]
    fn apps_that_hold_every_shared_slot_leave_each_other_app_its_guarantee() {
        // Eight apps whose receivers hang take every shared slot (8 × 32)...
        let apps: Vec<(u32, usize)> = (1..=8).map(|app| (app, 100)).collect();
        let mut q = ready_queues(&apps);
        while q.take_turn().is_some() {}
        assert_eq!(q.in_flight, MAX_IN_FLIGHT);
        // ... and a ninth still sends, up to its guarantee, while they hang.
        let events = (0..10).map(|u| ev_of(9, &format!("u{u}"), 1, 0)).collect();
        q.load(Batch { id: 9, events }, 1000);
        let mut taken = Vec::new();
        while let Some((app, _)) = q.take_turn() {
            taken.push(app);
        }
        assert_eq!(taken, vec![9; GUARANTEED_IN_FLIGHT]);
        // Its attempt ends: it takes that slot again; the hung apps still cannot.
        q.ended(9);
        assert_eq!(q.take_turn().map(|k| k.0), Some(9));
        q.ended(1);
        assert_eq!(
            q.take_turn(),
            None,
            "over the shared bound, a hung app gets no more"
        );
    }
}
