//! The SQL both stores share (both dialects take `$n` placeholders, `ON CONFLICT` and `RETURNING`), and the one
//! implementation of [`super::AccountStore`] over it, instantiated for each database so they cannot drift apart.

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
pub const ACTIVE_COUNTS: &str = "SELECT day, COUNT(*) FROM daily_active \
    WHERE sdkappid = $1 AND day >= $2 AND day <= $3 GROUP BY day ORDER BY day";

/// Implements [`super::AccountStore`] for a store struct with a `pool` field of the given database. One body for both
/// dialects keeps them from drifting apart; the contract tests run against both.
macro_rules! sql_account_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::accounts::{sql, Account, AccountStore, Profile, StoreResult};

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

                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use sql_account_store;
