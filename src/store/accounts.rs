//! Where accounts live: [`AccountStore`], with the account and what a login needs of it.

use async_trait::async_trait;

use super::StoreResult;

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Account {
    #[sqlx(try_from = "i64")]
    pub sdkappid: u32,
    pub user_id: String,
    pub nick: String,
    pub face_url: String,
    /// Unix seconds.
    pub created_at: i64,
    pub disabled: bool,
    /// Tickets issued at or before this unix second are revoked; 0 when none are.
    pub revoked_at: i64,
}

/// What a login needs to know of an account: the part the cache keeps (16 bytes a user, not the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginState {
    pub disabled: bool,
    /// Tickets issued at or before this unix second are revoked; 0 when none are.
    pub revoked_at: i64,
}

impl LoginState {
    pub fn of(a: &Account) -> LoginState {
        LoginState {
            disabled: a.disabled,
            revoked_at: a.revoked_at,
        }
    }
}

/// Profile fields an admin may set; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Profile<'a> {
    pub nick: Option<&'a str>,
    pub face_url: Option<&'a str>,
}

/// Where accounts live. Every method is durable when it returns `Ok`.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn get(&self, sdkappid: u32, user_id: &str) -> StoreResult<Option<Account>>;
    /// Creates the account if missing (idempotent; concurrent calls create one). `true` when it was created.
    async fn register(
        &self,
        sdkappid: u32,
        user_id: &str,
        now: i64,
    ) -> StoreResult<(Account, bool)> {
        let mut one = self
            .register_many(&[(sdkappid, user_id.to_owned())], now)
            .await?;
        Ok(one.remove(0))
    }
    /// [`AccountStore::register`] for several accounts in one transaction, so they share one commit (and one
    /// fsync). Results are in the order of `items`; a repeated item is created once.
    async fn register_many(
        &self,
        items: &[(u32, String)],
        now: i64,
    ) -> StoreResult<Vec<(Account, bool)>>;
    /// Creates the account or updates the given profile fields. `true` when it was created.
    async fn upsert_profile(
        &self,
        sdkappid: u32,
        user_id: &str,
        profile: Profile<'_>,
        now: i64,
    ) -> StoreResult<(Account, bool)>;
    /// `true` when the account existed.
    async fn delete(&self, sdkappid: u32, user_id: &str) -> StoreResult<bool>;
    /// `true` when the account exists.
    async fn set_disabled(&self, sdkappid: u32, user_id: &str, disabled: bool)
        -> StoreResult<bool>;
    /// Revokes every ticket issued at or before `at` (never moves the mark back). `true` when the account exists.
    async fn revoke(&self, sdkappid: u32, user_id: &str, at: i64) -> StoreResult<bool>;
    /// Up to `limit` accounts of the app with `user_id` > `after`, ordered by `user_id` (bytewise).
    async fn list(
        &self,
        sdkappid: u32,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Account>>;
    /// Records that the user was active on `day` (`YYYY-MM-DD`, UTC); idempotent.
    async fn mark_active(&self, sdkappid: u32, day: &str, user_id: &str) -> StoreResult<()> {
        self.mark_active_many(&[(sdkappid, day.to_owned(), user_id.to_owned())])
            .await
    }
    /// Records several (sdkappid, day, user_id) in one statement; idempotent.
    async fn mark_active_many(&self, rows: &[(u32, String, String)]) -> StoreResult<()>;
    /// Active users per day in `from..=to` (days with none are absent).
    async fn active_counts(
        &self,
        sdkappid: u32,
        from: &str,
        to: &str,
    ) -> StoreResult<Vec<(String, i64)>>;
    /// Which of `user_ids` have an account in the app.
    async fn existing(&self, sdkappid: u32, user_ids: &[String]) -> StoreResult<Vec<String>>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Connections the pool holds, and how many of them are idle.
    fn pool_status(&self) -> (u32, usize);
}
