//! The persisted outbox: the login service emits [`StateChange`]s into a bounded queue (never waiting), and a
//! worker writes them to the database in groups, off the login path, where delivery ([`super::delivery`])
//! picks them up. What is written survives a crash; what is still queued at shutdown is written first.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::event::{new_event_id, StateChange};
use crate::db::StoreResult;

/// One event as written.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub sdkappid: u32,
    pub user_id: String,
    pub seq: i64,
    pub body: String,
    pub client_ip: String,
    pub opt_platform: &'static str,
    pub created_at_ms: i64,
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub event_id: String,
    #[sqlx(try_from = "i64")]
    pub sdkappid: u32,
    pub user_id: String,
    pub seq: i64,
    pub body: String,
    pub client_ip: String,
    pub opt_platform: String,
    pub created_at_ms: i64,
    pub attempts: i32,
    pub last_error: String,
}

/// Where events wait for delivery.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Writes events (one statement).
    async fn outbox_insert(&self, events: &[NewEvent]) -> StoreResult<()>;
    /// Up to `limit` pending events with an id above `after_id`, in id order.
    async fn outbox_tail(&self, after_id: i64, limit: u32) -> StoreResult<Vec<StoredEvent>>;
    /// Forgets delivered events.
    async fn outbox_delete(&self, ids: &[i64]) -> StoreResult<()>;
    /// Records a failed attempt; `dead` turns the event into a dead letter.
    async fn outbox_failed(
        &self,
        id: i64,
        attempts: i32,
        error: &str,
        dead: bool,
    ) -> StoreResult<()>;
    /// Pending events (the outbox depth).
    async fn outbox_pending(&self) -> StoreResult<i64>;
    /// Up to `limit` dead letters of an app with an id above `after_id`, in id order.
    async fn dead_letters(
        &self,
        sdkappid: u32,
        after_id: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// Puts a dead letter back in the outbox (as a new row, so delivery's tail sees it; its user's order is its
    /// `seq`). `false` if there is no such dead letter.
    async fn retry_dead_letter(&self, sdkappid: u32, event_id: &str) -> StoreResult<bool>;
    /// Forgets a dead letter. `false` if there is no such dead letter.
    async fn drop_dead_letter(&self, sdkappid: u32, event_id: &str) -> StoreResult<bool>;
    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`; `true` if `holder` has it.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<bool>;
}

/// Events that may wait for the writer; past that an event is dropped (and logged): the receiver misses it,
/// but a login never waits for a webhook.
const QUEUE: usize = 64 * 1024;
/// Events one statement writes at most.
const MAX_GROUP: usize = 512;

/// Where the login service emits events. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::Sender<StateChange>,
}

impl Outbox {
    /// The emitter, and the worker that writes what it emits (the caller runs it). `written` is notified after
    /// each group is written.
    pub fn new(
        store: Arc<dyn super::outbox::OutboxStore>,
        written: Arc<Notify>,
    ) -> (Outbox, OutboxWriter) {
        let (queue, rx) = mpsc::channel(QUEUE);
        (Outbox { queue }, OutboxWriter { store, rx, written })
    }

    /// Queues an event; never waits.
    pub fn emit(&self, event: StateChange) {
        if self.queue.try_send(event).is_err() {
            tracing::warn!("webhook queue full or closed; an event is dropped");
        }
    }

    /// Events waiting for the writer.
    pub fn queued(&self) -> usize {
        QUEUE - self.queue.capacity()
    }
}

/// The task that writes emitted events, owned by the application (see [`crate::workers`]).
pub struct OutboxWriter {
    store: Arc<dyn OutboxStore>,
    rx: mpsc::Receiver<StateChange>,
    written: Arc<Notify>,
}

impl OutboxWriter {
    /// Writes queued events in groups until `stop`; then takes no more and writes what is queued.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        loop {
            let n = tokio::select! {
                n = self.rx.recv_many(&mut group, MAX_GROUP) => n,
                _ = stop.cancelled() => break,
            };
            if n == 0 {
                return;
            }
            self.write(&mut group).await;
        }
        self.rx.close();
        while self.rx.recv_many(&mut group, MAX_GROUP).await > 0 {
            self.write(&mut group).await;
        }
    }

    /// Writes a group, retrying while the database refuses (the queue behind it waits, bounded; at shutdown the
    /// application's deadline ends the retries).
    async fn write(&self, group: &mut Vec<StateChange>) {
        // One user's events in their order within the group, whatever order their emitters raced in.
        group.sort_by(|a, b| (a.sdkappid, &a.user_id, a.seq).cmp(&(b.sdkappid, &b.user_id, b.seq)));
        let rows: Vec<NewEvent> = group
            .drain(..)
            .map(|ev| {
                let event_id = new_event_id();
                NewEvent {
                    body: ev.body(&event_id),
                    event_id,
                    sdkappid: ev.sdkappid,
                    seq: ev.seq as i64,
                    client_ip: ev.client_ip.to_string(),
                    opt_platform: ev.opt_platform(),
                    created_at_ms: ev.at_ms,
                    user_id: ev.user_id,
                }
            })
            .collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.outbox_insert(&rows).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, events = rows.len(), "could not write webhook events; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.written.notify_one();
    }
}
