//! Who may act as an app's admin: the holder of its admin API key (native API), or one of its `admins` with a
//! valid UserSig (REST v4), whose failures are throttled per source address.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Admin, AdminActor};
use crate::config::apps::SdkApp;
use crate::limits::throttle::Throttle;
use crate::model::Failure;
use crate::usersig::Ticket;

/// Why an admin's UserSig is refused.
#[derive(Debug)]
pub enum TicketRefused {
    /// The UserID is not one of the app's `admins` (60010).
    NotAdmin,
    /// The ticket is bad, and its address failed too often: retry after this many seconds (70050).
    Throttled { retry_after_secs: i64 },
    /// The ticket is bad: its own code (70001, 70003, 70009, …).
    Invalid(Failure),
}

fn key_hash(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

impl Admin {
    /// Reads the apps' admin API keys (at start, and after the apps change).
    pub fn load_keys(&self) {
        let keys = self
            .sessions
            .auth()
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

    /// The app, if it is configured.
    pub fn app(&self, sdkappid: u32) -> Option<Arc<SdkApp>> {
        self.sessions.auth().apps().get(sdkappid)
    }

    /// The counters of failed admin authentications (limit: `limits.login_failures_per_minute`).
    pub fn failed_auth(&self) -> &Throttle {
        &self.failed_auth
    }

    /// `identifier`, one of the app's admins, with its UserSig, calling from `ip`.
    ///
    /// The ticket is checked first: a valid one always passes, so that failures (counted per source address)
    /// cannot lock an admin out, whoever causes them and from wherever. A bad one from an address over the limit
    /// is refused as throttled, not with its own code (which would tell a guesser more), and is not counted again.
    pub fn admin_by_ticket(
        &self,
        app: &SdkApp,
        identifier: &str,
        usersig: &str,
        ip: IpAddr,
    ) -> Result<AdminActor, TicketRefused> {
        if !app.admins.iter().any(|a| a == identifier) {
            return Err(TicketRefused::NotAdmin);
        }
        let verified = Ticket::decode(usersig)
            .and_then(|t| t.verify(&app.keys, app.sdkappid, identifier, self.now()));
        if let Err(f) = verified {
            if let Some(retry_after_secs) = self.failed_auth.wait_secs(ip, None) {
                return Err(TicketRefused::Throttled { retry_after_secs });
            }
            self.failed_auth.record_failure(ip, None);
            return Err(TicketRefused::Invalid(f));
        }
        Ok(AdminActor {
            sdkappid: app.sdkappid,
            admin: identifier.to_owned(),
            ip,
        })
    }
}
