//! [`Accounts`]: the store behind a read-through cache of login state.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::registration::{self, Registration, RegistrationWorker};
use super::{Account, AccountStore, LoginState, Profile, StoreError, StoreResult};
use crate::registry::users::Users;

/// The accounts service: the store behind a read-through cache of login states (kept in each user's record of
/// [`Users`]), so a known user's login needs no database round trip. Every change made through it updates the
/// cache. First logins that arrive together are
/// registered together (group commit): one transaction, one commit, and each waits for that commit.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    users: Arc<Users>,
    registrations: mpsc::Sender<Registration>,
}

impl Accounts {
    /// The service, and the worker that registers its first logins (the caller runs it).
    pub fn new(store: Arc<dyn AccountStore>, users: Arc<Users>) -> (Self, RegistrationWorker) {
        let (registrations, rx) = registration::channel();
        let worker = RegistrationWorker {
            store: store.clone(),
            rx: Some(rx),
            refuse_until: None,
        };
        let accounts = Accounts {
            store,
            users,
            registrations,
        };
        (accounts, worker)
    }

    pub fn store(&self) -> &Arc<dyn AccountStore> {
        &self.store
    }

    /// The account's login state, if this node holds it.
    pub fn cached(&self, sdkappid: u32, user_id: &str) -> Option<LoginState> {
        self.users.login_state(sdkappid, user_id)
    }

    fn remember(&self, account: &Account) {
        self.users
            .remember_login(account.sdkappid, &account.user_id, LoginState::of(account));
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

    /// The account's login state as the store has it now (then remembered): for a decision that must not rest
    /// on this node's cache, which a message lost with Redis may have left stale (see `Sessions::recheck`).
    pub async fn stored_login_state(
        &self,
        sdkappid: u32,
        user_id: &str,
    ) -> StoreResult<Option<LoginState>> {
        let found = self.store.get(sdkappid, user_id).await?;
        match &found {
            Some(a) => self.remember(a),
            None => self.invalidate(sdkappid, user_id),
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

    /// Drops every cached copy (this node may have missed the announcements of changes).
    pub fn invalidate_all(&self) {
        self.users.forget_logins();
    }

    /// Drops the cached copy (after a change here, or one announced by another node).
    pub fn invalidate(&self, sdkappid: u32, user_id: &str) {
        self.users.forget_login(sdkappid, user_id);
    }
}
