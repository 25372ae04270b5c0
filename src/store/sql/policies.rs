//! [`PolicyStore`](crate::store::PolicyStore) in SQL, for both dialects.

/// Implements the policy store for a store struct with a `pool` field of the given database.
macro_rules! sql_policy_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::model::{Mode, Policy};
            use $crate::store::{sql, StoreResult};

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
        };
    };
}
pub(crate) use sql_policy_store;
