//! Accounts: import (create or update the profile), delete, disable and enable, look up and list.

use super::{check_user_id, Admin, AdminActor, AdminError, AdminResult};
use crate::accounts::{Account, Profile};
use crate::model::KickReason;

/// Profile fields take at most this many bytes.
pub const MAX_PROFILE_BYTES: usize = 500;

fn check_profile(profile: &Profile<'_>) -> AdminResult<()> {
    for (name, value) in [("Nick", profile.nick), ("FaceUrl", profile.face_url)] {
        if value.is_some_and(|v| v.len() > MAX_PROFILE_BYTES) {
            return Err(AdminError::Invalid(format!(
                "{name} is longer than {MAX_PROFILE_BYTES} bytes"
            )));
        }
        // PostgreSQL cannot store it in text (SQLite can): refused alike on both.
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(AdminError::Invalid(format!(
                "{name} must not contain a NUL character"
            )));
        }
    }
    Ok(())
}

impl Admin {
    /// Creates the account, or updates the profile fields given (idempotent).
    pub async fn import(
        &self,
        who: &AdminActor,
        user_id: &str,
        profile: Profile<'_>,
    ) -> AdminResult<Account> {
        check_user_id(user_id)?;
        check_profile(&profile)?;
        let (account, created) = self
            .sessions
            .auth()
            .accounts()
            .upsert_profile(who.sdkappid, user_id, profile, self.now())
            .await?;
        who.audit(
            if created {
                "account_create"
            } else {
                "account_update"
            },
            user_id,
        );
        Ok(account)
    }

    /// Deletes the account; its live instances are kicked with `account_deleted`.
    pub async fn delete(&self, who: &AdminActor, user_id: &str) -> AdminResult<()> {
        check_user_id(user_id)?;
        if !self
            .sessions
            .auth()
            .accounts()
            .delete(who.sdkappid, user_id)
            .await?
        {
            return Err(AdminError::NoAccount);
        }
        self.sessions.account_changed(who.sdkappid, user_id);
        who.audit("account_delete", user_id);
        self.kick_all(who, user_id, KickReason::AccountDeleted)
            .await?;
        Ok(())
    }

    /// Which of the UserIDs have an account.
    pub async fn existing(&self, sdkappid: u32, user_ids: &[String]) -> AdminResult<Vec<String>> {
        Ok(self.db.accounts.existing(sdkappid, user_ids).await?)
    }

    /// The account, if it exists.
    pub async fn account(&self, sdkappid: u32, user_id: &str) -> AdminResult<Account> {
        check_user_id(user_id)?;
        self.db
            .accounts
            .get(sdkappid, user_id)
            .await?
            .ok_or(AdminError::NoAccount)
    }

    /// Up to `limit` accounts after `after`, in UserID order.
    pub async fn accounts(
        &self,
        sdkappid: u32,
        after: Option<&str>,
        limit: u32,
    ) -> AdminResult<Vec<Account>> {
        Ok(self.db.accounts.list(sdkappid, after, limit).await?)
    }

    /// Disables (kicking live instances with `account_disabled`) or enables the account.
    pub async fn set_disabled(
        &self,
        who: &AdminActor,
        user_id: &str,
        disabled: bool,
    ) -> AdminResult<()> {
        check_user_id(user_id)?;
        if !self
            .sessions
            .auth()
            .accounts()
            .set_disabled(who.sdkappid, user_id, disabled)
            .await?
        {
            return Err(AdminError::NoAccount);
        }
        self.sessions.account_changed(who.sdkappid, user_id);
        who.audit(
            if disabled {
                "account_disable"
            } else {
                "account_enable"
            },
            user_id,
        );
        if disabled {
            self.kick_all(who, user_id, KickReason::AccountDisabled)
                .await?;
        }
        Ok(())
    }
}
