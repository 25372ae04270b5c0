//! Structured logs with tracing: text for people, JSON for log pipelines (`log.format`).
//!
//! Whatever the level, the WebSocket and HTTP libraries' debug and trace output never reaches the log: it
//! carries whole frames and headers, and with them UserSigs and session tokens.

use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Targets whose records below INFO may carry frame or header contents.
const WIRE_TARGETS: [&str; 4] = ["tungstenite", "tokio_tungstenite", "hyper", "h2"];

/// Whether a record may be logged at all: not the wire libraries' debug and trace.
fn allowed(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO
        || !WIRE_TARGETS.iter().any(|t| {
            meta.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Installs the global subscriber once; later calls (tests) are no-ops. `RUST_LOG` wins over `log.level`.
pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // The wire filter only removes records; it must not raise the maximum level the filter above sets (without
    // a hint, every callsite of every library would count as enabled and be evaluated at run time).
    let hint = filter.max_level_hint();
    let wire = filter_fn(allowed);
    let wire = match hint {
        Some(level) => wire.with_max_level_hint(level),
        None => wire,
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter).with_filter(wire))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_libraries_log_nothing_below_info() {
        use tracing::callsite::Identifier;
        use tracing::metadata::Kind;
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = |target: &'static str, level: Level| {
            tracing::Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], Identifier(&CS)),
                Kind::EVENT,
            )
        };
        assert!(!allowed(&meta("tungstenite::protocol", Level::TRACE)));
        assert!(!allowed(&meta("tokio_tungstenite", Level::DEBUG)));
        assert!(!allowed(&meta("hyper::proto::h1", Level::TRACE)));
        assert!(allowed(&meta("tungstenite::protocol", Level::WARN)));
        assert!(allowed(&meta("imlogin::gateway", Level::TRACE)));
        assert!(allowed(&meta("hyperion", Level::TRACE)));
    }
}
