//! Where the policies admins set are kept: [`PolicyStore`].

use async_trait::async_trait;

use super::StoreResult;
use crate::model::Policy;

/// Where admins' policies are kept.
#[async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    /// Every app's stored policy.
    async fn load_policies(&self) -> StoreResult<Vec<(u32, Policy)>>;
    /// Stores (or replaces) an app's policy.
    async fn put_policy(&self, sdkappid: u32, policy: &Policy, now: i64) -> StoreResult<()>;
    /// Removes an app's policy; `true` if it had one.
    async fn delete_policy(&self, sdkappid: u32) -> StoreResult<bool>;
}
