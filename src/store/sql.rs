//! The SQL both databases share (both dialects take `$n` placeholders, `ON CONFLICT` and `RETURNING`), and the
//! one implementation of each store trait over it, instantiated for each database so they cannot drift apart.

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
        const _: () = {
            use $crate::model::{Mode, Policy};
            use $crate::store::accounts::{Account, AccountStore, Profile};
            use $crate::store::outbox::{DeadLetter, StoredDeadLetter};
            use $crate::store::sql::DeadRow;
            use $crate::store::{sql, StoreResult};

            #[async_trait::async_trait]
            impl AccountStore for $store {
                async fn get(&self, sdkappid: u32, user_id: &str) -> StoreResult<Option<Account>> {
                    Ok(sqlx::query_as(sql::GET)
                        .bind(i64::from(sdkappid))
                        .bind(user_id)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn register_many(
                    &self,
                    items: &[(u32, String)],
                    now: i64,
                ) -> StoreResult<Vec<(Account, bool)>> {
                    let mut unique: Vec<&(u32, String)> = items.iter().collect();
                    unique.sort();
                    unique.dedup();
                    let mut tx = self.pool.begin().await?;
                    // Multi-row INSERTs for the whole group, in one transaction; rows they return were created by
                    // them.
                    let mut created: Vec<Account> = Vec::with_capacity(unique.len());
                    for chunk in sql::fixed_chunks(&unique) {
                        let mut insert = sqlx::QueryBuilder::<$db>::new(sql::REGISTER_MANY_HEAD);
                        insert.push_values(chunk, |mut row, (sdkappid, user_id)| {
                            row.push_bind(i64::from(*sdkappid))
                                .push_bind(user_id.as_str())
                                .push_bind(now);
                        });
                        insert.push(sql::REGISTER_MANY_TAIL);
                        created.extend(
                            insert
                                .build_query_as::<Account>()
                                .fetch_all(&mut *tx)
                                .await?,
                        );
                    }
                    let mut found: std::collections::HashMap<(u32, String), (Account, bool)> =
                        created
                            .into_iter()
                            .map(|a| ((a.sdkappid, a.user_id.clone()), (a, true)))
                            .collect();
                    // The others existed already (or another transaction created them first).
                    for key in &unique {
                        if !found.contains_key(*key) {
                            let existing: Account = sqlx::query_as(sql::GET)
                                .bind(i64::from(key.0))
                                .bind(&key.1)
                                .fetch_one(&mut *tx)
                                .await?;
                            found.insert((*key).clone(), (existing, false));
                        }
                    }
                    tx.commit().await?;
                    // In the callers' order; a repeated item is reported created only once.
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        let slot = found.get_mut(item).expect("every item was found");
                        out.push(slot.clone());
                        slot.1 = false;
                    }
                    Ok(out)
                }

                async fn upsert_profile(
                    &self,
                    sdkappid: u32,
                    user_id: &str,
                    profile: Profile<'_>,
                    now: i64,
                ) -> StoreResult<(Account, bool)> {
                    let existed = self.get(sdkappid, user_id).await?.is_some();
                    let account: Account = sqlx::query_as(sql::UPSERT_PROFILE)
                        .bind(i64::from(sdkappid))
                        .bind(user_id)
                        .bind(profile.nick)
                        .bind(profile.face_url)
                        .bind(now)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok((account, !existed))
                }

                async fn delete(&self, sdkappid: u32, user_id: &str) -> StoreResult<bool> {
                    let r = sqlx::query(sql::DELETE)
                        .bind(i64::from(sdkappid))
                        .bind(user_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn set_disabled(
                    &self,
                    sdkappid: u32,
                    user_id: &str,
                    disabled: bool,
                ) -> StoreResult<bool> {
                    let r = sqlx::query(sql::SET_DISABLED)
                        .bind(i64::from(sdkappid))
                        .bind(user_id)
                        .bind(disabled)
                        .execute(&self.pool)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn revoke(&self, sdkappid: u32, user_id: &str, at: i64) -> StoreResult<bool> {
                    let r = sqlx::query(sql::REVOKE)
                        .bind(i64::from(sdkappid))
                        .bind(user_id)
                        .bind(at)
                        .execute(&self.pool)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn list(
                    &self,
                    sdkappid: u32,
                    after: Option<&str>,
                    limit: u32,
                ) -> StoreResult<Vec<Account>> {
                    Ok(sqlx::query_as(sql::LIST)
                        .bind(i64::from(sdkappid))
                        .bind(after.unwrap_or(""))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn mark_active_many(
                    &self,
                    rows: &[(u32, String, String)],
                ) -> StoreResult<()> {
                    if rows.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.pool.begin().await?;
                    for chunk in sql::fixed_chunks(rows) {
                        let mut insert = sqlx::QueryBuilder::<$db>::new(sql::MARK_ACTIVE_HEAD);
                        insert.push_values(chunk, |mut row, (sdkappid, day, user_id)| {
                            row.push_bind(i64::from(*sdkappid))
                                .push_bind(day.as_str())
                                .push_bind(user_id.as_str());
                        });
                        insert.push(sql::MARK_ACTIVE_TAIL);
                        insert.build().execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn active_counts(
                    &self,
                    sdkappid: u32,
                    from: &str,
                    to: &str,
                ) -> StoreResult<Vec<(String, i64)>> {
                    Ok(sqlx::query_as(sql::ACTIVE_COUNTS)
                        .bind(i64::from(sdkappid))
                        .bind(from)
                        .bind(to)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn existing(
                    &self,
                    sdkappid: u32,
                    user_ids: &[String],
                ) -> StoreResult<Vec<String>> {
                    if user_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(sql::EXISTING_HEAD);
                    q.push_bind(i64::from(sdkappid)).push(" AND user_id IN (");
                    let mut list = q.separated(", ");
                    for u in user_ids {
                        list.push_bind(u.as_str());
                    }
                    q.push(")");
                    Ok(q.build_query_scalar().fetch_all(&self.pool).await?)
                }

                fn pool_status(&self) -> (u32, usize) {
                    (self.pool.size(), self.pool.num_idle())
                }

                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::PolicyStore for $store {
                async fn load_policies(&self) -> StoreResult<Vec<(u32, Policy)>> {
                    let rows: Vec<(i64, String, i32, i32)> = sqlx::query_as(sql::GET_POLICIES)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows
                        .into_iter()
                        .filter_map(|(app, mode, web, per)| {
                            let mode: Mode =
                                serde_json::from_value(serde_json::Value::String(mode)).ok()?;
                            let policy = Policy {
                                mode,
                                web_instances: u8::try_from(web).ok()?,
                                instances_per_platform: u8::try_from(per).ok()?,
                            };
                            Some((u32::try_from(app).ok()?, policy))
                        })
                        .collect())
                }

                async fn put_policy(
                    &self,
                    sdkappid: u32,
                    policy: &Policy,
                    now: i64,
                ) -> StoreResult<()> {
                    let mode = serde_json::to_value(policy.mode).expect("serializable");
                    sqlx::query(sql::PUT_POLICY)
                        .bind(i64::from(sdkappid))
                        .bind(mode.as_str().unwrap_or_default())
                        .bind(i32::from(policy.web_instances))
                        .bind(i32::from(policy.instances_per_platform))
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn delete_policy(&self, sdkappid: u32) -> StoreResult<bool> {
                    let r = sqlx::query(sql::DELETE_POLICY)
                        .bind(i64::from(sdkappid))
                        .execute(&self.pool)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::outbox::OutboxStore for $store {
                async fn outbox_insert(
                    &self,
                    writer: &str,
                    events: usize,
                    created_at_ms: i64,
                    batch_json: &str,
                ) -> StoreResult<i64> {
                    Ok(sqlx::query_scalar(sql::OUTBOX_INSERT)
                        .bind(writer)
                        .bind(events as i32)
                        .bind(created_at_ms)
                        .bind(batch_json)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn outbox_ids(
                    &self,
                    after_id: i64,
                    limit: u32,
                ) -> StoreResult<Vec<(i64, i32)>> {
                    Ok(sqlx::query_as(sql::OUTBOX_IDS)
                        .bind(after_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn outbox_batches(&self, ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
                    let mut out = Vec::with_capacity(ids.len());
                    for chunk in sql::fixed_chunks(ids) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::OUTBOX_BATCHES_HEAD);
                        let mut list = q.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        q.push(")");
                        out.extend(
                            q.build_query_as::<(i64, String)>()
                                .fetch_all(&self.pool)
                                .await?,
                        );
                    }
                    Ok(out)
                }

                async fn outbox_settle(
                    &self,
                    dead: &[DeadLetter],
                    done: &[i64],
                ) -> StoreResult<()> {
                    let mut tx = self.pool.begin().await?;
                    for chunk in sql::fixed_chunks(dead) {
                        let mut insert = sqlx::QueryBuilder::<$db>::new(sql::DEAD_INSERT_HEAD);
                        insert.push_values(chunk, |mut row, d| {
                            let e = &d.event;
                            row.push_bind(e.event_id.as_str())
                                .push_bind(i64::from(e.sdkappid))
                                .push_bind(e.user_id.as_str())
                                .push_bind(e.seq as i64)
                                .push_bind(e.body.get())
                                .push_bind(e.client_ip.as_str())
                                .push_bind(e.opt_platform.as_str())
                                .push_bind(e.created_at_ms)
                                .push_bind(d.attempts)
                                .push_bind(d.last_error.as_str());
                        });
                        insert.build().execute(&mut *tx).await?;
                    }
                    for chunk in sql::fixed_chunks(done) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::OUTBOX_DELETE_HEAD);
                        let mut list = q.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        q.push(")");
                        q.build().execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn outbox_pending(&self) -> StoreResult<i64> {
                    Ok(sqlx::query_scalar(sql::OUTBOX_PENDING)
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn dead_letters(
                    &self,
                    sdkappid: u32,
                    after_id: i64,
                    limit: u32,
                ) -> StoreResult<Vec<StoredDeadLetter>> {
                    let rows: Vec<DeadRow> = sqlx::query_as(sql::DEAD_LETTERS)
                        .bind(i64::from(sdkappid))
                        .bind(after_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(DeadRow::into_stored).collect())
                }

                async fn retry_dead_letter(
                    &self,
                    sdkappid: u32,
                    event_id: &str,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool.begin().await?;
                    let row: Option<DeadRow> = sqlx::query_as(sql::DEAD_LETTER_ONE)
                        .bind(i64::from(sdkappid))
                        .bind(event_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(row) = row else {
                        return Ok(false);
                    };
                    sqlx::query(sql::DROP_DEAD_LETTER)
                        .bind(i64::from(sdkappid))
                        .bind(event_id)
                        .execute(&mut *tx)
                        .await?;
                    let event = row.into_stored().letter.event;
                    let json = serde_json::to_string(&[&event]).expect("serializable");
                    sqlx::query(sql::OUTBOX_INSERT)
                        .bind("retry")
                        .bind(1i32)
                        .bind(event.created_at_ms)
                        .bind(json)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn drop_dead_letter(
                    &self,
                    sdkappid: u32,
                    event_id: &str,
                ) -> StoreResult<bool> {
                    let r = sqlx::query(sql::DROP_DEAD_LETTER)
                        .bind(i64::from(sdkappid))
                        .bind(event_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn take_lease(
                    &self,
                    name: &str,
                    holder: &str,
                    now_ms: i64,
                    ttl_ms: i64,
                ) -> StoreResult<bool> {
                    let got: Option<String> = sqlx::query_scalar(sql::TAKE_LEASE)
                        .bind(name)
                        .bind(holder)
                        .bind(now_ms + ttl_ms)
                        .bind(now_ms)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(got.as_deref() == Some(holder))
                }
            }
        };
    };
}
pub(crate) use sql_stores;
