//! [`AccountStore`](crate::store::AccountStore) in SQL, for both dialects.

/// Implements the account store for a store struct with a `pool` field of the given database.
macro_rules! sql_account_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::store::accounts::{Account, AccountStore, Profile};
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
        };
    };
}
pub(crate) use sql_account_store;
