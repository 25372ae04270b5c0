//! The multi-terminal policy an admin sets over the config file's.

use super::{Admin, AdminActor, AdminError, AdminResult};
use crate::model::Policy;

impl Admin {
    /// The policy in force, and whether an admin set it.
    pub fn policy(&self, sdkappid: u32) -> Option<(Policy, bool)> {
        let app = self.sessions.auth().apps().get(sdkappid)?;
        let set = self.sessions.policies().set_by_admin(sdkappid);
        Some((set.unwrap_or(app.policy), set.is_some()))
    }

    /// Sets the app's policy (persisted; it wins over the file's, also after a restart).
    pub async fn set_policy(&self, who: &AdminActor, policy: Policy) -> AdminResult<()> {
        policy
            .validate()
            .map_err(|(field, why)| AdminError::Invalid(format!("`{field}` {why}")))?;
        self.sessions
            .policies()
            .set(who.sdkappid, policy, self.now())
            .await?;
        self.sessions.policies_changed();
        who.audit("policy_set", &format!("{policy:?}"));
        Ok(())
    }

    /// Goes back to the config file's policy.
    pub async fn clear_policy(&self, who: &AdminActor) -> AdminResult<()> {
        self.sessions.policies().clear(who.sdkappid).await?;
        self.sessions.policies_changed();
        who.audit("policy_reset", "");
        Ok(())
    }
}
