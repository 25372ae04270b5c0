//! Configuration: the embedded `config/default.toml`, then an optional file, then `IMLOGIN__SECTION__KEY`
//! environment variables (PROTOCOL §10). Every failure names the key it is about.

pub mod apps;
pub mod log;
pub mod public_secrets;
pub mod secret;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::config::secret::{MaskedUrl, Secret};
use crate::model::validate_user_id;
use crate::model::Policy;
use crate::usersig::jwt::{JwtAlgorithm, JwtVerifier};

/// The embedded defaults: a SQLite file under `data/`, the in-memory registry and one demo app.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The demo app of the embedded defaults. Its keys are public (for trying only): an app configured with its
/// SDKAppID and secret key is "the demo", for which the server also serves `/demo`.
pub fn demo_app() -> &'static AppConfig {
    static DEMO: std::sync::OnceLock<AppConfig> = std::sync::OnceLock::new();
    DEMO.get_or_init(|| {
        Settings::from_toml_str(DEFAULT_TOML)
            .expect("embedded default config is valid")
            .apps
            .remove(0)
    })
}
/// Environment variables with this prefix override config keys; `__` separates the path segments.
pub const ENV_PREFIX: &str = "IMLOGIN__";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub registry: RegistrySettings,
    pub session: SessionSettings,
    pub limits: LimitSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// Count and serve metrics (off: nothing is counted, nothing listens on `metrics_listen`).
    #[serde(default = "default_true")]
    pub metrics_enabled: bool,
    pub max_frame_bytes: usize,
    pub shutdown_grace_secs: u64,
    /// A WebSocket whose client takes no frame for this long is dropped.
    pub write_timeout_secs: u64,
    /// An HTTP request head must arrive within this (also ends idle keep-alive connections).
    pub header_read_timeout_secs: u64,
    /// Peers (CIDRs) whose `X-Forwarded-For` is believed: the client address is its rightmost untrusted hop.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl ServerSettings {
    /// `trusted_proxies` parsed (validated at load, so this cannot fail afterwards).
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, (usize, String)> {
        self.trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| (i, format!("{s:?} is not an address or a CIDR")))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://relative/path.db`, `sqlite:///absolute/path.db` or `postgres://user@host/db`.
    pub url: Secret,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_true() -> bool {
    true
}

fn default_max_connections() -> u32 {
    16
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryBackend {
    Memory,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    pub backend: RegistryBackend,
    pub redis_url: Secret,
    /// Prefixes every Redis key and channel (deployments may share one Redis).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// A node silent this long is given up: its instances become disconnected, resumable elsewhere.
    #[serde(default = "default_node_timeout")]
    pub node_timeout_secs: u64,
}

fn default_namespace() -> String {
    "imlogin".into()
}

fn default_node_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub secret: Secret,
    pub heartbeat_timeout_secs: u64,
    pub reconnect_grace_secs: u64,
    pub sig_expiry_notice_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub login_failures_per_minute: u32,
    /// Open WebSockets per client (IPv4 address or IPv6 /64); 0 is no limit. Over it, upgrades get 429.
    pub connections_per_ip: u32,
    /// New WebSockets per client a second, bursts of twice that; 0 is no limit. Over it, upgrades get 429.
    pub new_connections_per_ip_per_second: u32,
    /// WebSockets of one client closed for abuse (too many frames) a second, bursts of twice that; 0 is no
    /// limit. A client over it is tripped for 2 s: each new socket counts too, and with none left its
    /// connections are closed at accept (behind a trusted proxy: its upgrades get 429).
    pub abusive_closes_per_ip_per_second: u32,
    /// A WebSocket that has not logged in this long after it opened is closed (1008).
    pub login_timeout_secs: u64,
    /// Frames a WebSocket may send per second, with bursts of twice that; over it: close 1008.
    pub frames_per_second: u32,
    /// An HTTP request body must arrive within this (slow senders get 408).
    pub body_read_timeout_secs: u64,
    /// Logins of one app in progress at once (waiting on the database or the registry); more answer 70169.
    pub logins_in_progress_per_app: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `imlogin=debug,info`; `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub sdkappid: u32,
    pub secret_key: Secret,
    /// The key before a rotation, still accepted for verification until removed.
    #[serde(default)]
    pub previous_secret_key: Option<Secret>,
    pub admins: Vec<String>,
    #[serde(default)]
    pub admin_api_key: Option<Secret>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Calls per second each `/v4` REST command may take for this app (60007 above).
    #[serde(default)]
    pub rest_limits: RestLimits,
}

impl AppConfig {
    /// The demo app of the embedded defaults, with its public key.
    pub fn is_demo(&self) -> bool {
        let demo = demo_app();
        self.sdkappid == demo.sdkappid && self.secret_key.expose() == demo.secret_key.expose()
    }

    /// Its admin API key is still the public one of the embedded defaults.
    pub fn has_demo_admin_key(&self) -> bool {
        self.admin_api_key.as_ref().map(Secret::expose)
            == demo_app().admin_api_key.as_ref().map(Secret::expose)
    }
}

/// Per-second limits of the `/v4` REST commands (the compatible system's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestLimits {
    pub account_import: u32,
    pub multiaccount_import: u32,
    pub account_delete: u32,
    pub account_check: u32,
    pub kick: u32,
    pub query_online_status: u32,
}

impl Default for RestLimits {
    fn default() -> Self {
        RestLimits {
            account_import: 200,
            multiaccount_import: 100,
            account_delete: 100,
            account_check: 100,
            kick: 200,
            query_online_status: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub algorithms: Vec<JwtAlgorithm>,
    /// Shared secret for HS256/384/512.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// PEM public key for RS256, ES256 or EdDSA.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// The keys before a rotation, still accepted until removed.
    #[serde(default)]
    pub previous_secret: Option<Secret>,
    #[serde(default)]
    pub previous_public_key_pem: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

impl JwtConfig {
    /// The verifier these settings describe; on a bad setting, (its key under `jwt`, message).
    pub fn verifier(&self) -> Result<JwtVerifier, (&'static str, String)> {
        JwtVerifier::new(
            &self.algorithms,
            self.secret.as_ref().map(Secret::expose),
            self.public_key_pem.as_deref(),
            self.audience.as_deref(),
        )?
        .with_previous(
            self.previous_secret.as_ref().map(Secret::expose),
            self.previous_public_key_pem.as_deref(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Shown with any `user:password@` masked.
    pub url: MaskedUrl,
    /// When present, not empty (a `Sign` of the time alone would prove nothing).
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
}

fn default_webhook_timeout() -> u64 {
    2000
}
fn default_webhook_attempts() -> u32 {
    8
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

fn key_err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

impl Settings {
    /// Loads defaults, then `file` (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment (tests, `check-config`).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut tree = parse_toml(DEFAULT_TOML, "config/default.toml (embedded)")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            merge(&mut tree, parse_toml(&text, &path.display().to_string())?);
        }
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        // Sorted so that `APPS__0__…` creates the entry before `APPS__1__…`; stably, by name only, so that of a
        // name given twice the later wins.
        overrides.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in overrides {
            apply_env(&mut tree, &name, &value)?;
        }
        Self::from_tree(tree)
    }

    /// Parses a complete TOML document (no defaults, no environment).
    pub fn from_toml_str(text: &str) -> Result<Settings, ConfigError> {
        Self::from_tree(parse_toml(text, "config")?)
    }

    fn from_tree(tree: toml::Table) -> Result<Settings, ConfigError> {
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| key_err(e.path().to_string(), e.inner().message().to_owned()))?;
        settings.validate()?;
        Ok(settings)
    }

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
        if self.registry.backend == RegistryBackend::Redis
            && !self.registry.redis_url.expose().starts_with("redis://")
        {
            return Err(key_err("registry.redis_url", "must start with redis://"));
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
                if validate_user_id(admin).is_err() {
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

    /// The effective configuration as TOML with every secret masked (for `check-config`).
    pub fn masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The keys that hold a secret this repository publishes (the demo's, the deployment examples'): for
    /// trying only, warned about at start and by `check-config`.
    pub fn public_secrets(&self) -> Vec<crate::config::public_secrets::PublicSecret> {
        crate::config::public_secrets::find(self)
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

fn parse_toml(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.message().to_owned(),
        })
}

/// Deep-merges tables; any other value (arrays included, so `[[apps]]` replaces the demo app) is replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies `IMLOGIN__SECTION__KEY=value`. A numeric segment indexes an array (`IMLOGIN__APPS__0__SECRET_KEY`);
/// the index one past the end appends a new table. The value is read as a TOML value (number, bool, array)
/// unless the key it replaces holds a string, or it does not parse: then it is a string.
fn apply_env(tree: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let dotted = path.join(".");
    if path.iter().any(|s| s.is_empty()) {
        return Err(key_err(
            dotted,
            format!("environment variable {name} has an empty path segment"),
        ));
    }
    let mut node = TableOrArray::Table(tree);
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let slot: &mut toml::Value = match node {
            TableOrArray::Table(t) => {
                if last {
                    let parsed = parse_env_value(value, t.get(seg));
                    t.insert(seg.clone(), parsed);
                    return Ok(());
                }
                t.entry(seg.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            TableOrArray::Array(a) => {
                let idx: usize = seg
                    .parse()
                    .map_err(|_| key_err(&dotted, format!("`{seg}` must be an array index")))?;
                if idx > a.len() {
                    return Err(key_err(
                        &dotted,
                        format!("index {idx} skips entries (array has {})", a.len()),
                    ));
                }
                if idx == a.len() {
                    a.push(toml::Value::Table(toml::Table::new()));
                }
                if last {
                    let parsed = parse_env_value(value, Some(&a[idx]));
                    a[idx] = parsed;
                    return Ok(());
                }
                &mut a[idx]
            }
        };
        node = match slot {
            toml::Value::Table(t) => TableOrArray::Table(t),
            toml::Value::Array(a) => TableOrArray::Array(a),
            _ => {
                return Err(key_err(
                    &dotted,
                    format!("`{seg}` is not a table, cannot set a key below it"),
                ))
            }
        };
    }
    Ok(())
}

enum TableOrArray<'a> {
    Table(&'a mut toml::Table),
    Array(&'a mut Vec<toml::Value>),
}

fn parse_env_value(raw: &str, current: Option<&toml::Value>) -> toml::Value {
    if matches!(current, Some(toml::Value::String(_))) {
        return toml::Value::String(raw.to_owned());
    }
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_default_is_valid() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.server.max_frame_bytes, 16384);
        assert_eq!(s.registry.backend, RegistryBackend::Memory);
        assert!(s.database.url.expose().starts_with("sqlite://data/"));
        assert_eq!(s.apps.len(), 1);
        assert_eq!(
            s.public_secrets().len(),
            3,
            "the demo's three public secrets"
        );
        // The limits PROTOCOL §10 names, at its values; the per-address rate of new sockets is opt-in.
        assert_eq!(s.limits.login_failures_per_minute, 20);
        assert_eq!(s.limits.connections_per_ip, 10_000);
        assert_eq!(s.limits.login_timeout_secs, 10);
        assert_eq!(s.limits.frames_per_second, 50);
        assert_eq!(s.limits.new_connections_per_ip_per_second, 0);
        assert_eq!(s.limits.abusive_closes_per_ip_per_second, 5);
    }

    #[test]
    fn env_overrides_keys_and_keeps_strings_strings() {
        let s = Settings::load_with_env(
            None,
            env(&[
                (
                    "IMLOGIN__DATABASE__URL",
                    "postgres://postgres@127.0.0.1/imlogin",
                ),
                ("IMLOGIN__REGISTRY__BACKEND", "redis"),
                ("IMLOGIN__SERVER__MAX_FRAME_BYTES", "4096"),
                ("IMLOGIN__SESSION__SECRET", "12345678901234567890"),
                ("IMLOGIN__APPS__0__POLICY__MODE", "multi"),
                ("IMLOGIN__APPS__0__ADMINS", r#"["root", "ops"]"#),
                ("OTHER__SERVER__LISTEN", "nonsense"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.database.url.expose(),
            "postgres://postgres@127.0.0.1/imlogin"
        );
        assert_eq!(s.registry.backend, RegistryBackend::Redis);
        assert_eq!(s.server.max_frame_bytes, 4096);
        assert_eq!(s.session.secret.expose(), "12345678901234567890");
        assert_eq!(s.apps[0].admins, vec!["root", "ops"]);
    }

    #[test]
    fn env_can_append_an_app() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("IMLOGIN__APPS__1__SDKAPPID", "1400000001"),
                ("IMLOGIN__APPS__1__SECRET_KEY", "another-secret-key"),
                ("IMLOGIN__APPS__1__ADMINS", r#"["admin"]"#),
            ]),
        )
        .unwrap();
        assert_eq!(s.apps.len(), 2);
        assert_eq!(s.apps[1].sdkappid, 1_400_000_001);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("IMLOGIN__SERVER__LISTEN", "not-an-address", "server.listen"),
            (
                "IMLOGIN__SERVER__MAX_FRAME_BYTES",
                "10",
                "server.max_frame_bytes",
            ),
            ("IMLOGIN__REGISTRY__BACKEND", "etcd", "registry.backend"),
            ("IMLOGIN__DATABASE__URL", "mysql://x", "database.url"),
            ("IMLOGIN__SESSION__SECRET", "short", "session.secret"),
            (
                "IMLOGIN__APPS__0__POLICY__WEB_INSTANCES",
                "11",
                "apps[0].policy.web_instances",
            ),
            (
                "IMLOGIN__APPS__0__POLICY__MODE",
                "quad",
                "apps[0].policy.mode",
            ),
            (
                "IMLOGIN__APPS__0__ADMINS",
                r#"["@TIM#x"]"#,
                "apps[0].admins[0]",
            ),
            ("IMLOGIN__SERVER__LISTN", "1", "server.listn"),
        ];
        for (k, v, key) in cases {
            let err = Settings::load_with_env(None, env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key),
                "{k}={v}: error {err:?} should name {key}"
            );
        }
    }

    #[test]
    fn a_webhook_needs_a_real_url_and_a_token_that_is_not_empty() {
        let hook = |url: &str, token: Option<&str>| {
            let mut e = vec![("IMLOGIN__APPS__0__WEBHOOK__URL", url)];
            e.extend(token.map(|t| ("IMLOGIN__APPS__0__WEBHOOK__TOKEN", t)));
            Settings::load_with_env(None, env(&e))
        };
        assert!(hook("http://u:p@127.0.0.1:9/hook", Some("t")).is_ok());
        assert!(hook("https://hooks.example.com/im", None).is_ok());
        let err = hook("http://127.0.0.1:9/hook", Some("")).unwrap_err();
        assert!(err.to_string().contains("apps[0].webhook.token"), "{err}");
        for url in ["ftp://h/x", "http://", "http://u:secret-pw@exa mple/x"] {
            let err = hook(url, Some("t")).unwrap_err().to_string();
            assert!(err.contains("apps[0].webhook.url"), "{url}: {err}");
            assert!(!err.contains("secret-pw"), "{err}");
        }
    }

    #[test]
    fn masked_output_hides_every_secret() {
        let s = Settings::load_with_env(
            None,
            env(&[(
                "IMLOGIN__DATABASE__URL",
                "postgres://user:hunter2-password@db/imlogin",
            )]),
        )
        .unwrap();
        let out = s.masked_toml();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains(s.apps[0].secret_key.expose()), "{out}");
        assert!(!out.contains(s.session.secret.expose()), "{out}");
        assert!(!format!("{s:?}").contains(s.session.secret.expose()));
    }
}
