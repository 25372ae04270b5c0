//! Live reload (SIGHUP): the config file is read again and what can change without dropping a connection is
//! applied to the logins after it — apps added, removed and re-keyed (their keys, admins, admin API keys,
//! policies, webhooks and REST limits), the login throttle and the log level. A removed app's connected users are
//! kicked (`app_removed`, 70020). Everything else (listeners, database, registry, session settings) needs a
//! restart: a change there is logged and the running value kept. A file that does not load is refused, naming
//! the key, and the running configuration stays.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::admin::Admin;
use crate::app::telemetry::LogControl;
use crate::config::{ConfigError, LimitSettings, Settings};

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub apps_added: Vec<u32>,
    pub apps_removed: Vec<u32>,
    pub apps_changed: Vec<u32>,
    /// Instances kicked because their app was removed.
    pub kicked: usize,
    /// Sections that changed but need a restart (kept as they run).
    pub restart_needed: Vec<&'static str>,
}

pub struct Reloader {
    file: Option<PathBuf>,
    running: Mutex<Settings>,
    admin: Arc<Admin>,
    log: LogControl,
}

impl Reloader {
    /// `file` is the `--config` the server started with (the environment is read again too).
    pub fn new(
        file: Option<PathBuf>,
        running: Settings,
        admin: Arc<Admin>,
        log: LogControl,
    ) -> Self {
        Reloader {
            file,
            running: Mutex::new(running),
            admin,
            log,
        }
    }

    /// Reads the configuration again and applies it.
    pub async fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let new = Settings::load(self.file.as_deref())?;
        Ok(self.apply(new).await)
    }

    /// Applies a loaded (valid) configuration.
    pub async fn apply(&self, new: Settings) -> ReloadReport {
        let old = self.running.lock().expect("not poisoned").clone();
        let mut report = ReloadReport::default();
        for (section, same) in [
            ("server", old.server == new.server),
            ("database", old.database == new.database),
            ("registry", old.registry == new.registry),
            ("session", old.session == new.session),
            // Only the throttle's limit applies live.
            (
                "limits",
                LimitSettings {
                    login_failures_per_minute: 0,
                    ..old.limits.clone()
                } == LimitSettings {
                    login_failures_per_minute: 0,
                    ..new.limits.clone()
                },
            ),
        ] {
            if !same {
                tracing::warn!(
                    section,
                    "config reload: this section needs a restart; the running values are kept"
                );
                report.restart_needed.push(section);
            }
        }
        let ids = |s: &Settings| s.apps.iter().map(|a| a.sdkappid).collect::<BTreeSet<u32>>();
        let (before, after) = (ids(&old), ids(&new));
        report.apps_added = after.difference(&before).copied().collect();
        report.apps_removed = before.difference(&after).copied().collect();
        report.apps_changed = new
            .apps
            .iter()
            .filter(|a| {
                old.apps
                    .iter()
                    .find(|o| o.sdkappid == a.sdkappid)
                    .is_some_and(|o| o != *a)
            })
            .map(|a| a.sdkappid)
            .collect();
        let sessions = self.admin.sessions();
        sessions.auth().apps().replace(&new.apps);
        self.admin.load_keys();
        sessions
            .auth()
            .throttle()
            .set_limit(new.limits.login_failures_per_minute);
        self.admin
            .failed_auth()
            .set_limit(new.limits.login_failures_per_minute);
        if let Err(e) = self.log.set_level(&new.log.level) {
            tracing::warn!(error = %e, "config reload: the log level was not applied");
        }
        if let Some(m) = sessions.metrics() {
            report.apps_added.iter().for_each(|id| m.add_app(*id));
        }
        for app in &report.apps_removed {
            report.kicked += sessions.end_app(*app).await;
        }
        tracing::info!(added = ?report.apps_added, removed = ?report.apps_removed, changed = ?report.apps_changed,
            kicked = report.kicked, "config reloaded");
        let mut running = self.running.lock().expect("not poisoned");
        running.apps = new.apps;
        running.limits.login_failures_per_minute = new.limits.login_failures_per_minute;
        running.log = new.log;
        report
    }
}
