//! The rules of a configuration that serde cannot express, each failure naming its key.

use std::collections::HashSet;

use super::{key_err, log, AppConfig, ConfigError, RegistryBackend, Secret, Settings};
use crate::model::UserId;

impl Settings {
    /// Checks every rule serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(256..=16 * 1024 * 1024).contains(&self.server.max_frame_bytes) {
            return Err(key_err(
                "server.max_frame_bytes",
                "must be between 256 and 16777216",
            ));
        }
        for (key, value) in [
            ("server.write_timeout_secs", self.server.write_timeout_secs),
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err(key_err(key, "must be at least 1"));
            }
        }
        let ns = &self.registry.namespace;
        if ns.is_empty()
            || ns.len() > 32
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(key_err(
                "registry.namespace",
                "must be 1 to 32 letters, digits, `_` or `-`",
            ));
        }
        if !(3..=300).contains(&self.registry.node_timeout_secs) {
            return Err(key_err(
                "registry.node_timeout_secs",
                "must be between 3 and 300",
            ));
        }
        // A heartbeat stuck on Redis for the whole timeout still leaves the node two more before it is given up.
        let most = self.registry.node_timeout_secs * 1000 / 3;
        if !(10..=most).contains(&self.registry.redis_timeout_ms) {
            return Err(key_err(
                "registry.redis_timeout_ms",
                format!("must be between 10 and {most} (a third of registry.node_timeout_secs)"),
            ));
        }
        if let Err((i, why)) = self.server.trusted_proxy_nets() {
            return Err(key_err(format!("server.trusted_proxies[{i}]"), why));
        }
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(key_err(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(key_err("database.max_connections", "must be at least 1"));
        }
        if self.registry.backend == RegistryBackend::Redis {
            let r = &self.registry;
            if r.redis_cluster_nodes.is_empty() && !r.redis_url.expose().starts_with("redis://") {
                return Err(key_err("registry.redis_url", "must start with redis://"));
            }
            for (i, u) in r.redis_cluster_nodes.iter().enumerate() {
                let key = format!("registry.redis_cluster_nodes[{i}]");
                if !u.expose().starts_with("redis://") {
                    return Err(key_err(&key, "must start with redis://"));
                }
                // The URL is not repeated: it may hold a password.
                let info = redis::IntoConnectionInfo::into_connection_info(u.expose())
                    .map_err(|_| key_err(&key, "not a redis://[user:password@]host:port URL"))?;
                if info.redis_settings().db() != 0 {
                    return Err(key_err(&key, "a Redis Cluster has only database 0"));
                }
            }
        }
        if self.session.secret.expose().len() < 16 {
            return Err(key_err("session.secret", "must be at least 16 bytes"));
        }
        if self.session.heartbeat_timeout_secs == 0 {
            return Err(key_err(
                "session.heartbeat_timeout_secs",
                "must be at least 1",
            ));
        }
        for (key, value) in [
            (
                "limits.login_failures_per_minute",
                u64::from(self.limits.login_failures_per_minute),
            ),
            ("limits.login_timeout_secs", self.limits.login_timeout_secs),
            (
                "limits.frames_per_second",
                u64::from(self.limits.frames_per_second),
            ),
            (
                "limits.body_read_timeout_secs",
                self.limits.body_read_timeout_secs,
            ),
            (
                "limits.logins_in_progress_per_app",
                u64::from(self.limits.logins_in_progress_per_app),
            ),
        ] {
            if value == 0 {
                return Err(key_err(key, "must be at least 1"));
            }
        }
        if log::filter_for(&self.log.level).is_err() {
            return Err(key_err("log.level", "is not a valid tracing filter"));
        }
        if self.apps.is_empty() {
            return Err(key_err("apps", "at least one [[apps]] entry is required"));
        }
        let mut seen = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = |k: &str| format!("apps[{i}].{k}");
            if !seen.insert(app.sdkappid) {
                return Err(key_err(
                    at("sdkappid"),
                    format!("{} is configured twice", app.sdkappid),
                ));
            }
            if app.secret_key.expose().is_empty() {
                return Err(key_err(at("secret_key"), "must not be empty"));
            }
            if app.admins.is_empty() || app.admins.len() > 10 {
                return Err(key_err(at("admins"), "must list 1 to 10 admin UserIDs"));
            }
            for (j, admin) in app.admins.iter().enumerate() {
                if UserId::parse(admin).is_err() {
                    return Err(key_err(
                        format!("apps[{i}].admins[{j}]"),
                        "is not a valid UserID",
                    ));
                }
            }
            if let Some(key) = &app.admin_api_key {
                if key.expose().len() < 16 {
                    return Err(key_err(at("admin_api_key"), "must be at least 16 bytes"));
                }
                // A key finds one app: shared, it would act for one of them only.
                let earlier = self.apps[..i].iter().enumerate().find(|(_, a)| {
                    a.admin_api_key.as_ref().map(Secret::expose) == Some(key.expose())
                });
                if let Some((j, first)) = earlier {
                    return Err(key_err(
                        at("admin_api_key"),
                        format!(
                            "the same key as apps[{j}] ({}); each app needs its own",
                            first.sdkappid
                        ),
                    ));
                }
            }
            app.policy
                .validate()
                .map_err(|(k, m)| key_err(at(&format!("policy.{k}")), m))?;
            if let Some(key) = &app.previous_secret_key {
                if key.expose().is_empty() {
                    return Err(key_err(at("previous_secret_key"), "must not be empty"));
                }
            }
            if let Some(jwt) = &app.jwt {
                jwt.verifier()
                    .map_err(|(k, m)| key_err(at(&format!("jwt.{k}")), m))?;
            }
            if let Some(hook) = &app.webhook {
                // The message never repeats the URL: it may carry a password.
                match reqwest::Url::parse(hook.url.expose()) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                    _ => {
                        return Err(key_err(
                            at("webhook.url"),
                            "must be an http:// or https:// URL",
                        ))
                    }
                }
                if hook.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
                    return Err(key_err(
                        at("webhook.token"),
                        "must not be empty (leave it out to send no Sign)",
                    ));
                }
                if hook.timeout_ms == 0 {
                    return Err(key_err(at("webhook.timeout_ms"), "must be at least 1"));
                }
                if hook.max_attempts == 0 {
                    return Err(key_err(at("webhook.max_attempts"), "must be at least 1"));
                }
            }
        }
        check_shared_jwt_keys(&self.apps)
    }
}

/// A JWT without an `sdkappid` claim verifies for every app that holds its key: apps that share a JWT key must
/// each require their own `aud`.
fn check_shared_jwt_keys(apps: &[AppConfig]) -> Result<(), ConfigError> {
    let keys = |a: &AppConfig| -> Vec<String> {
        let Some(jwt) = &a.jwt else { return Vec::new() };
        let mut k = Vec::new();
        if let Some(s) = &jwt.secret {
            k.push(format!("secret:{}", s.expose()));
        }
        if let Some(pem) = &jwt.public_key_pem {
            k.push(format!(
                "pem:{}",
                pem.split_whitespace().collect::<String>()
            ));
        }
        k
    };
    for (i, a) in apps.iter().enumerate() {
        for (j, b) in apps.iter().enumerate().skip(i + 1) {
            let (ka, kb) = (keys(a), keys(b));
            if !ka.iter().any(|k| kb.contains(k)) {
                continue;
            }
            let aud = |x: &AppConfig| x.jwt.as_ref().and_then(|j| j.audience.clone());
            let (aa, ab) = (aud(a), aud(b));
            let offender = if aa.is_none() { i } else { j };
            if aa.is_none() || ab.is_none() || aa == ab {
                return Err(key_err(
                    format!("apps[{offender}].jwt.audience"),
                    format!(
                        "apps {} and {} share a JWT key: each must set its own `audience`, or a JWT issued \
                         for one logs in to the other",
                        a.sdkappid, b.sdkappid
                    ),
                ));
            }
        }
    }
    Ok(())
}
