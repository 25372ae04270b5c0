//! The multi-terminal policy in force for each app: the config file's, unless an admin set one through the API
//! (`PUT /policy`), which is persisted and wins until deleted. Logins read it from memory; a change applies to
//! the logins after it, on this node at once (other nodes reload when told, see the cluster's bus).

use std::sync::Arc;

use dashmap::DashMap;

use crate::config::apps::SdkApp;
use crate::model::Policy;
pub use crate::store::policies::PolicyStore;
use crate::store::StoreResult;

/// The policies admins set, cached. Cheap to clone.
#[derive(Clone)]
pub struct Policies {
    store: Arc<dyn PolicyStore>,
    overrides: Arc<DashMap<u32, Policy>>,
}

impl Policies {
    /// Loads the stored policies.
    pub async fn load(store: Arc<dyn PolicyStore>) -> StoreResult<Policies> {
        let p = Policies {
            store,
            overrides: Arc::new(DashMap::new()),
        };
        p.reload().await?;
        Ok(p)
    }

    /// Reads the stored policies again (another node changed one).
    pub async fn reload(&self) -> StoreResult<()> {
        let stored = self.store.load_policies().await?;
        // Replaced in place, never emptied first: a login meanwhile sees the old policy or the new one.
        self.overrides
            .retain(|app, _| stored.iter().any(|(a, _)| a == app));
        for (app, policy) in stored {
            self.overrides.insert(app, policy);
        }
        Ok(())
    }

    /// The policy in force for the app.
    pub fn effective(&self, app: &SdkApp) -> Policy {
        self.overrides
            .get(&app.sdkappid)
            .map(|p| *p)
            .unwrap_or(app.policy)
    }

    /// The policy an admin set, if any.
    pub fn set_by_admin(&self, sdkappid: u32) -> Option<Policy> {
        self.overrides.get(&sdkappid).map(|p| *p)
    }

    /// Persists an admin's policy and applies it to the next logins.
    pub async fn set(&self, sdkappid: u32, policy: Policy, now: i64) -> StoreResult<()> {
        self.store.put_policy(sdkappid, &policy, now).await?;
        self.overrides.insert(sdkappid, policy);
        Ok(())
    }

    /// Goes back to the config file's policy.
    pub async fn clear(&self, sdkappid: u32) -> StoreResult<()> {
        self.store.delete_policy(sdkappid).await?;
        self.overrides.remove(&sdkappid);
        Ok(())
    }
}
