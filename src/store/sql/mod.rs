//! The SQL both databases share (both dialects take `$n` placeholders, `ON CONFLICT` and `RETURNING`), and the
//! one implementation of each store trait over it ([`accounts`], [`policies`], [`outbox`]), instantiated for each
//! database so they cannot drift apart.

pub(crate) mod accounts;
pub(crate) mod outbox;
pub(crate) mod policies;

pub const GET: &str = "SELECT sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at \
    FROM accounts WHERE sdkappid = $1 AND user_id = $2";
pub const REGISTER_MANY_HEAD: &str = "INSERT INTO accounts (sdkappid, user_id, created_at) ";
pub const REGISTER_MANY_TAIL: &str = " ON CONFLICT (sdkappid, user_id) DO NOTHING \
    RETURNING sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at";
pub const UPSERT_PROFILE: &str =
    "INSERT INTO accounts (sdkappid, user_id, nick, face_url, created_at) \
    VALUES ($1, $2, COALESCE($3, ''), COALESCE($4, ''), $5) \
    ON CONFLICT (sdkappid, user_id) DO UPDATE SET \
    nick = COALESCE($3, accounts.nick), face_url = COALESCE($4, accounts.face_url) \
    RETURNING sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at";
pub const DELETE: &str = "DELETE FROM accounts WHERE sdkappid = $1 AND user_id = $2";
pub const SET_DISABLED: &str =
    "UPDATE accounts SET disabled = $3 WHERE sdkappid = $1 AND user_id = $2";
pub const REVOKE: &str =
    "UPDATE accounts SET revoked_at = CASE WHEN revoked_at < $3 THEN $3 ELSE revoked_at END \
    WHERE sdkappid = $1 AND user_id = $2";
pub const LIST: &str =
    "SELECT sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at \
    FROM accounts WHERE sdkappid = $1 AND user_id > $2 ORDER BY user_id LIMIT $3";
pub const MARK_ACTIVE_HEAD: &str = "INSERT INTO daily_active (sdkappid, day, user_id) ";
pub const MARK_ACTIVE_TAIL: &str = " ON CONFLICT (sdkappid, day, user_id) DO NOTHING";
pub const EXISTING_HEAD: &str = "SELECT user_id FROM accounts WHERE sdkappid = ";
pub const GET_POLICIES: &str =
    "SELECT sdkappid, mode, web_instances, instances_per_platform FROM app_policies";
pub const PUT_POLICY: &str =
    "INSERT INTO app_policies (sdkappid, mode, web_instances, instances_per_platform, updated_at) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sdkappid) DO UPDATE SET mode = $2, web_instances = $3, \
    instances_per_platform = $4, updated_at = $5";
pub const DELETE_POLICY: &str = "DELETE FROM app_policies WHERE sdkappid = $1";
pub const OUTBOX_INSERT: &str =
    "INSERT INTO webhook_outbox (writer, events, created_at_ms, batch) \
    VALUES ($1, $2, $3, $4) RETURNING id";
pub const OUTBOX_IDS: &str =
    "SELECT id, events FROM webhook_outbox WHERE id > $1 ORDER BY id LIMIT $2";
pub const OUTBOX_BATCHES_HEAD: &str = "SELECT id, batch FROM webhook_outbox WHERE id IN (";
pub const OUTBOX_DELETE_HEAD: &str = "DELETE FROM webhook_outbox WHERE id IN (";
pub const OUTBOX_PENDING: &str = "SELECT COALESCE(SUM(events), 0) FROM webhook_outbox";
pub const DEAD_INSERT_HEAD: &str =
    "INSERT INTO webhook_dead_letters (event_id, sdkappid, user_id, seq, body, \
    client_ip, opt_platform, created_at_ms, attempts, last_error) ";
macro_rules! dead_columns {
    () => {
        "id, event_id, sdkappid, user_id, seq, body, client_ip, opt_platform, created_at_ms, attempts, last_error"
    };
}
pub const DEAD_LETTERS: &str = concat!(
    "SELECT ",
    dead_columns!(),
    " FROM webhook_dead_letters WHERE sdkappid = $1 AND id > $2 ORDER BY id LIMIT $3"
);
pub const DEAD_LETTER_ONE: &str = concat!(
    "SELECT ",
    dead_columns!(),
    " FROM webhook_dead_letters WHERE sdkappid = $1 AND event_id = $2"
);
pub const DROP_DEAD_LETTER: &str =
    "DELETE FROM webhook_dead_letters WHERE sdkappid = $1 AND event_id = $2";
pub const TAKE_LEASE: &str =
    "INSERT INTO webhook_lease (name, holder, expires_ms) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO UPDATE SET holder = $2, expires_ms = $3 \
    WHERE webhook_lease.holder = $2 OR webhook_lease.expires_ms < $4 RETURNING holder";
pub const ACTIVE_COUNTS: &str = "SELECT day, COUNT(*) FROM daily_active \
    WHERE sdkappid = $1 AND day >= $2 AND day <= $3 GROUP BY day ORDER BY day";

/// Splits rows into chunks of a few fixed sizes (256, then 16, then 1): a multi-row INSERT's text depends on its
/// row count, and each distinct text is prepared and cached by the database connection, so a few sizes are
/// prepared once and reused, where a size per group would be parsed and planned anew for almost every group.
pub fn fixed_chunks<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in [256, 16, 1] {
        while rows.len() >= size {
            let (chunk, rest) = rows.split_at(size);
            out.push(chunk);
            rows = rest;
        }
    }
    out
}

/// A dead letter's row.
#[derive(sqlx::FromRow)]
pub struct DeadRow {
    id: i64,
    event_id: String,
    sdkappid: i64,
    user_id: String,
    seq: i64,
    body: String,
    client_ip: String,
    opt_platform: String,
    created_at_ms: i64,
    attempts: i32,
    last_error: String,
}

impl DeadRow {
    pub fn into_stored(self) -> crate::store::outbox::StoredDeadLetter {
        use crate::store::outbox::{DeadLetter, OutboxEvent, StoredDeadLetter};
        StoredDeadLetter {
            id: self.id,
            letter: DeadLetter {
                event: OutboxEvent {
                    event_id: self.event_id,
                    sdkappid: self.sdkappid as u32,
                    user_id: self.user_id,
                    seq: self.seq as u64,
                    client_ip: self.client_ip,
                    opt_platform: self.opt_platform,
                    created_at_ms: self.created_at_ms,
                    body: serde_json::value::RawValue::from_string(self.body).unwrap_or_else(
                        |_| serde_json::value::RawValue::from_string("null".into()).expect("JSON"),
                    ),
                },
                attempts: self.attempts,
                last_error: self.last_error,
            },
        }
    }
}

/// Implements the store traits for a store struct with a `pool` field of the given database. One body for both
/// dialects keeps them from drifting apart; the contract tests run against both.
macro_rules! sql_stores {
    ($store:ty, $db:ty) => {
        $crate::store::sql::accounts::sql_account_store!($store, $db);
        $crate::store::sql::policies::sql_policy_store!($store, $db);
        $crate::store::sql::outbox::sql_outbox_store!($store, $db);
    };
}
pub(crate) use sql_stores;
