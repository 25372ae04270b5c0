//! Webhook events given up on: listed, put back in the outbox, or forgotten.

use super::{Admin, AdminActor, AdminError, AdminResult};
use crate::webhooks::outbox::StoredDeadLetter;

/// Whether `id` can name a dead letter (event ids are short hex): anything else is no dead letter, and never
/// reaches the store (PostgreSQL refuses a NUL in text with an error, not an empty answer).
fn is_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Admin {
    /// Up to `limit` dead letters after the outbox row `after`.
    pub async fn dead_letters(
        &self,
        sdkappid: u32,
        after: i64,
        limit: u32,
    ) -> AdminResult<Vec<StoredDeadLetter>> {
        Ok(self.db.outbox.dead_letters(sdkappid, after, limit).await?)
    }

    /// Puts a dead letter back in the outbox, in its user's order.
    pub async fn retry_dead_letter(&self, who: &AdminActor, event_id: &str) -> AdminResult<()> {
        if !is_event_id(event_id)
            || !self
                .db
                .outbox
                .retry_dead_letter(who.sdkappid, event_id)
                .await?
        {
            return Err(AdminError::NotFound("dead letter"));
        }
        who.audit("dead_letter_retry", event_id);
        Ok(())
    }

    /// Forgets a dead letter.
    pub async fn drop_dead_letter(&self, who: &AdminActor, event_id: &str) -> AdminResult<()> {
        if !is_event_id(event_id)
            || !self
                .db
                .outbox
                .drop_dead_letter(who.sdkappid, event_id)
                .await?
        {
            return Err(AdminError::NotFound("dead letter"));
        }
        who.audit("dead_letter_drop", event_id);
        Ok(())
    }
}
