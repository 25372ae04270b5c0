//! Login authentication: every check of PROTOCOL §2 in its order, plus auto-registration.
//!
//! throttled 70050 · missing or mistyped fields 6017 · bad UserID 7003 · bad platform 6017 · empty ticket 70002 ·
//! undecodable 70003 · unknown app 70020 · SDKAppID mismatch 70014 · UserID mismatch 70013 · bad signature 70009 ·
//! expired 70001 · revoked 70052 · disabled 70051. The WebSocket and HTTP logins both call [`Authenticator`].

use std::net::IpAddr;
use std::sync::Arc;

use crate::accounts::{Accounts, LoginState};
use crate::config::apps::{SdkApp, SdkApps};
use crate::limits::throttle::Throttle;
use crate::login::request::LoginRequest;
use crate::model::error::{Code, Failure};
use crate::runtime::clock::Clock;
use crate::usersig::{Ticket, Verified};

/// A login that passed every check: the account exists durably. The request's fields are the caller's, who
/// still holds the request.
#[derive(Clone)]
pub struct Authenticated {
    /// The app it authenticated against: the one place a login looks its app up.
    pub app: Arc<SdkApp>,
    pub ticket: Verified,
    pub account: LoginState,
    /// This login created the account.
    pub registered: bool,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("sdkappid", &self.app.sdkappid)
            .field("ticket", &self.ticket)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

/// Runs the login checks; shared by every login path.
pub struct Authenticator {
    apps: SdkApps,
    accounts: Accounts,
    throttle: Throttle,
    clock: Clock,
}

impl Authenticator {
    pub fn new(apps: SdkApps, accounts: Accounts, failures_per_minute: u32, clock: Clock) -> Self {
        Authenticator {
            apps,
            accounts,
            throttle: Throttle::new(failures_per_minute, clock.clone()),
            clock,
        }
    }

    pub fn apps(&self) -> &SdkApps {
        &self.apps
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Authenticates a login request from `ip`; failures count toward the throttle.
    pub async fn login(
        &self,
        request: &LoginRequest,
        ip: IpAddr,
    ) -> Result<Authenticated, Failure> {
        self.counted(ip, request.throttle_key(), async {
            let fields = request.fields()?;
            let ticket = Ticket::decode(&fields.user_sig)?;
            let app = self
                .apps
                .get(fields.sdkappid)
                .ok_or(Code::SdkAppIdNotFound)?;
            let verified = ticket.verify(
                &app.keys,
                fields.sdkappid,
                &fields.user_id,
                self.clock.now_secs(),
            )?;
            let (account, registered) = self
                .accounts
                .get_or_register(fields.sdkappid, &fields.user_id, self.clock.now_secs())
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, sdkappid = fields.sdkappid, "account lookup failed during login");
                    Failure::new(Code::InternalTimeout)
                })?;
            check_account(&account, &verified)?;
            Ok(Authenticated {
                app,
                ticket: verified,
                account,
                registered,
            })
        })
        .await
    }

    /// Verifies a fresh ticket for an existing instance (`renew_sig`): the same checks from the ticket on, no
    /// registration.
    pub async fn renew(
        &self,
        sdkappid: u32,
        user_id: &str,
        user_sig: &str,
        ip: IpAddr,
    ) -> Result<Verified, Failure> {
        self.counted(ip, Some((sdkappid, user_id)), async {
            let ticket = Ticket::decode(user_sig)?;
            let app = self.apps.get(sdkappid).ok_or(Code::SdkAppIdNotFound)?;
            let verified = ticket.verify(&app.keys, sdkappid, user_id, self.clock.now_secs())?;
            let account = self
                .accounts
                .login_state(sdkappid, user_id)
                .await
                .map_err(|_| Failure::new(Code::InternalTimeout))?
                .ok_or(Code::AccountNotFound)?;
            check_account(&account, &verified)?;
            Ok(verified)
        })
        .await
    }

    /// Runs `checks` behind the throttle (checked first, so a throttled request costs nothing) and counts a
    /// failure against the client and the user. The server's own trouble (70169) is not the client's failure.
    async fn counted<T>(
        &self,
        ip: IpAddr,
        user: Option<(u32, &str)>,
        checks: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        self.throttle.check(ip, user)?;
        let result = checks.await;
        if matches!(&result, Err(f) if f.code != Code::InternalTimeout) {
            self.throttle.record_failure(ip, user);
        }
        result
    }
}

/// Revoked 70052 (ticket issued in or before the revocation second), then disabled 70051.
fn check_account(account: &LoginState, ticket: &Verified) -> Result<(), Failure> {
    if account.revoked_at > 0 && ticket.issued_at <= account.revoked_at {
        return Err(Code::UserSigRevoked.into());
    }
    if account.disabled {
        return Err(Code::AccountDisabled.into());
    }
    Ok(())
}
