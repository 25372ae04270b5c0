//! Structured logs with tracing: text for people, JSON for log pipelines (`log.format`), the level changeable at
//! a reload.
//!
//! Whatever the level, the WebSocket and HTTP libraries log nothing below INFO: their debug and trace output
//! carries whole frames and headers, and with them UserSigs and session tokens.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSettings};

/// Targets whose records below INFO may carry frame or header contents.
const WIRE_TARGETS: [&str; 4] = ["tungstenite", "tokio_tungstenite", "hyper", "h2"];

fn is_wire_target(target: &str) -> bool {
    WIRE_TARGETS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The filter for a level setting (`log.level`, or `RUST_LOG`): its directives, minus any that name a wire
/// library, plus `info` for each of them (more specific than any global level, so they win over `trace`).
pub fn filter_for(level: &str) -> Result<EnvFilter, String> {
    let mut directives: Vec<String> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            let target = d.split(['=', '[']).next().unwrap_or_default();
            !is_wire_target(target)
        })
        // A span filter without a target would match the wire libraries' events inside that span: it is
        // scoped to imlogin's own.
        .map(|d| match d.starts_with('[') {
            true => format!("imlogin{d}"),
            false => d.to_owned(),
        })
        .collect();
    directives.extend(WIRE_TARGETS.iter().map(|t| format!("{t}=info")));
    EnvFilter::try_new(directives.join(",")).map_err(|e| e.to_string())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_libraries_stay_at_info_whatever_the_level_says() {
        for level in [
            "trace",
            "debug,tungstenite::protocol=trace",
            "info,hyper=trace,h2[x]=debug",
        ] {
            let f = filter_for(level).unwrap().to_string();
            for t in WIRE_TARGETS {
                assert!(f.contains(&format!("{t}=info")), "{level}: {f}");
            }
            assert!(
                !f.contains("=trace") || !f.contains("tungstenite::protocol=trace"),
                "{f}"
            );
            assert!(!f.contains("hyper=trace") && !f.contains("h2[x]"), "{f}");
        }
        assert!(filter_for("imlogin=debug,warn")
            .unwrap()
            .to_string()
            .contains("imlogin=debug"));
        assert!(filter_for("[ws]=trace")
            .unwrap()
            .to_string()
            .contains("imlogin[ws]=trace"));
        assert!(is_wire_target("tungstenite::protocol") && is_wire_target("hyper"));
        assert!(!is_wire_target("hyperion") && !is_wire_target("imlogin"));
    }
}
