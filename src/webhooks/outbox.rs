//! The persisted outbox: the login service emits [`StateChange`]s into a bounded queue (never waiting), and a
//! worker writes them to the database in groups, one row per group, off the login path. What is written survives
//! a crash; what is still queued at shutdown is written first. The writer also hands each written group to this
//! node's delivery directly, so a node that delivers what it wrote never reads it back.

use crate::runtime::batch::{group_commit, Grouping, WriteGroup};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event::{new_event_id, StateChange};
pub use crate::store::outbox::{Batch, DeadLetter, OutboxEvent, OutboxStore, StoredDeadLetter};

/// Events that may wait for the writer; past that an event is dropped (and logged): the receiver misses it,
/// but a login never waits for a webhook.
const QUEUE: usize = 64 * 1024;
/// Events one row holds at most.
const MAX_GROUP: usize = 1024;
/// How long the writer waits for a group to fill once it has a first event: fewer, larger rows cost the database
/// less per event, for at most this much delay.
const LINGER: Duration = Duration::from_millis(20);
/// Written groups waiting for this node's delivery; past that delivery reads them from the database instead.
const HANDOFF: usize = 64;

/// Where the login service emits events. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::Sender<StateChange>,
}

impl Outbox {
    /// The emitter; the worker that writes what it emits (the caller runs it); and the groups it wrote, for
    /// this node's delivery. `node` names the writer in the rows.
    pub fn new(
        store: Arc<dyn OutboxStore>,
        node: String,
    ) -> (Outbox, OutboxWriter, mpsc::Receiver<Batch>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let (handoff, written) = mpsc::channel(HANDOFF);
        let writer = OutboxWriter {
            store,
            rx: Some(rx),
            handoff,
            node,
        };
        (Outbox { queue }, writer, written)
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

/// The task that writes emitted events, owned by the application (see [`crate::runtime::workers`]).
pub struct OutboxWriter {
    store: Arc<dyn OutboxStore>,
    /// Taken by `run`: the queue is read there, the rest written to.
    rx: Option<mpsc::Receiver<StateChange>>,
    handoff: mpsc::Sender<Batch>,
    node: String,
}

impl OutboxWriter {
    /// Writes queued events in groups until `stop`; then takes no more and writes what is queued.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut rx = self.rx.take().expect("a worker runs once");
        let grouping = Grouping {
            max: MAX_GROUP,
            linger: LINGER,
        };
        let last = group_commit(&mut rx, grouping, &stop, &mut self).await;
        // Said so that a shutdown's log shows what reached the outbox at the end.
        tracing::debug!(
            events = last,
            "webhook outbox writer: the last events are written"
        );
    }

    /// Writes a group, retrying while the database refuses (the queue behind it waits, bounded; at shutdown the
    /// application's deadline ends the retries), then hands it to delivery.
    async fn write(&self, group: &mut Vec<StateChange>) {
        let created_at_ms = group.iter().map(|e| e.at_ms).min().unwrap_or_default();
        let events: Vec<OutboxEvent> = group
            .drain(..)
            .map(|ev| {
                let event_id = new_event_id();
                OutboxEvent {
                    body: ev.raw_body(&event_id),
                    event_id,
                    sdkappid: ev.sdkappid,
                    seq: ev.seq,
                    client_ip: ev.client_ip.to_string(),
                    opt_platform: ev.opt_platform().to_owned(),
                    created_at_ms: ev.at_ms,
                    user_id: ev.user_id,
                }
            })
            .collect();
        let mut json = Vec::with_capacity(events.len() * 512);
        serde_json::to_writer(&mut json, &events).expect("serializable");
        let json = String::from_utf8(json).expect("JSON is UTF-8");
        let mut backoff = Duration::from_millis(100);
        let id = loop {
            match self
                .store
                .outbox_insert(&self.node, events.len(), created_at_ms, &json)
                .await
            {
                Ok(id) => break id,
                Err(e) => {
                    tracing::warn!(error = %e, events = events.len(), "could not write webhook events; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        // If delivery is busy (or this node does not deliver), it reads the row when it has room.
        let _ = self.handoff.try_send(Batch { id, events });
    }
}

impl WriteGroup<StateChange> for OutboxWriter {
    async fn write_group(&mut self, group: &mut Vec<StateChange>) {
        self.write(group).await
    }
}
