//! Sessions: kicks, who is online, an app's instances, and the statistics (online counts, daily active users).

use super::{check_user_id, Admin, AdminActor, AdminError, AdminResult};
use crate::model::Platform;
use crate::model::UserId;
use crate::model::{Instance, InstanceKey, KickReason};
use crate::runtime::clock::{days_from_date, utc_date};

/// Where one user's login state stands, for `query_online_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlineState {
    /// Some instance is connected.
    Online,
    /// Instances exist, all disconnected within the grace.
    PushOnline,
    Offline,
}

/// A user's online state and instances; `exists` is false for a UserID without an account.
#[derive(Debug, Clone)]
pub struct UserOnline {
    pub user_id: String,
    pub state: OnlineState,
    pub instances: Vec<Instance>,
    pub account: HasAccount,
}

/// Whether a user asked about has an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasAccount {
    Yes,
    No,
    /// What was asked is not a UserID (PROTOCOL §1: 70402 from a REST API).
    NotAUserId,
}

/// Online instances of an app by platform.
#[derive(Debug, Clone, Default)]
pub struct OnlineCounts {
    pub total: usize,
    pub by_platform: Vec<(Platform, usize)>,
}

impl Admin {
    /// Kicks every instance of the user, or one; with `revoke`, every ticket issued up to this second stops
    /// working (the kicked clients are told 70052 instead of 6208). Returns how many instances were kicked.
    pub async fn kick(
        &self,
        who: &AdminActor,
        user_id: &str,
        instance_id: Option<&str>,
        revoke: bool,
    ) -> AdminResult<usize> {
        let user = check_user_id(user_id)?;
        let accounts = self.sessions.auth().accounts();
        let exists = if revoke {
            accounts.revoke(who.sdkappid, user_id, self.now()).await?
        } else {
            accounts.login_state(who.sdkappid, user_id).await?.is_some()
        };
        if !exists {
            return Err(AdminError::NoAccount);
        }
        if revoke {
            self.sessions.account_changed(who.sdkappid, user_id);
        }
        let reason = if revoke {
            KickReason::AdminKickRevoked
        } else {
            KickReason::AdminKick
        };
        let kicked = match instance_id {
            None => self.kick_all(who, user_id, reason).await?,
            Some(id) => {
                let key = InstanceKey {
                    sdkappid: who.sdkappid,
                    user_id: user,
                    instance_id: id.to_owned(),
                };
                let kicked = self.sessions.kick_instance(&key, reason, who.ip).await?;
                usize::from(kicked)
            }
        };
        let action = if revoke { "kick_revoke" } else { "kick" };
        match instance_id {
            Some(id) => who.audit(action, &format!("{user_id}/{id}")),
            None => who.audit(action, user_id),
        }
        Ok(kicked)
    }

    pub(super) async fn kick_all(
        &self,
        who: &AdminActor,
        user_id: &str,
        reason: KickReason,
    ) -> AdminResult<usize> {
        Ok(self
            .sessions
            .kick_user(who.sdkappid, user_id, reason, who.ip)
            .await?)
    }

    /// The online state of each user (in the order asked), and whether it has an account.
    pub async fn online(&self, sdkappid: u32, user_ids: &[String]) -> AdminResult<Vec<UserOnline>> {
        let mut out = Vec::with_capacity(user_ids.len());
        let mut unknown = Vec::new();
        let all = self.sessions.users_instances(sdkappid, user_ids).await?;
        for (user_id, instances) in user_ids.iter().zip(all) {
            let state = if instances.iter().any(Instance::is_online) {
                OnlineState::Online
            } else if instances.is_empty() {
                OnlineState::Offline
            } else {
                OnlineState::PushOnline
            };
            // Users with instances exist; a UserID without any is looked up below, in one query.
            let account = if !instances.is_empty() {
                HasAccount::Yes
            } else if UserId::parse(user_id).is_ok() {
                unknown.push(user_id.clone());
                HasAccount::No
            } else {
                HasAccount::NotAUserId
            };
            out.push(UserOnline {
                user_id: user_id.clone(),
                state,
                instances,
                account,
            });
        }
        let existing: std::collections::HashSet<String> = self
            .db
            .accounts
            .existing(sdkappid, &unknown)
            .await?
            .into_iter()
            .collect();
        for u in out.iter_mut().filter(|u| u.account == HasAccount::No) {
            if existing.contains(&u.user_id) {
                u.account = HasAccount::Yes;
            }
        }
        Ok(out)
    }

    /// An app's instances, in (UserID, instance id) order after `after`, optionally of one platform.
    pub async fn instances(
        &self,
        sdkappid: u32,
        platform: Option<Platform>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> AdminResult<Vec<Instance>> {
        let mut all = self.sessions.app_instances(sdkappid).await?;
        all.retain(|i| {
            platform.is_none_or(|p| i.platform == p)
                && after
                    .is_none_or(|(u, id)| (i.user_id.as_str(), i.instance_id.as_str()) > (u, id))
        });
        all.sort_by(|a, b| (&a.user_id, &a.instance_id).cmp(&(&b.user_id, &b.instance_id)));
        all.truncate(limit);
        Ok(all)
    }

    /// Instances of an app by platform (connected or within the grace).
    pub async fn online_counts(&self, sdkappid: u32) -> AdminResult<OnlineCounts> {
        let all = self.sessions.app_instances(sdkappid).await?;
        let by_platform = Platform::ALL
            .iter()
            .map(|p| (*p, all.iter().filter(|i| i.platform == *p).count()))
            .collect();
        Ok(OnlineCounts {
            total: all.len(),
            by_platform,
        })
    }

    /// Daily active users for each day of `from..=to` (`YYYY-MM-DD`, at most 366 days), zero days included.
    pub async fn daily_active(
        &self,
        sdkappid: u32,
        from: &str,
        to: &str,
    ) -> AdminResult<Vec<(String, i64)>> {
        let bad = |what: &str| AdminError::Invalid(format!("`{what}` must be a date YYYY-MM-DD"));
        let first = days_from_date(from).ok_or_else(|| bad("from"))?;
        let last = days_from_date(to).ok_or_else(|| bad("to"))?;
        if last < first || last - first >= 366 {
            return Err(AdminError::Invalid(
                "`to` must not be before `from`, and the range at most 366 days".into(),
            ));
        }
        let counts = self.db.accounts.active_counts(sdkappid, from, to).await?;
        Ok((first..=last)
            .map(|day| {
                let date = utc_date(day * 86400);
                let users = counts.iter().find(|c| c.0 == date).map_or(0, |c| c.1);
                (date, users)
            })
            .collect())
    }
}
