//! [`OutboxStore`](crate::store::OutboxStore) in SQL, for both dialects.

/// Implements the outbox store for a store struct with a `pool` field of the given database.
macro_rules! sql_outbox_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::store::outbox::{DeadLetter, StoredDeadLetter};
            use $crate::store::sql::DeadRow;
            use $crate::store::{sql, StoreResult};

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
pub(crate) use sql_outbox_store;
