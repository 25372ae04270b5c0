//! The admin service: what an admin can do to an app's accounts, sessions, policy and webhooks. The
//! Tencent-compatible REST API (`/v4`) and the native one (`/admin/v1`) both call it, so the two cannot differ;
//! each state change writes one audit log line.

use std::net::IpAddr;
use std::sync::Arc;

use crate::accounts::{Account, Profile};
use crate::limits::throttle::Throttle;
use crate::login::service::Sessions;
use crate::model::is_valid_user_id;
use crate::model::Platform;
use crate::model::{Instance, InstanceKey};
use crate::model::{KickReason, Policy};
use crate::runtime::clock::{days_from_date, utc_date};
use crate::store::{Database, StoreError};
use crate::webhooks::outbox::StoredDeadLetter;

/// Who asks: an admin UserID (REST v4) or an app's API key (native), and from where.
#[derive(Debug, Clone)]
pub struct AdminActor {
    pub sdkappid: u32,
    pub admin: String,
    pub ip: IpAddr,
}

impl AdminActor {
    /// The audit log line of a state change.
    fn audit(&self, action: &str, target: &str) {
        tracing::info!(target: "imlogin::audit", sdkappid = self.sdkappid, admin = %self.admin,
            client_ip = %self.ip, action, target, "admin action");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database or the registry cannot be reached: retry (70169). The cause is for the log.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No such account (70107).
    #[error("account does not exist")]
    NoAccount,
    /// No such thing other than an account (an instance, a dead letter).
    #[error("{0} does not exist")]
    NotFound(&'static str),
    /// A parameter is out of its rules (70402), with why.
    #[error("{0}")]
    Invalid(String),
}

pub type AdminResult<T> = Result<T, AdminError>;

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

impl From<crate::registry::RegistryError> for AdminError {
    fn from(e: crate::registry::RegistryError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

/// The login service fails an admin call only when the registry is unreachable.
impl From<crate::model::Failure> for AdminError {
    fn from(f: crate::model::Failure) -> Self {
        AdminError::Unavailable(f.message)
    }
}

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
    pub exists: bool,
}

/// Online instances of an app by platform.
#[derive(Debug, Clone, Default)]
pub struct OnlineCounts {
    pub total: usize,
    pub by_platform: Vec<(Platform, usize)>,
}

pub struct Admin {
    sessions: Arc<Sessions>,
    db: Database,
    /// SHA-256 of each app's admin API key → the app: a key is found without comparing secrets one by one.
    keys: std::sync::RwLock<std::collections::HashMap<[u8; 32], u32>>,
    /// Failed `/v4` admin authentications, counted per source address only (PROTOCOL §7), apart from failed
    /// logins: a caller without a valid ticket can throttle nobody but itself.
    failed_auth: Throttle,
}

fn key_hash(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

fn check_user_id(user_id: &str) -> AdminResult<()> {
    if is_valid_user_id(user_id) {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "invalid UserID {user_id:?}: 1-32 bytes of printable ASCII, not starting with @TLS#, @TIM# or @TGS#"
        )))
    }
}

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

/// Whether `id` can name a dead letter (event ids are short hex): anything else is no dead letter, and never
/// reaches the store (PostgreSQL refuses a NUL in text with an error, not an empty answer).
fn is_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Admin {
    pub fn new(sessions: Arc<Sessions>, db: Database) -> Admin {
        let failed_auth = Throttle::new(sessions.auth.throttle().limit(), sessions.clock.clone());
        let admin = Admin {
            sessions,
            db,
            keys: Default::default(),
            failed_auth,
        };
        admin.load_keys();
        admin
    }

    /// Reads the apps' admin API keys (at start, and after the apps change).
    pub fn load_keys(&self) {
        let keys = self
            .sessions
            .auth
            .apps()
            .all()
            .into_iter()
            .filter_map(|a| Some((key_hash(a.admin_api_key.as_ref()?.expose()), a.sdkappid)))
            .collect();
        *self.keys.write().expect("not poisoned") = keys;
    }

    /// The app whose admin API key this is.
    pub fn app_of_key(&self, key: &str) -> Option<u32> {
        self.keys
            .read()
            .expect("not poisoned")
            .get(&key_hash(key))
            .copied()
    }

    /// The counters of failed admin authentications (limit: `limits.login_failures_per_minute`).
    pub fn failed_auth(&self) -> &Throttle {
        &self.failed_auth
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    fn now(&self) -> i64 {
        self.sessions.clock.now_secs()
    }

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
            .auth
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
            .auth
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
            .auth
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

    /// Kicks every instance of the user, or one; with `revoke`, every ticket issued up to this second stops
    /// working (the kicked clients are told 70052 instead of 6208). Returns how many instances were kicked.
    pub async fn kick(
        &self,
        who: &AdminActor,
        user_id: &str,
        instance_id: Option<&str>,
        revoke: bool,
    ) -> AdminResult<usize> {
        check_user_id(user_id)?;
        let accounts = self.sessions.auth.accounts();
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
                    user_id: user_id.to_owned(),
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

    async fn kick_all(
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
        let all = self
            .sessions
            .registry
            .users_instances(sdkappid, user_ids)
            .await?;
        for (user_id, instances) in user_ids.iter().zip(all) {
            let state = if instances.iter().any(Instance::is_online) {
                OnlineState::Online
            } else if instances.is_empty() {
                OnlineState::Offline
            } else {
                OnlineState::PushOnline
            };
            if instances.is_empty() {
                unknown.push(user_id.clone());
            }
            out.push(UserOnline {
                user_id: user_id.clone(),
                state,
                instances,
                exists: true,
            });
        }
        // Users with instances exist; for the others, one look at the database.
        let valid: Vec<String> = unknown
            .into_iter()
            .filter(|u| is_valid_user_id(u))
            .collect();
        let existing = self.db.accounts.existing(sdkappid, &valid).await?;
        for u in out.iter_mut().filter(|u| u.instances.is_empty()) {
            u.exists = existing.contains(&u.user_id);
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
        let mut all = self.sessions.registry.app_instances(sdkappid).await?;
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
        let all = self.sessions.registry.app_instances(sdkappid).await?;
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

    /// The policy in force, and whether an admin set it.
    pub fn policy(&self, sdkappid: u32) -> Option<(Policy, bool)> {
        let app = self.sessions.auth.apps().get(sdkappid)?;
        let set = self.sessions.policies.set_by_admin(sdkappid);
        Some((set.unwrap_or(app.policy), set.is_some()))
    }

    /// Sets the app's policy (persisted; it wins over the file's, also after a restart).
    pub async fn set_policy(&self, who: &AdminActor, policy: Policy) -> AdminResult<()> {
        policy
            .validate()
            .map_err(|(field, why)| AdminError::Invalid(format!("`{field}` {why}")))?;
        self.sessions
            .policies
            .set(who.sdkappid, policy, self.now())
            .await?;
        self.sessions.policies_changed();
        who.audit("policy_set", &format!("{policy:?}"));
        Ok(())
    }

    /// Goes back to the config file's policy.
    pub async fn clear_policy(&self, who: &AdminActor) -> AdminResult<()> {
        self.sessions.policies.clear(who.sdkappid).await?;
        self.sessions.policies_changed();
        who.audit("policy_reset", "");
        Ok(())
    }

    /// Up to `limit` dead letters after the outbox row `after`.
    pub async fn dead_letters(
        &self,
        sdkappid: u32,
        after: i64,
        limit: u32,
    ) -> AdminResult<Vec<StoredDeadLetter>> {
        Ok(self.db.outbox.dead_letters(sdkappid, after, limit).await?)
    }

    /// Puts a dead letter back in the outbox, in its user's order.
    pub async fn retry_dead_letter(&self, who: &AdminActor, event_id: &str) -> AdminResult<()> {
        if !is_event_id(event_id)
            || !self
                .db
                .outbox
                .retry_dead_letter(who.sdkappid, event_id)
                .await?
        {
            return Err(AdminError::NotFound("dead letter"));
        }
        who.audit("dead_letter_retry", event_id);
        Ok(())
    }

    /// Forgets a dead letter.
    pub async fn drop_dead_letter(&self, who: &AdminActor, event_id: &str) -> AdminResult<()> {
        if !is_event_id(event_id)
            || !self
                .db
                .outbox
                .drop_dead_letter(who.sdkappid, event_id)
                .await?
        {
            return Err(AdminError::NotFound("dead letter"));
        }
        who.audit("dead_letter_drop", event_id);
        Ok(())
    }
}
