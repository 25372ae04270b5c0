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
pub const OUTBOX_INSERT_HEAD: &str = "INSERT INTO webhook_outbox \
    (event_id, sdkappid, user_id, seq, body, client_ip, opt_platform, created_at_ms) ";
macro_rules! outbox_columns {
    () => {
        "id, event_id, sdkappid, user_id, seq, body, client_ip, opt_platform, created_at_ms, attempts, last_error"
    };
}
pub const OUTBOX_TAIL: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM webhook_outbox WHERE state = 0 AND id > $1 ORDER BY id LIMIT $2"
);
pub const OUTBOX_DELETE_HEAD: &str = "DELETE FROM webhook_outbox WHERE id IN (";
pub const OUTBOX_FAILED: &str =
    "UPDATE webhook_outbox SET attempts = $2, last_error = $3, state = $4 WHERE id = $1";
pub const OUTBOX_PENDING: &str = "SELECT COUNT(*) FROM webhook_outbox WHERE state = 0";
pub const DEAD_LETTERS: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM webhook_outbox WHERE state = 1 AND sdkappid = $1 AND id > $2 ORDER BY id LIMIT $3"
);
pub const DEAD_LETTERS_ONE: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM webhook_outbox WHERE sdkappid = $1 AND event_id = $2 AND state = 1"
);
pub const DROP_DEAD_LETTER: &str =
    "DELETE FROM webhook_outbox WHERE sdkappid = $1 AND event_id = $2 AND state = 1";
pub const TAKE_LEASE: &str =
    "INSERT INTO webhook_lease (name, holder, expires_ms) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO UPDATE SET holder = $2, expires_ms = $3 \
    WHERE webhook_lease.holder = $2 OR webhook_lease.expires_ms < $4 RETURNING holder";
pub const ACTIVE_COUNTS: &str = "SELECT day, COUNT(*) FROM daily_active \
    WHERE sdkappid = $1 AND day >= $2 AND day <= $3 GROUP BY day ORDER BY day";

/// Implements the store traits for a store struct with a `pool` field of the given database. One body for both
/// dialects keeps them from drifting apart; the contract tests run against both.
macro_rules! sql_stores {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::accounts::{Account, AccountStore, Profile};
            use $crate::db::{sql, StoreResult};
            use $crate::registry::policy::{Mode, Policy};
            use $crate::webhooks::outbox::{NewEvent, StoredEvent};

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
                    // One multi-row INSERT for the whole group; rows it returns were created by it.
                    let mut insert = sqlx::QueryBuilder::<$db>::new(sql::REGISTER_MANY_HEAD);
                    insert.push_values(&unique, |mut row, (sdkappid, user_id)| {
                        row.push_bind(i64::from(*sdkappid))
                            .push_bind(user_id.as_str())
                            .push_bind(now);
                    });
                    insert.push(sql::REGISTER_MANY_TAIL);
                    let created: Vec<Account> = insert.build_query_as().fetch_all(&mut *tx).await?;
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
                    let mut insert = sqlx::QueryBuilder::<$db>::new(sql::MARK_ACTIVE_HEAD);
                    insert.push_values(rows, |mut row, (sdkappid, day, user_id)| {
                        row.push_bind(i64::from(*sdkappid))
                            .push_bind(day.as_str())
                            .push_bind(user_id.as_str());
                    });
                    insert.push(sql::MARK_ACTIVE_TAIL);
                    insert.build().execute(&self.pool).await?;
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

                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }
            }

            #[async_trait::async_trait]
            impl $crate::policies::PolicyStore for $store {
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
            impl $crate::webhooks::outbox::OutboxStore for $store {
                async fn outbox_insert(&self, events: &[NewEvent]) -> StoreResult<()> {
                    if events.is_empty() {
                        return Ok(());
                    }
                    let mut insert = sqlx::QueryBuilder::<$db>::new(sql::OUTBOX_INSERT_HEAD);
                    insert.push_values(events, |mut row, e| {
                        row.push_bind(e.event_id.as_str())
                            .push_bind(i64::from(e.sdkappid))
                            .push_bind(e.user_id.as_str())
                            .push_bind(e.seq)
                            .push_bind(e.body.as_str())
                            .push_bind(e.client_ip.as_str())
                            .push_bind(e.opt_platform)
                            .push_bind(e.created_at_ms);
                    });
                    insert.build().execute(&self.pool).await?;
                    Ok(())
                }

                async fn outbox_tail(
                    &self,
                    after_id: i64,
                    limit: u32,
                ) -> StoreResult<Vec<StoredEvent>> {
                    Ok(sqlx::query_as(sql::OUTBOX_TAIL)
                        .bind(after_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn outbox_delete(&self, ids: &[i64]) -> StoreResult<()> {
                    for chunk in ids.chunks(1000) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::OUTBOX_DELETE_HEAD);
                        let mut list = q.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        q.push(")");
                        q.build().execute(&self.pool).await?;
                    }
                    Ok(())
                }

                async fn outbox_failed(
                    &self,
                    id: i64,
                    attempts: i32,
                    error: &str,
                    dead: bool,
                ) -> StoreResult<()> {
                    sqlx::query(sql::OUTBOX_FAILED)
                        .bind(id)
                        .bind(attempts)
                        .bind(error)
                        .bind(i32::from(dead))
                        .execute(&self.pool)
                        .await?;
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
                ) -> StoreResult<Vec<StoredEvent>> {
                    Ok(sqlx::query_as(sql::DEAD_LETTERS)
                        .bind(i64::from(sdkappid))
                        .bind(after_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn retry_dead_letter(
                    &self,
                    sdkappid: u32,
                    event_id: &str,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool.begin().await?;
                    // The old row goes first: the copy would clash with its unique event id.
                    let old: Option<StoredEvent> = sqlx::query_as(sql::DEAD_LETTERS_ONE)
                        .bind(i64::from(sdkappid))
                        .bind(event_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(old) = old else {
                        return Ok(false);
                    };
                    sqlx::query(sql::DROP_DEAD_LETTER)
                        .bind(i64::from(sdkappid))
                        .bind(event_id)
                        .execute(&mut *tx)
                        .await?;
                    let mut insert = sqlx::QueryBuilder::<$db>::new(sql::OUTBOX_INSERT_HEAD);
                    insert.push_values([&old], |mut row, e| {
                        row.push_bind(e.event_id.as_str())
                            .push_bind(i64::from(e.sdkappid))
                            .push_bind(e.user_id.as_str())
                            .push_bind(e.seq)
                            .push_bind(e.body.as_str())
                            .push_bind(e.client_ip.as_str())
                            .push_bind(e.opt_platform.as_str())
                            .push_bind(e.created_at_ms);
                    });
                    insert.build().execute(&mut *tx).await?;
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
