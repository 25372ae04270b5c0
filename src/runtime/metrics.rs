//! Prometheus metrics (PROTOCOL §10), served on `server.metrics_listen` at `/metrics`. One [`Metrics`] per
//! application, with its own registry (no global recorder): parts that count take an optional handle, so a
//! server with `server.metrics_enabled = false` does not count at all.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::KickReason;
use crate::model::Platform;

impl EncodeLabelValue for Platform {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppPlatform {
    pub sdkappid: u32,
    pub platform: Platform,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppCode {
    /// A configured app, or 0 for requests that named none (so clients cannot grow the label set).
    pub sdkappid: u32,
    pub code: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppReason {
    pub sdkappid: u32,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Area {
    pub area: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// Values read when scraped (queues, pools, the process), set just before encoding.
#[derive(Default)]
pub struct Sampled {
    pub ws_connections: Gauge,
    pub dau_queue: Gauge,
    pub webhook_queue: Gauge,
    pub webhook_pending: Gauge,
    pub db_pool_connections: Gauge,
    pub db_pool_idle: Gauge,
    pub resident_memory: Gauge,
    pub open_fds: Gauge,
    pub max_fds: Gauge,
    /// A counter (`process_cpu_seconds_total`, as Prometheus's own clients name it), moved up to the process's
    /// CPU time at each scrape.
    pub cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Scrapes sample one at a time (the CPU counter is moved by differences).
    lock: std::sync::Mutex<()>,
}

pub struct Metrics {
    registry: Registry,
    /// Logged-in instances connected to this node.
    pub sessions_online: Family<AppPlatform, Gauge>,
    pub logins: Family<AppCode, Counter>,
    pub kicks: Family<AppReason, Counter>,
    /// Logins that answered before every connection they kicked had written its `kicked_offline`.
    pub kick_waits_expired: Counter,
    pub login_duration: Histogram,
    pub db_errors: Family<Area, Counter>,
    pub registry_errors: Counter,
    pub webhook_deliveries: Family<Outcome, Counter>,
    pub webhook_dead_letters: Counter,
    pub sampled: Sampled,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            sessions_online: Family::default(),
            logins: Family::default(),
            kicks: Family::default(),
            kick_waits_expired: Counter::default(),
            // 100 µs … ~3.3 s.
            login_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            db_errors: Family::default(),
            registry_errors: Counter::default(),
            webhook_deliveries: Family::default(),
            webhook_dead_letters: Counter::default(),
            sampled: Sampled::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "imlogin_sessions_online",
            "Logged-in instances connected to this node",
            m.sessions_online.clone(),
        );
        r.register(
            "imlogin_logins",
            "Logins answered, by app and code (0 = success; app 0 = not a configured app)",
            m.logins.clone(),
        );
        r.register(
            "imlogin_kicks",
            "Instances kicked, by app and reason",
            m.kicks.clone(),
        );
        r.register(
            "imlogin_kick_waits_expired",
            "Logins that answered after waiting 2 s in vain for a kicked connection to write its kicked_offline",
            m.kick_waits_expired.clone(),
        );
        r.register(
            "imlogin_login_duration_seconds",
            "Time from a login request to its answer",
            m.login_duration.clone(),
        );
        r.register(
            "imlogin_ws_connections",
            "Open WebSocket connections on this node",
            m.sampled.ws_connections.clone(),
        );
        r.register(
            "imlogin_database_errors",
            "Database calls that failed, by area",
            m.db_errors.clone(),
        );
        r.register(
            "imlogin_registry_errors",
            "Session registry calls that failed (Redis unreachable)",
            m.registry_errors.clone(),
        );
        r.register(
            "imlogin_daily_active_queue",
            "Daily-active rows waiting for the writer",
            m.sampled.dau_queue.clone(),
        );
        r.register(
            "imlogin_webhook_queue",
            "Webhook events waiting for the outbox writer",
            m.sampled.webhook_queue.clone(),
        );
        r.register(
            "imlogin_webhook_pending",
            "Webhook events held by delivery on this node, not yet delivered",
            m.sampled.webhook_pending.clone(),
        );
        r.register(
            "imlogin_webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "imlogin_webhook_dead_letters",
            "Webhook events given up on",
            m.webhook_dead_letters.clone(),
        );
        r.register(
            "imlogin_db_pool_connections",
            "Database connections open",
            m.sampled.db_pool_connections.clone(),
        );
        r.register(
            "imlogin_db_pool_idle",
            "Database connections idle (0 with requests waiting means the pool is the limit)",
            m.sampled.db_pool_idle.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            m.sampled.resident_memory.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors of the process",
            m.sampled.open_fds.clone(),
        );
        r.register(
            "process_max_fds",
            "The open-files limit of the process (soft)",
            m.sampled.max_fds.clone(),
        );
        r.register(
            "process_cpu_seconds",
            "CPU time the process has used (user and system)",
            m.sampled.cpu_seconds.clone(),
        );
        // Series that alerts watch exist from the start (at 0), so a rate over them is defined.
        for area in ["accounts", "daily_active", "webhooks"] {
            let _ = m.db_errors.get_or_create(&Area { area });
        }
        for outcome in ["delivered", "failed"] {
            let _ = m.webhook_deliveries.get_or_create(&Outcome { outcome });
        }
        Metrics { registry, ..m }
    }

    /// Creates the series of a configured app at zero (instances on each platform, successful logins, kicks for
    /// each reason), so that alerts and dashboards read 0 rather than "no data" before its first login: at start,
    /// and for an app a reload adds.
    pub fn add_app(&self, sdkappid: u32) {
        for platform in Platform::ALL {
            let _ = self
                .sessions_online
                .get_or_create(&AppPlatform { sdkappid, platform });
        }
        let _ = self.logins.get_or_create(&AppCode { sdkappid, code: 0 });
        for reason in KickReason::ALL {
            let reason = reason.as_str();
            let _ = self.kicks.get_or_create(&AppReason { sdkappid, reason });
        }
    }

    /// Counts a login's answer and how long it took. `sdkappid` must be a configured app (else 0).
    pub fn login(&self, sdkappid: u32, code: u32, took: Duration) {
        self.logins.get_or_create(&AppCode { sdkappid, code }).inc();
        self.login_duration.observe(took.as_secs_f64());
    }

    pub fn kick(&self, sdkappid: u32, reason: &'static str) {
        self.kicks
            .get_or_create(&AppReason { sdkappid, reason })
            .inc();
    }

    pub fn db_error(&self, area: &'static str) {
        self.db_errors.get_or_create(&Area { area }).inc();
    }

    /// The gauge of instances of (app, platform) connected here.
    pub fn online(&self, sdkappid: u32, platform: Platform) -> Gauge {
        self.sessions_online
            .get_or_create(&AppPlatform { sdkappid, platform })
            .clone()
    }

    /// Reads the process's memory, files and CPU time (Linux `/proc`), then encodes everything.
    pub fn render(&self) -> String {
        let s = &self.sampled;
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let rss_kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok());
            if let Some(kb) = rss_kb {
                s.resident_memory.set(kb * 1024);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            s.open_fds.set(dir.count() as i64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            let soft = limits
                .lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok());
            if let Some(n) = soft {
                s.max_fds.set(n);
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100/s).
            let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or_default();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let cpu = (ticks(11) + ticks(12)) / 100.0;
            let _one = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            let counted = s.cpu_seconds.get();
            if cpu > counted {
                s.cpu_seconds.inc_by(cpu - counted);
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts an instance as connected here for as long as it lives (in the connection's state).
pub struct OnlineMark(Gauge);

impl OnlineMark {
    pub fn new(gauge: Gauge) -> OnlineMark {
        gauge.inc();
        OnlineMark(gauge)
    }
}

impl Drop for OnlineMark {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_of_the_protocol_are_rendered() {
        let m = Metrics::new();
        m.login(7, 0, Duration::from_millis(3));
        m.kick(7, "multi_terminal");
        let mark = OnlineMark::new(m.online(7, Platform::Web));
        let text = m.render();
        for name in [
            "imlogin_sessions_online{sdkappid=\"7\",platform=\"web\"} 1",
            "imlogin_logins_total{sdkappid=\"7\",code=\"0\"} 1",
            "imlogin_kicks_total{sdkappid=\"7\",reason=\"multi_terminal\"} 1",
            "imlogin_login_duration_seconds_count 1",
            "imlogin_ws_connections 0",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
        drop(mark);
        assert!(m
            .render()
            .contains("imlogin_sessions_online{sdkappid=\"7\",platform=\"web\"} 0"));
    }

    #[test]
    fn an_apps_series_exist_at_zero_once_it_is_added() {
        let m = Metrics::new();
        assert!(!m.render().contains("sdkappid=\"8\""));
        m.add_app(8);
        let text = m.render();
        for series in [
            "imlogin_sessions_online{sdkappid=\"8\",platform=\"iphone\"} 0",
            "imlogin_logins_total{sdkappid=\"8\",code=\"0\"} 0",
            "imlogin_kicks_total{sdkappid=\"8\",reason=\"app_removed\"} 0",
        ] {
            assert!(text.contains(series), "{series} in\n{text}");
        }
    }
}
