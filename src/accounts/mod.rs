//! Accounts: the [`AccountStore`] trait with a PostgreSQL and a SQLite implementation, and [`Accounts`], the
//! read-through cache in front of it that the login path uses.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::config::DatabaseSettings;

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

/// A storage failure: the database is unreachable or refused the query. Logins map it to 70169.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("account store: {0}")]
    Db(#[from] sqlx::Error),
    /// The grouped registration this request was part of failed.
    #[error("account store (grouped registration): {0}")]
    Batch(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

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
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
}

/// How long a pool waits for a connection before the call fails (and a login answers 70169).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens the store named by `database.url` and runs its migrations.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Arc<dyn AccountStore>> {
    let url = settings.url.expose();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect(url, settings.max_connections).await?,
        ))
    } else {
        Ok(Arc::new(
            postgres::PgStore::connect(url, settings.max_connections).await?,
        ))
    }
}

/// The SQL shared by both stores: both dialects take `$n` placeholders, `ON CONFLICT` and `RETURNING`.
mod sql {
    pub const GET: &str =
        "SELECT sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at \
        FROM accounts WHERE sdkappid = $1 AND user_id = $2";
    pub const REGISTER_MANY_HEAD: &str = "INSERT INTO accounts (sdkappid, user_id, created_at) ";
    pub const REGISTER_MANY_TAIL: &str = " ON CONFLICT (sdkappid, user_id) DO NOTHING \
        RETURNING sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at";
    pub const UPSERT_PROFILE: &str =
        "INSERT INTO accounts (sdkappid, user_id, nick, face_url, created_at) \
        VALUES ($1, $2, COALESCE($3, ''), COALESCE($4, ''), $5) \
        ON CONFLICT (sdkappid, user_id) DO UPDATE SET \
        nick = COALESCE($3, accounts.nick), face_url = COALESCE($4, accounts.face_url) \
        RETURNING sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at";
    pub const DELETE: &str = "DELETE FROM accounts WHERE sdkappid = $1 AND user_id = $2";
    pub const SET_DISABLED: &str =
        "UPDATE accounts SET disabled = $3 WHERE sdkappid = $1 AND user_id = $2";
    pub const REVOKE: &str =
        "UPDATE accounts SET revoked_at = CASE WHEN revoked_at < $3 THEN $3 ELSE revoked_at END \
        WHERE sdkappid = $1 AND user_id = $2";
    pub const LIST: &str =
        "SELECT sdkappid, user_id, nick, face_url, created_at, disabled, revoked_at \
        FROM accounts WHERE sdkappid = $1 AND user_id > $2 ORDER BY user_id LIMIT $3";
    pub const MARK_ACTIVE_HEAD: &str = "INSERT INTO daily_active (sdkappid, day, user_id) ";
    pub const MARK_ACTIVE_TAIL: &str = " ON CONFLICT (sdkappid, day, user_id) DO NOTHING";
    pub const ACTIVE_COUNTS: &str = "SELECT day, COUNT(*) FROM daily_active \
        WHERE sdkappid = $1 AND day >= $2 AND day <= $3 GROUP BY day ORDER BY day";
}

/// Implements [`AccountStore`] for a store struct with a `pool` field of the given database. One body for both
/// dialects keeps them from drifting apart; the contract tests run against both.
macro_rules! sql_account_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::accounts::AccountStore for $store {
            async fn get(
                &self,
                sdkappid: u32,
                user_id: &str,
            ) -> $crate::accounts::StoreResult<Option<Account>> {
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
                // One multi-row INSERT for the whole group; rows it returns were created by it.
                let mut insert = sqlx::QueryBuilder::<$db>::new(sql::REGISTER_MANY_HEAD);
                insert.push_values(&unique, |mut row, (sdkappid, user_id)| {
                    row.push_bind(i64::from(*sdkappid))
                        .push_bind(user_id.as_str())
                        .push_bind(now);
                });
                insert.push(sql::REGISTER_MANY_TAIL);
                let created: Vec<Account> = insert.build_query_as().fetch_all(&mut *tx).await?;
                let mut found: std::collections::HashMap<(u32, String), (Account, bool)> = created
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

            async fn mark_active_many(&self, rows: &[(u32, String, String)]) -> StoreResult<()> {
                if rows.is_empty() {
                    return Ok(());
                }
                let mut insert = sqlx::QueryBuilder::<$db>::new(sql::MARK_ACTIVE_HEAD);
                insert.push_values(rows, |mut row, (sdkappid, day, user_id)| {
                    row.push_bind(i64::from(*sdkappid))
                        .push_bind(day.as_str())
                        .push_bind(user_id.as_str());
                });
                insert.push(sql::MARK_ACTIVE_TAIL);
                insert.build().execute(&self.pool).await?;
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

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}
use sql_account_store;

/// The accounts service: the store behind a read-through cache, so a known user's login needs no database
/// round trip. Every change made through it updates the cache. First logins that arrive together are
/// registered together (group commit): one transaction, one commit, and each waits for that commit.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    cache: moka::sync::Cache<(u32, String), LoginState>,
    registrations: mpsc::Sender<Registration>,
}

/// One first login waiting for its grouped registration.
struct Registration {
    sdkappid: u32,
    user_id: String,
    now: i64,
    reply: oneshot::Sender<StoreResult<(Account, bool)>>,
}

/// The most registrations one transaction takes.
const MAX_GROUP: usize = 256;

/// Registers waiting first logins in groups until every [`Accounts`] handle is gone.
async fn group_commit(store: Arc<dyn AccountStore>, mut rx: mpsc::Receiver<Registration>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let items: Vec<(u32, String)> = group
            .iter()
            .map(|r| (r.sdkappid, r.user_id.clone()))
            .collect();
        let now = group.iter().map(|r| r.now).min().unwrap_or_default();
        match store.register_many(&items, now).await {
            Ok(results) => {
                for (r, res) in group.drain(..).zip(results) {
                    let _ = r.reply.send(Ok(res));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for r in group.drain(..) {
                    let _ = r.reply.send(Err(StoreError::Batch(why.clone())));
                }
            }
        }
    }
}

/// Entries live this long: the bound on how stale another node's view of a disable or a kick can be until the
/// cluster registry carries invalidations.
const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_CAPACITY: u64 = 1_000_000;

impl Accounts {
    /// Needs a tokio runtime: it starts the group-commit task.
    pub fn new(store: Arc<dyn AccountStore>) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(CACHE_TTL)
            .build();
        let (registrations, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(group_commit(store.clone(), rx));
        Accounts {
            store,
            cache,
            registrations,
        }
    }

    pub fn store(&self) -> &Arc<dyn AccountStore> {
        &self.store
    }

    /// The account's login state, if this node holds it.
    pub fn cached(&self, sdkappid: u32, user_id: &str) -> Option<LoginState> {
        self.cache.get(&(sdkappid, user_id.to_owned()))
    }

    fn remember(&self, account: &Account) {
        self.cache.insert(
            (account.sdkappid, account.user_id.clone()),
            LoginState::of(account),
        );
    }

    /// The account's login state, from the cache or the store; `None` if there is no such account.
    pub async fn login_state(
        &self,
        sdkappid: u32,
        user_id: &str,
    ) -> StoreResult<Option<LoginState>> {
        if let Some(state) = self.cached(sdkappid, user_id) {
            return Ok(Some(state));
        }
        let found = self.store.get(sdkappid, user_id).await?;
        if let Some(a) = &found {
            self.remember(a);
        }
        Ok(found.as_ref().map(LoginState::of))
    }

    /// The account's login state, registering the account durably first if it is new. `true` when this call
    /// created it.
    pub async fn get_or_register(
        &self,
        sdkappid: u32,
        user_id: &str,
        now: i64,
    ) -> StoreResult<(LoginState, bool)> {
        if let Some(state) = self.cached(sdkappid, user_id) {
            return Ok((state, false));
        }
        let (reply, rx) = oneshot::channel();
        let closed = || StoreError::Batch("the registration task has stopped".into());
        let req = Registration {
            sdkappid,
            user_id: user_id.to_owned(),
            now,
            reply,
        };
        self.registrations.send(req).await.map_err(|_| closed())?;
        let (account, created) = rx.await.map_err(|_| closed())??;
        self.remember(&account);
        Ok((LoginState::of(&account), created))
    }

    pub async fn upsert_profile(
        &self,
        sdkappid: u32,
        user_id: &str,
        profile: Profile<'_>,
        now: i64,
    ) -> StoreResult<(Account, bool)> {
        let (account, created) = self
            .store
            .upsert_profile(sdkappid, user_id, profile, now)
            .await?;
        self.remember(&account);
        Ok((account, created))
    }

    pub async fn delete(&self, sdkappid: u32, user_id: &str) -> StoreResult<bool> {
        let r = self.store.delete(sdkappid, user_id).await;
        self.invalidate(sdkappid, user_id);
        r
    }

    pub async fn set_disabled(
        &self,
        sdkappid: u32,
        user_id: &str,
        disabled: bool,
    ) -> StoreResult<bool> {
        let r = self.store.set_disabled(sdkappid, user_id, disabled).await;
        self.invalidate(sdkappid, user_id);
        r
    }

    pub async fn revoke(&self, sdkappid: u32, user_id: &str, at: i64) -> StoreResult<bool> {
        let r = self.store.revoke(sdkappid, user_id, at).await;
        self.invalidate(sdkappid, user_id);
        r
    }

    /// Drops the cached copy (after a change here, or one announced by another node).
    pub fn invalidate(&self, sdkappid: u32, user_id: &str) {
        self.cache.invalidate(&(sdkappid, user_id.to_owned()));
    }
}
