//! Login authentication: every check of PROTOCOL §2 in its order, plus auto-registration.
//!
//! throttled 70050 · missing or mistyped fields 6017 · bad UserID 7003 · bad platform 6017 · empty ticket 70002 ·
//! undecodable 70003 · unknown app 70020 · SDKAppID mismatch 70014 · UserID mismatch 70013 · bad signature 70009 ·
//! expired 70001 · revoked 70052 · disabled 70051. The WebSocket and HTTP logins both call [`Authenticator`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::accounts::{Accounts, LoginState};
use crate::apps::{App, Apps};
use crate::error::{Code, Failure};
use crate::platform::Platform;
use crate::usersig::throttle::Throttle;
use crate::usersig::{self, validate_user_id, Verified};

/// The fields of a `login` request, checked for presence, type, UserID and platform.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginFields {
    pub sdkappid: u32,
    pub user_id: String,
    pub user_sig: String,
    pub platform: Platform,
    pub device_id: Option<String>,
}

impl std::fmt::Debug for LoginFields {
    // The ticket is a credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFields")
            .field("sdkappid", &self.sdkappid)
            .field("user_id", &self.user_id)
            .field("platform", &self.platform)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

fn invalid(why: impl Into<String>) -> Failure {
    Failure::with_message(Code::InvalidParameters, why)
}

impl LoginFields {
    /// Reads the login fields of a request object (unknown extra fields are ignored).
    pub fn from_json(obj: &Map<String, Value>) -> Result<LoginFields, Failure> {
        let string = |name: &str| match obj.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(format!("`{name}` must be a string"))),
            None => Err(invalid(format!("`{name}` is required"))),
        };
        let sdkappid = match obj.get("sdkappid") {
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("`sdkappid` must be an integer 0-4294967295"))?,
            Some(_) => return Err(invalid("`sdkappid` must be a number")),
            None => return Err(invalid("`sdkappid` is required")),
        };
        let user_id = string("user_id")?;
        let user_sig = string("user_sig")?;
        let platform = string("platform")?;
        let device_id = match obj.get("device_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s))
                if (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b)) =>
            {
                Some(s.clone())
            }
            Some(_) => return Err(invalid("`device_id` must be 1-64 bytes of printable ASCII")),
        };
        validate_user_id(&user_id)?;
        let platform = platform.parse().map_err(|_| {
            invalid(format!(
                "unknown platform {platform:?}; use one of android, iphone, ipad, windows, mac, linux, web"
            ))
        })?;
        Ok(LoginFields {
            sdkappid,
            user_id,
            user_sig,
            platform,
            device_id,
        })
    }
}

/// The (SDKAppID, UserID) a request names, if readable: the per-user throttle key, taken before validation so a
/// throttled request costs nothing.
fn throttle_key(obj: &Map<String, Value>) -> Option<(u32, &str)> {
    let app = u32::try_from(obj.get("sdkappid")?.as_u64()?).ok()?;
    Some((app, obj.get("user_id")?.as_str()?))
}

/// A login that passed every check: the account exists durably.
#[derive(Clone)]
pub struct Authenticated {
    pub app: Arc<App>,
    pub fields: LoginFields,
    pub ticket: Verified,
    pub account: LoginState,
    /// This login created the account.
    pub registered: bool,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("fields", &self.fields)
            .field("ticket", &self.ticket)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

/// Runs the login checks; shared by every login path.
pub struct Authenticator {
    apps: Apps,
    accounts: Accounts,
    throttle: Throttle,
}

impl Authenticator {
    pub fn new(apps: Apps, accounts: Accounts, failures_per_minute: u32) -> Self {
        Authenticator {
            apps,
            accounts,
            throttle: Throttle::new(failures_per_minute),
        }
    }

    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Authenticates a login request from `ip` at unix time `now`; failures count toward the throttle.
    pub async fn login(
        &self,
        obj: &Map<String, Value>,
        ip: IpAddr,
        now: i64,
    ) -> Result<Authenticated, Failure> {
        let key = throttle_key(obj);
        self.throttle.check(ip, key, Instant::now())?;
        let result = self.login_checks(obj, now).await;
        if let Err(f) = &result {
            // The server's own trouble (70169) is not the client's failure.
            if f.code != Code::InternalTimeout {
                self.throttle.record_failure(ip, key, Instant::now());
            }
        }
        result
    }

    async fn login_checks(
        &self,
        obj: &Map<String, Value>,
        now: i64,
    ) -> Result<Authenticated, Failure> {
        let fields = LoginFields::from_json(obj)?;
        let ticket = usersig::verify(
            &self.apps,
            fields.sdkappid,
            &fields.user_id,
            &fields.user_sig,
            now,
        )?;
        let app = self
            .apps
            .get(fields.sdkappid)
            .expect("verify checked the app exists")
            .clone();
        let (account, registered) =
            self.accounts.get_or_register(fields.sdkappid, &fields.user_id, now).await.map_err(|e| {
                tracing::warn!(error = %e, sdkappid = fields.sdkappid, "account lookup failed during login");
                Failure::new(Code::InternalTimeout)
            })?;
        check_account(&account, &ticket)?;
        Ok(Authenticated {
            app,
            fields,
            ticket,
            account,
            registered,
        })
    }

    /// Verifies a fresh ticket for an existing instance (`renew_sig`): same checks from the ticket on, no
    /// registration.
    pub async fn renew(
        &self,
        sdkappid: u32,
        user_id: &str,
        user_sig: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<Verified, Failure> {
        let key = Some((sdkappid, user_id));
        self.throttle.check(ip, key, Instant::now())?;
        let result: Result<Verified, Failure> = async {
            let ticket = usersig::verify(&self.apps, sdkappid, user_id, user_sig, now)?;
            let account = self
                .accounts
                .login_state(sdkappid, user_id)
                .await
                .map_err(|_| Failure::new(Code::InternalTimeout))?
                .ok_or(Code::AccountNotFound)?;
            check_account(&account, &ticket)?;
            Ok(ticket)
        }
        .await;
        if matches!(&result, Err(f) if f.code != Code::InternalTimeout) {
            self.throttle.record_failure(ip, key, Instant::now());
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
