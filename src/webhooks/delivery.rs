//! Delivery of the outbox: at least once, one user's events strictly in `Seq` order, many users in parallel.
//!
//! One node at a time delivers (it holds a lease in the database, renewed every second), so one user's events
//! never go out from two places at once. The deliverer tails the outbox by row id, keeps a queue per user
//! ordered by `Seq`, and sends each user's head when it is due: an event waits [`SETTLE`] after its creation
//! (so that an event of the same user numbered lower, written a moment later by another node or group, still
//! goes first), and a failed one waits its backoff (1 s, doubling). Each attempt gets the app's `timeout_ms`
//! and a fresh `Sign`; after `max_attempts` the event becomes a dead letter. Delivered events are deleted.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::event::STATE_CHANGE;
use super::outbox::{OutboxStore, StoredEvent};
use crate::clock::Clock;
use crate::config::WebhookConfig;
use crate::sdkapps::SdkApps;

/// How long a new event waits before it may be sent (see the module docs).
pub const SETTLE: Duration = Duration::from_millis(100);
/// Deliveries in flight at once, over every user.
const MAX_IN_FLIGHT: usize = 256;
/// Events fetched per look at the outbox.
const TAIL: u32 = 2048;
/// How often the outbox is looked at without being told (events written by other nodes).
const POLL: Duration = Duration::from_millis(500);
const LEASE: &str = "webhook-delivery";
const LEASE_TTL_MS: i64 = 5_000;
const LEASE_RENEW: Duration = Duration::from_secs(1);

type UserKey = (u32, String);

#[derive(Default)]
struct UserQueue {
    /// Pending events by `Seq`.
    events: BTreeMap<i64, StoredEvent>,
    /// An attempt of its head is in flight.
    busy: bool,
    /// It is in `runnable` or `delayed`.
    scheduled: bool,
    /// The head's next attempt may not start before this (unix ms).
    not_before_ms: i64,
}

/// What the deliverer holds while it holds the lease.
#[derive(Default)]
struct Queues {
    users: HashMap<UserKey, UserQueue>,
    /// Highest outbox id seen.
    cursor: i64,
    runnable: VecDeque<UserKey>,
    delayed: BinaryHeap<Reverse<(i64, UserKey)>>,
    delivered: Vec<i64>,
    in_flight: usize,
}

impl Queues {
    fn add(&mut self, ev: StoredEvent, now_ms: i64) {
        self.cursor = self.cursor.max(ev.id);
        let key = (ev.sdkappid, ev.user_id.clone());
        let q = self.users.entry(key.clone()).or_default();
        // A retried dead letter may come back while a copy is known: keep one per `Seq`.
        q.events.insert(ev.seq, ev);
        self.schedule(key, now_ms);
    }

    /// Puts a user whose head can go (not busy, not yet scheduled) in line, now or when it is due.
    fn schedule(&mut self, key: UserKey, now_ms: i64) {
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
        let due = (head.created_at_ms + SETTLE.as_millis() as i64).max(q.not_before_ms);
        if due <= now_ms {
            self.runnable.push_back(key);
        } else {
            self.delayed.push(Reverse((due, key)));
        }
    }

    fn promote_due(&mut self, now_ms: i64) {
        while let Some(Reverse((due, _))) = self.delayed.peek() {
            if *due > now_ms {
                break;
            }
            let Reverse((_, key)) = self.delayed.pop().expect("peeked");
            self.runnable.push_back(key);
        }
    }

    fn next_due_ms(&self) -> Option<i64> {
        self.delayed.peek().map(|Reverse((due, _))| *due)
    }

    fn idle(&self) -> bool {
        self.runnable.is_empty() && self.in_flight == 0
    }
}

/// The outcome of one attempt.
struct Attempt {
    key: UserKey,
    id: i64,
    seq: i64,
    result: Result<(), String>,
}

/// The delivery worker, owned by the application (see [`crate::workers`]).
pub struct Delivery {
    store: Arc<dyn OutboxStore>,
    apps: SdkApps,
    clock: Clock,
    /// Told when the writer has written events.
    written: Arc<Notify>,
    holder: String,
    clients: HashMap<u32, reqwest::Client>,
}

impl Delivery {
    pub fn new(
        store: Arc<dyn OutboxStore>,
        apps: SdkApps,
        clock: Clock,
        written: Arc<Notify>,
    ) -> Self {
        let node: u64 = rand::random();
        Delivery {
            store,
            apps,
            clock,
            written,
            holder: format!("{node:016x}"),
            clients: HashMap::new(),
        }
    }

    /// Delivers until `stop`; then delivers what is due (no waiting for retries) and returns, leaving the rest
    /// in the outbox for the next start.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut q = Queues::default();
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        let mut leader = false;
        let mut lease_due = tokio::time::Instant::now();
        loop {
            let now = self.clock.now_ms();
            if tokio::time::Instant::now() >= lease_due {
                lease_due = tokio::time::Instant::now() + LEASE_RENEW;
                let held = self
                    .store
                    .take_lease(LEASE, &self.holder, now, LEASE_TTL_MS)
                    .await;
                let held = held.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "webhook delivery: cannot renew the lease");
                    false
                });
                if leader && !held {
                    tracing::warn!("webhook delivery: lease lost; another node delivers");
                    tasks.abort_all();
                    q = Queues::default();
                }
                leader = held;
            }
            if !leader {
                if stop.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(lease_due) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            self.tail(&mut q, now).await;
            // Stopping, events waiting only for their settle time go now; retries keep their backoff.
            let settle = if stop.is_cancelled() {
                SETTLE.as_millis() as i64
            } else {
                0
            };
            q.promote_due(now + settle);
            while q.in_flight < MAX_IN_FLIGHT {
                let Some(key) = q.runnable.pop_front() else {
                    break;
                };
                self.start(&mut q, key, &mut tasks, now);
            }
            if !q.delivered.is_empty() {
                let ids = std::mem::take(&mut q.delivered);
                if let Err(e) = self.store.outbox_delete(&ids).await {
                    // Delivered at least once; if they come back after a restart, they go out again.
                    tracing::warn!(error = %e, "webhook delivery: cannot delete delivered events");
                }
            }
            if stop.is_cancelled() && q.idle() {
                return;
            }
            let wake = q
                .next_due_ms()
                .map(|due| Duration::from_millis((due - now).max(1) as u64))
                .unwrap_or(POLL)
                .min(POLL);
            tokio::select! {
                done = tasks.join_next(), if !tasks.is_empty() => {
                    if let Some(Ok(attempt)) = done {
                        self.finished(&mut q, attempt).await;
                    }
                }
                _ = self.written.notified() => {}
                _ = tokio::time::sleep(wake) => {}
                _ = tokio::time::sleep_until(lease_due) => {}
                _ = stop.cancelled(), if !stop.is_cancelled() => {}
            }
        }
    }

    async fn tail(&self, q: &mut Queues, now: i64) {
        loop {
            match self.store.outbox_tail(q.cursor, TAIL).await {
                Ok(events) => {
                    let full = events.len() == TAIL as usize;
                    for ev in events {
                        q.add(ev, now);
                    }
                    if !full {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery: cannot read the outbox");
                    return;
                }
            }
        }
    }

    fn start(&mut self, q: &mut Queues, key: UserKey, tasks: &mut JoinSet<Attempt>, now: i64) {
        let Some(user) = q.users.get_mut(&key) else {
            return;
        };
        user.scheduled = false;
        let Some(ev) = user.events.values().next().cloned() else {
            q.users.remove(&key);
            return;
        };
        let Some(hook) = self.apps.get(ev.sdkappid).and_then(|a| a.webhook.clone()) else {
            // The app no longer has a webhook (or no longer exists): nothing to deliver to.
            user.events.remove(&ev.seq);
            q.delivered.push(ev.id);
            q.schedule(key, now);
            return;
        };
        user.busy = true;
        q.in_flight += 1;
        let client = self
            .clients
            .entry(ev.sdkappid)
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build()
                    .expect("an HTTP client")
            })
            .clone();
        let request_time = self.clock.now_secs();
        tasks.spawn(async move {
            let result = send(&client, &hook, &ev, request_time).await;
            Attempt {
                key,
                id: ev.id,
                seq: ev.seq,
                result,
            }
        });
    }

    async fn finished(&self, q: &mut Queues, a: Attempt) {
        q.in_flight -= 1;
        let now = self.clock.now_ms();
        let Some(user) = q.users.get_mut(&a.key) else {
            return;
        };
        user.busy = false;
        match a.result {
            Ok(()) => {
                user.events.remove(&a.seq);
                user.not_before_ms = 0;
                q.delivered.push(a.id);
            }
            Err(why) => {
                let max = self
                    .apps
                    .get(a.key.0)
                    .and_then(|app| app.webhook.as_ref().map(|h| h.max_attempts))
                    .unwrap_or(1) as i32;
                let ev = user.events.get_mut(&a.seq).expect("the head was attempted");
                ev.attempts += 1;
                let dead = ev.attempts >= max;
                let attempts = ev.attempts;
                if dead {
                    user.events.remove(&a.seq);
                    user.not_before_ms = 0;
                    tracing::warn!(sdkappid = a.key.0, event_id = a.id, attempts, error = %why, "webhook event dead-lettered");
                } else {
                    // 1 s after the first failure, doubling.
                    let backoff_ms = 1000i64 << (attempts - 1).min(20);
                    user.not_before_ms = now + backoff_ms;
                }
                if let Err(e) = self.store.outbox_failed(a.id, attempts, &why, dead).await {
                    tracing::warn!(error = %e, "webhook delivery: cannot record a failed attempt");
                }
            }
        }
        q.schedule(a.key, now);
    }
}

/// `Sign` = lowercase hex SHA-256 of the token followed by the request time (decimal unix seconds).
pub fn sign(token: &str, request_time: i64) -> String {
    let digest = Sha256::digest(format!("{token}{request_time}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One attempt: POST the body with the query fields; delivered when the receiver answers 200 with JSON.
async fn send(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    ev: &StoredEvent,
    request_time: i64,
) -> Result<(), String> {
    let mut query: Vec<(&str, String)> = vec![
        ("SdkAppid", ev.sdkappid.to_string()),
        ("CallbackCommand", STATE_CHANGE.to_owned()),
        ("contenttype", "json".to_owned()),
        ("ClientIP", ev.client_ip.clone()),
        ("OptPlatform", ev.opt_platform.clone()),
    ];
    if let Some(token) = &hook.token {
        query.push(("Sign", sign(token.expose(), request_time)));
        query.push(("RequestTime", request_time.to_string()));
    }
    let response = client
        .post(&hook.url)
        .query(&query)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(Duration::from_millis(hook.timeout_ms))
        .body(ev.body.clone())
        .send()
        .await
        .map_err(|e| format!("request failed: {}", without_url(e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the answer failed: {}", without_url(e)))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("answered HTTP {}", status.as_u16()));
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .map(|_| ())
        .map_err(|_| "answered 200 with a body that is not JSON".to_owned())
}

/// An error's text without its URL, whose query carries the signature.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_the_documented_vector() {
        assert_eq!(
            sign("xxxxyyyy", 1_669_872_112),
            "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
        );
    }

    fn ev(id: i64, user: &str, seq: i64, created: i64) -> StoredEvent {
        StoredEvent {
            id,
            event_id: format!("e{id}"),
            sdkappid: 1,
            user_id: user.into(),
            seq,
            body: String::new(),
            client_ip: String::new(),
            opt_platform: String::new(),
            created_at_ms: created,
            attempts: 0,
            last_error: String::new(),
        }
    }

    #[test]
    fn a_user_is_scheduled_once_by_its_lowest_seq_after_the_settle_time() {
        let mut q = Queues::default();
        q.add(ev(1, "a", 20, 1000), 1000);
        q.add(ev(2, "a", 10, 1000), 1000);
        q.add(ev(3, "b", 5, 1000), 1000);
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
            head.seq, 10,
            "the lower Seq goes first, though written later"
        );
        assert_eq!(q.cursor, 3);
    }
}
