//! Delivery of the outbox: at least once, one user's events strictly in `Seq` order, many users in parallel.
//!
//! One node at a time delivers (it holds a lease in the database, renewed every second), so one user's events
//! never go out from two places at once. The deliverer takes the groups its own writer hands it, and tails the
//! outbox by row id for the others (written by other nodes, before a restart, or while it had no room); it keeps
//! a queue per user ordered by `Seq`, and sends each user's head when it is due: an event waits [`SETTLE`] after
//! it happened (so that an event of the same user numbered lower, written a moment later by another node, still
//! goes first), and a failed one waits its backoff (1 s, doubling). Apps with users due take turns, each within
//! its own share of attempts in flight (see `queues`). Each attempt gets the app's `timeout_ms` and
//! a fresh `Sign`; after `max_attempts` the event becomes a dead letter. A row is deleted once all its events are
//! delivered or dead-lettered; attempt counts live in memory (a restart starts them again). At shutdown it goes
//! on until nothing else falls due before the deadline (retries included), and leaves the rest in the outbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use super::attempt::sign;
use super::attempt::{self, send};
use super::outbox::{Batch, DeadLetter, OutboxEvent, OutboxStore};
pub use super::queues::SETTLE;
use super::queues::{Queues, UserKey};
use crate::config::apps::SdkApps;
use crate::runtime::clock::Clock;
use crate::runtime::metrics::{Metrics, Outcome};
use crate::runtime::workers::Deadline;

/// Events held in memory at most; the rest wait in the outbox until there is room.
const MAX_PENDING: usize = 50_000;
/// Rows looked at per read of the outbox.
const TAIL_ROWS: u32 = 256;
/// How often the outbox is read without being told (rows written by other nodes).
const POLL: Duration = Duration::from_millis(500);
/// How often finished rows are deleted and dead letters written (in groups).
const FLUSH: Duration = Duration::from_millis(100);
const LEASE: &str = "webhook-delivery";
const LEASE_TTL_MS: i64 = 5_000;
const LEASE_RENEW: Duration = Duration::from_secs(1);
const LEASE_RETRY: Duration = Duration::from_millis(100);
const LEASE_MARGIN_MS: i64 = 1_000;
/// Stopping, delivery ends this long before the shutdown's deadline: time to record what it finished.
const STOP_MARGIN: Duration = Duration::from_millis(500);

/// The outcome of one attempt.
struct Attempt {
    key: UserKey,
    seq: u64,
    result: Result<(), String>,
}

/// The delivery worker, owned by the application (see [`crate::runtime::workers`]).
pub struct Delivery {
    store: Arc<dyn OutboxStore>,
    apps: SdkApps,
    clock: Clock,
    /// Groups this node's writer wrote.
    written: mpsc::Receiver<Batch>,
    holder: String,
    clients: HashMap<u32, reqwest::Client>,
    metrics: Option<Arc<Metrics>>,
    /// The shutdown's deadline (never set: it stops at once, leaving everything in the outbox).
    deadline: Deadline,
}

impl Delivery {
    /// `node` names this node in the lease (the same name its writer uses).
    pub fn new(
        store: Arc<dyn OutboxStore>,
        apps: SdkApps,
        clock: Clock,
        written: mpsc::Receiver<Batch>,
        node: String,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Delivery {
            store,
            apps,
            clock,
            written,
            holder: node,
            clients: HashMap::new(),
            metrics,
            deadline: Deadline::default(),
        }
    }

    /// Once stopped, it makes the attempts that fall due until `deadline` (less a margin).
    pub fn stopping_by(self, deadline: Deadline) -> Self {
        Delivery { deadline, ..self }
    }

    /// Delivers until `stop`; then, until the shutdown's deadline less `STOP_MARGIN`, makes every attempt that
    /// falls due (events waiting for their settle time at once, retries at their backoff) and returns when none
    /// is left before it; what is left stays in the outbox for the next start or another node.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut q = Queues::default();
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        let mut leader = false;
        let mut held_until_ms = 0;
        // The last answer about the lease named another holder.
        let mut held_elsewhere = false;
        // Once stopping: when delivery ends (instant, unix ms).
        let mut until: Option<(Instant, i64)> = None;
        let now = Instant::now();
        let (mut lease_due, mut tail_due, mut flush_due) = (now, now, now + FLUSH);
        loop {
            let now_ms = self.clock.now_ms();
            let now = Instant::now();
            if until.is_none() && stop.is_cancelled() {
                let end = self.end_of_stop(now);
                until = Some((end, now_ms + (end - now).as_millis() as i64));
                // What the writer wrote last, if it was not handed over, is read at once; and a node without the
                // lease asks for it once more: if nobody delivers (the lease was free, or asking failed), what is
                // due goes out now rather than at the next start.
                tail_due = now;
                lease_due = lease_due.min(now);
            }
            if now >= lease_due {
                lease_due = now + LEASE_RENEW;
                let held = match self
                    .store
                    .take_lease(LEASE, &self.holder, now_ms, LEASE_TTL_MS)
                    .await
                {
                    Ok(held) => {
                        if held {
                            held_until_ms = now_ms + LEASE_TTL_MS;
                        }
                        held_elsewhere = !held;
                        held
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook delivery: cannot renew the lease");
                        // Soon again rather than a whole period later; meanwhile a lease this node holds is
                        // still its own until it expires (less a margin for clocks).
                        lease_due = now + LEASE_RETRY;
                        held_elsewhere = false;
                        leader && now_ms + LEASE_MARGIN_MS < held_until_ms
                    }
                };
                if leader && !held {
                    tracing::warn!("webhook delivery: lease lost; another node delivers");
                    tasks.abort_all();
                    q = Queues::default();
                }
                leader = held;
            }
            if !leader {
                // What this node writes waits in the outbox for the node that delivers.
                while self.written.try_recv().is_ok() {}
                if let Some((end, _)) = until {
                    if held_elsewhere || now >= end {
                        tracing::debug!(
                            "webhook delivery stops without the lease (another node delivers)"
                        );
                        return;
                    }
                }
                let wake = until.map_or(lease_due, |(end, _)| lease_due.min(end));
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    Some(_) = self.written.recv() => {}
                    _ = stop.cancelled(), if !stop.is_cancelled() => {}
                }
                continue;
            }
            while let Ok(batch) = self.written.try_recv() {
                if q.pending + batch.events.len() <= MAX_PENDING {
                    q.load(batch, now_ms);
                }
            }
            if now >= tail_due {
                tail_due = now + POLL;
                self.tail(&mut q, now_ms).await;
            }
            if until.is_some_and(|(end, _)| now >= end) {
                // Attempts still in flight are abandoned: their events stay in the outbox too.
                tasks.abort_all();
                self.stopped(&mut q, "the time is up").await;
                return;
            }
            // Stopping, events waiting only for their settle time go now (a retry then goes as much early).
            let settle = if until.is_some() {
                SETTLE.as_millis() as i64
            } else {
                0
            };
            q.promote_due(now_ms + settle);
            while let Some(key) = q.take_turn() {
                self.start(&mut q, key, &mut tasks, now_ms);
            }
            if let Some(m) = &self.metrics {
                m.sampled.webhook_pending.set(q.pending as i64);
            }
            if let Some((_, end_ms)) = until {
                if q.idle() && q.next_due_ms().is_none_or(|due| due - settle > end_ms) {
                    self.stopped(&mut q, "nothing else falls due in time").await;
                    return;
                }
            }
            if now >= flush_due || q.finished.len() >= 64 {
                flush_due = now + FLUSH;
                self.flush(&mut q).await;
            }
            let wake = q
                .next_due_ms()
                .map(|due| Duration::from_millis((due - settle - now_ms).max(1) as u64))
                .unwrap_or(POLL)
                .min(FLUSH);
            // Stopping, it wakes at its end too (else this is just the lease's time again).
            let end = until.map_or(lease_due, |(end, _)| end);
            tokio::select! {
                done = tasks.join_next(), if !tasks.is_empty() => {
                    if let Some(Ok(attempt)) = done {
                        self.finished(&mut q, attempt);
                    }
                    // Take every other finished attempt too, before the next round of work.
                    while let Some(done) = tasks.try_join_next() {
                        if let Ok(attempt) = done {
                            self.finished(&mut q, attempt);
                        }
                    }
                }
                Some(batch) = self.written.recv() => {
                    if q.pending + batch.events.len() <= MAX_PENDING {
                        q.load(batch, self.clock.now_ms());
                    }
                }
                _ = tokio::time::sleep(wake) => {}
                _ = tokio::time::sleep_until(lease_due) => {}
                _ = tokio::time::sleep_until(end) => {}
                _ = stop.cancelled(), if !stop.is_cancelled() => {}
            }
        }
    }

    /// Records what is finished and says what is left (in the outbox, for the next start or another node).
    async fn stopped(&self, q: &mut Queues, why: &str) {
        self.flush(q).await;
        tracing::debug!(
            abandoned = q.in_flight,
            waiting = q.pending,
            why,
            "webhook delivery stops; what is left stays in the outbox"
        );
    }

    /// When delivery ends once stopping: [`STOP_MARGIN`] before the shutdown's deadline (not before `now`);
    /// `now` when no deadline is set.
    fn end_of_stop(&self, now: Instant) -> Instant {
        self.deadline
            .get()
            .and_then(|d| d.checked_sub(STOP_MARGIN))
            .map_or(now, |end| end.max(now))
    }

    /// Writes dead letters and deletes finished rows.
    async fn flush(&self, q: &mut Queues) {
        if q.dead.is_empty() && q.finished.is_empty() {
            return;
        }
        let dead = std::mem::take(&mut q.dead);
        let done: Vec<i64> = q.finished.iter().copied().collect();
        match self.store.outbox_settle(&dead, &done).await {
            Ok(()) => {
                for row in &done {
                    q.finished.remove(row);
                }
                q.cursor = q.cursor.max(0);
            }
            Err(e) => {
                // Kept for the next flush: delivered at least once, dead letters not lost.
                tracing::warn!(error = %e, "webhook delivery: cannot record finished events");
                if let Some(m) = &self.metrics {
                    m.db_error("webhooks");
                }
                q.dead = dead;
            }
        }
    }

    /// Reads rows this node does not hold yet (written by other nodes, before a restart, or while it had no
    /// room), while there is room.
    async fn tail(&self, q: &mut Queues, now_ms: i64) {
        loop {
            let rows = match self.store.outbox_ids(q.cursor, TAIL_ROWS).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery: cannot read the outbox");
                    return;
                }
            };
            let full = rows.len() == TAIL_ROWS as usize;
            let mut wanted = Vec::new();
            let mut room = MAX_PENDING.saturating_sub(q.pending);
            let mut upto = q.cursor;
            for (id, events) in &rows {
                if !q.knows(*id) {
                    let events = (*events).max(0) as usize;
                    if events > room {
                        break;
                    }
                    room -= events;
                    wanted.push(*id);
                }
                upto = *id;
            }
            if !wanted.is_empty() {
                match self.store.outbox_batches(&wanted).await {
                    Ok(batches) => {
                        for (id, json) in batches {
                            match serde_json::from_str::<Vec<OutboxEvent>>(&json) {
                                Ok(events) => q.load(Batch { id, events }, now_ms),
                                Err(e) => {
                                    tracing::error!(row = id, error = %e, "webhook outbox row unreadable; dropped");
                                    q.finished.insert(id);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook delivery: cannot read the outbox");
                        return;
                    }
                }
            }
            q.cursor = upto;
            if !full || upto < rows.last().map_or(upto, |r| r.0) {
                return;
            }
        }
    }

    /// Sends the head of `key`, in the slot [`Queues::take_turn`] took for it (given back if nothing is sent).
    fn start(&mut self, q: &mut Queues, key: UserKey, tasks: &mut JoinSet<Attempt>, now_ms: i64) {
        let app = key.0;
        let Some(user) = q.users.get_mut(&key) else {
            q.ended(app);
            return;
        };
        user.scheduled = false;
        let Some((&seq, head)) = user.events.iter().next() else {
            q.users.remove(&key);
            q.ended(app);
            return;
        };
        let Some(hook) = self
            .apps
            .get(head.event.sdkappid)
            .and_then(|a| a.webhook.clone())
        else {
            // The app no longer has a webhook (or no longer exists): nothing to deliver to.
            let row = head.row;
            user.events.remove(&seq);
            q.finish(row);
            q.ended(app);
            q.schedule(key, now_ms);
            return;
        };
        let event = head.event.clone();
        user.busy = true;
        let client = self
            .clients
            .entry(event.sdkappid)
            .or_insert_with(attempt::client)
            .clone();
        let request_time = self.clock.now_secs();
        tasks.spawn(async move {
            let result = send(&client, &hook, &event, request_time).await;
            Attempt { key, seq, result }
        });
    }

    fn finished(&self, q: &mut Queues, a: Attempt) {
        q.ended(a.key.0);
        let now_ms = self.clock.now_ms();
        let Some(user) = q.users.get_mut(&a.key) else {
            return;
        };
        user.busy = false;
        let Some(head) = user.events.get_mut(&a.seq) else {
            return;
        };
        let mut done = None;
        if let Some(m) = &self.metrics {
            let outcome = if a.result.is_ok() {
                "delivered"
            } else {
                "failed"
            };
            m.webhook_deliveries
                .get_or_create(&Outcome { outcome })
                .inc();
        }
        match a.result {
            Ok(()) => done = Some(head.row),
            Err(why) => {
                head.attempts += 1;
                let app = self.apps.get(a.key.0);
                let hook = app.as_ref().and_then(|app| app.webhook.as_ref());
                let max = hook.map_or(1, |h| h.max_attempts) as i32;
                // Where it went, with any password in the URL masked.
                let url = hook.map(|h| h.url.masked()).unwrap_or_default();
                if head.attempts >= max {
                    tracing::warn!(sdkappid = a.key.0, event_id = %head.event.event_id, attempts = head.attempts,
                        url, error = %why, "webhook event dead-lettered");
                    if let Some(m) = &self.metrics {
                        m.webhook_dead_letters.inc();
                    }
                    q.dead.push(DeadLetter {
                        event: head.event.clone(),
                        attempts: head.attempts,
                        last_error: why,
                    });
                    done = Some(head.row);
                } else {
                    tracing::debug!(sdkappid = a.key.0, event_id = %head.event.event_id, attempt = head.attempts,
                        url, error = %why, "webhook attempt failed; it is retried");
                    // 1 s after the first failure, doubling.
                    user.not_before_ms = now_ms + (1000i64 << (head.attempts - 1).min(20));
                }
            }
        }
        if let Some(row) = done {
            user.events.remove(&a.seq);
            user.not_before_ms = 0;
            q.finish(row);
        }
        q.schedule(a.key, now_ms);
    }
}
