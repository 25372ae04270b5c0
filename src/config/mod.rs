//! Configuration: the embedded `config/default.toml`, then an optional file, then `IMLOGIN__SECTION__KEY`
//! environment variables (PROTOCOL §10). Every failure names the key it is about.

pub mod apps;
mod env;
pub mod log;
pub mod public_secrets;
pub mod secret;
mod validate;

use env::{apply_env, merge, parse_toml};

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::config::secret::{MaskedUrl, Secret};
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
    /// Seed nodes of a Redis Cluster (`redis://host:port`, a password in the URL if it needs one): when set, the
    /// registry and the bus run on the cluster and `redis_url` is unused.
    #[serde(default)]
    pub redis_cluster_nodes: Vec<Secret>,
    /// Prefixes every Redis key and channel (deployments may share one Redis).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// A node silent this long is given up: its instances become disconnected, resumable elsewhere.
    #[serde(default = "default_node_timeout")]
    pub node_timeout_secs: u64,
    /// How long a request to Redis may take before it is given up (a login that made it answers 70169).
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout_ms: u64,
}

fn default_namespace() -> String {
    "imlogin".into()
}

fn default_node_timeout() -> u64 {
    10
}

fn default_redis_timeout() -> u64 {
    1000
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

#[cfg(test)]
mod tests;
