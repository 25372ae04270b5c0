//! The configured apps (tenants), each named by its SDKAppID: keys, admins, policy, webhook. Not to be confused
//! with the application, which assembles the server.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{AppConfig, RestLimits, Secret, WebhookConfig};
use crate::model::Policy;
use crate::usersig::Keys;

/// One app, ready for use (keys parsed).
#[derive(Debug)]
pub struct SdkApp {
    pub sdkappid: u32,
    /// What its tickets are verified with.
    pub keys: Keys,
    pub admins: Vec<String>,
    pub admin_api_key: Option<Secret>,
    /// The policy from the config file (an admin's `PUT /policy` overrides it at run time).
    pub policy: Policy,
    pub webhook: Option<WebhookConfig>,
    pub rest_limits: RestLimits,
    /// The demo app of the embedded defaults, with its public key (`/demo` is served for it).
    pub is_demo: bool,
    /// Its admin API key is the public one of the embedded defaults (the demo may hand it to the console).
    pub has_demo_admin_key: bool,
}

impl SdkApp {
    /// Builds from a validated config entry (see [`crate::config::Settings::validate`]).
    pub fn from_config(a: &AppConfig) -> SdkApp {
        let jwt = a
            .jwt
            .as_ref()
            .map(|j| j.verifier().expect("config was validated"));
        SdkApp {
            sdkappid: a.sdkappid,
            keys: Keys::new(a.secret_key.expose(), jwt)
                .with_previous_secret_key(a.previous_secret_key.as_ref().map(Secret::expose)),
            admins: a.admins.clone(),
            admin_api_key: a.admin_api_key.clone(),
            policy: a.policy,
            webhook: a.webhook.clone(),
            rest_limits: a.rest_limits,
            is_demo: a.is_demo(),
            has_demo_admin_key: a.has_demo_admin_key(),
        }
    }
}

type ById = HashMap<u32, Arc<SdkApp>>;

/// Every configured app. Cheap to clone; clones see the same apps, also after [`SdkApps::replace`].
#[derive(Clone, Default)]
pub struct SdkApps {
    by_id: Arc<ArcSwap<ById>>,
}

fn build(apps: &[AppConfig]) -> ById {
    apps.iter()
        .map(|a| (a.sdkappid, Arc::new(SdkApp::from_config(a))))
        .collect()
}

impl SdkApps {
    /// Builds from validated config.
    pub fn from_config(apps: &[AppConfig]) -> SdkApps {
        SdkApps {
            by_id: Arc::new(ArcSwap::from_pointee(build(apps))),
        }
    }

    pub fn get(&self, sdkappid: u32) -> Option<Arc<SdkApp>> {
        self.by_id.load().get(&sdkappid).cloned()
    }

    /// Every app now.
    pub fn all(&self) -> Vec<Arc<SdkApp>> {
        self.by_id.load().values().cloned().collect()
    }

    /// Replaces every app at once (a reload): logins after it see the new apps.
    pub fn replace(&self, apps: &[AppConfig]) {
        self.by_id.store(Arc::new(build(apps)));
    }
}
