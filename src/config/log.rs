//! What a `log.level` setting (or `RUST_LOG`) means: its filter, in which the WebSocket and HTTP libraries
//! never log below INFO (their debug and trace output carries whole frames and headers, and with them UserSigs
//! and session tokens). Installing it is `app::telemetry`'s.

use tracing_subscriber::EnvFilter;

/// Targets whose records below INFO may carry frame or header contents.
pub const WIRE_TARGETS: [&str; 4] = ["tungstenite", "tokio_tungstenite", "hyper", "h2"];

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
