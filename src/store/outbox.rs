//! Where webhook events wait for delivery: [`OutboxStore`], with the events and dead letters it keeps.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::StoreResult;

/// One event, as written and delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub event_id: String,
    pub sdkappid: u32,
    pub user_id: String,
    pub seq: u64,
    pub client_ip: String,
    pub opt_platform: String,
    pub created_at_ms: i64,
    /// The JSON body, without the per-attempt signature (which goes in the query string); kept as raw JSON so
    /// a group is written and read without escaping or parsing each body again.
    pub body: Box<RawValue>,
}

/// A group of events as one outbox row.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: i64,
    pub events: Vec<OutboxEvent>,
}

/// An event given up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub event: OutboxEvent,
    pub attempts: i32,
    pub last_error: String,
}

/// A dead letter as stored, with its row id (the list's cursor).
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub letter: DeadLetter,
}

/// Where events wait for delivery.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Writes a group as one row (its events as a JSON array); returns the row's id.
    async fn outbox_insert(
        &self,
        writer: &str,
        events: usize,
        created_at_ms: i64,
        batch_json: &str,
    ) -> StoreResult<i64>;
    /// Ids of up to `limit` rows above `after_id`, in id order, with how many events each holds.
    async fn outbox_ids(&self, after_id: i64, limit: u32) -> StoreResult<Vec<(i64, i32)>>;
    /// The JSON of these rows (those that still exist).
    async fn outbox_batches(&self, ids: &[i64]) -> StoreResult<Vec<(i64, String)>>;
    /// In one transaction: records `dead` letters, then deletes the rows `done` (every event of which is
    /// delivered or dead-lettered).
    async fn outbox_settle(&self, dead: &[DeadLetter], done: &[i64]) -> StoreResult<()>;
    /// Events waiting (the outbox depth).
    async fn outbox_pending(&self) -> StoreResult<i64>;
    /// Up to `limit` dead letters of an app with an id above `after_id`, in id order.
    async fn dead_letters(
        &self,
        sdkappid: u32,
        after_id: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredDeadLetter>>;
    /// Moves a dead letter back to the outbox (a row of its own, its attempts reset; its user's order is its
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
