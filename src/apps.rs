//! The configured apps, looked up by SDKAppID.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{AppConfig, Secret, WebhookConfig};
use crate::registry::policy::Policy;
use crate::usersig::jwt::JwtVerifier;

/// One app, ready for use (JWT keys parsed).
pub struct App {
    pub sdkappid: u32,
    pub secret_key: Secret,
    pub admins: Vec<String>,
    pub admin_api_key: Option<Secret>,
    /// The policy from the config file (an admin's `PUT /policy` overrides it at run time).
    pub policy: Policy,
    pub jwt: Option<JwtVerifier>,
    pub webhook: Option<WebhookConfig>,
}

/// Every configured app. Cheap to clone.
#[derive(Clone, Default)]
pub struct Apps {
    by_id: Arc<HashMap<u32, Arc<App>>>,
}

impl Apps {
    /// Builds from validated config (see [`crate::config::Settings::validate`]).
    pub fn from_config(apps: &[AppConfig]) -> Apps {
        let by_id = apps
            .iter()
            .map(|a| {
                let jwt = a
                    .jwt
                    .as_ref()
                    .map(|j| JwtVerifier::from_config(j).expect("config was validated"));
                let app = App {
                    sdkappid: a.sdkappid,
                    secret_key: a.secret_key.clone(),
                    admins: a.admins.clone(),
                    admin_api_key: a.admin_api_key.clone(),
                    policy: a.policy,
                    jwt,
                    webhook: a.webhook.clone(),
                };
                (a.sdkappid, Arc::new(app))
            })
            .collect();
        Apps {
            by_id: Arc::new(by_id),
        }
    }

    pub fn get(&self, sdkappid: u32) -> Option<&Arc<App>> {
        self.by_id.get(&sdkappid)
    }
}
