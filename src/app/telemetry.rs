//! Structured logs with tracing: text for people, JSON for log pipelines (`log.format`), the level changeable at
//! a reload.
//!
//! Whatever the level, the WebSocket and HTTP libraries log nothing below INFO: their debug and trace output
//! carries whole frames and headers, and with them UserSigs and session tokens.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::log::filter_for;
use crate::config::{LogFormat, LogSettings};

/// Changes the level of the running subscriber.
#[derive(Clone)]
pub struct LogControl(Option<reload::Handle<EnvFilter, Registry>>);

impl LogControl {
    /// For processes without a subscriber of their own (tests): changes nothing.
    pub fn none() -> LogControl {
        LogControl(None)
    }

    /// Applies a new `log.level` (unless `RUST_LOG` is set, which wins).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let Some(handle) = &self.0 else {
            return Ok(());
        };
        if rust_log().is_some() {
            return Ok(());
        }
        let filter = filter_for(level)?;
        handle.reload(filter).map_err(|e| e.to_string())
    }
}

/// `RUST_LOG` when set to something: set but empty (`RUST_LOG= imlogin serve`) it would silence every line.
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Installs the global subscriber once; later calls (tests) are no-ops. `RUST_LOG` wins over `log.level`.
pub fn init(log: &LogSettings) -> LogControl {
    let level = rust_log().unwrap_or_else(|| log.level.clone());
    let filter = filter_for(&level).unwrap_or_else(|_| filter_for("info").expect("a valid level"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    match tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
    {
        Ok(()) => LogControl(Some(handle)),
        Err(_) => LogControl::none(),
    }
}
