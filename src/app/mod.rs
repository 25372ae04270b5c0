//! The server assembly: the one place that knows every part. [`Application::build`] connects the store, starts
//! the background workers and binds the listener (port 0 allowed, so tests start the real server);
//! [`Application::run_until_stopped`] serves until shutdown and then stops everything in order.

mod cluster;
mod process;
pub mod reload;
mod routes;
mod state;
pub mod telemetry;

pub use process::{bind, raise_open_files_limit, shutdown_signal, tune_memory};
pub use routes::router;
pub use state::AppState;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::accounts::dau::Dau;
use crate::accounts::Accounts;
use crate::admin::Admin;
use crate::config::apps::SdkApps;
use crate::config::Settings;
use crate::gateway::native::connection::Limits;
use crate::gateway::Gateway;
use crate::http::serve::{serve, RefuseAtAccept, ServeOptions};
use crate::limits::per_ip::{PerIp, RatePerIp};
use crate::login::auth::Authenticator;
use crate::login::service::{Parts, SessionTiming, Sessions};
use crate::registry::policies::Policies;
use crate::registry::users::Users;
use crate::runtime::clock::Clock;
use crate::runtime::metrics::Metrics;
use crate::runtime::workers::Workers;
use crate::store::Database;
use crate::webhooks::delivery::Delivery;
use crate::webhooks::outbox::Outbox;
use routes::metrics_router;
use state::Shared;

/// A built server: its listener is bound, its database migrated, its workers running.
pub struct Application {
    listener: TcpListener,
    /// `server.metrics_listen`, when metrics are on.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    workers: Workers,
}

impl Application {
    /// Connects the store named by the settings, migrates it and binds `server.listen` (port 0 allowed).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = Database::connect(&settings.database).await?;
        Self::build_with(settings, db, Clock::system()).await
    }

    /// Like [`Application::build`] with a database opened by the caller (tests share one across restarts) and
    /// a clock (tests may run it on tokio's paused clock).
    pub async fn build_with(
        settings: Settings,
        db: Database,
        clock: Clock,
    ) -> anyhow::Result<Application> {
        let mut workers = Workers::new();
        // Each user's record, shared by the in-memory registry, the login-state cache and the daily-active mark.
        let users = Users::new(clock.clone());
        let (node, registry, bus, incoming) =
            cluster::cluster(&settings, &clock, &users, &mut workers).await?;
        let apps = SdkApps::from_config(&settings.apps);
        let policies = Policies::load(db.policies.clone()).await?;
        let metrics = settings.server.metrics_enabled.then(|| {
            let m = Metrics::new();
            settings.apps.iter().for_each(|a| m.add_app(a.sdkappid));
            Arc::new(m)
        });
        // Started in the order of what feeds what, so they stop (in reverse) only once nothing feeds them:
        // the bus ← webhook delivery ← the outbox writer ← the daily-active writer ← registrations ← the
        // reaper, the heartbeat and what the bus brings.
        // The outbox names its writer per process (not per cluster node number, which a restart reuses).
        let node_name = format!("{:016x}", rand::random::<u64>());
        let (outbox, outbox_writer, written) = Outbox::new(db.outbox.clone(), node_name.clone());
        let delivery = Delivery::new(
            db.outbox.clone(),
            apps.clone(),
            clock.clone(),
            written,
            node_name,
            metrics.clone(),
        )
        .stopping_by(workers.deadline());
        workers.start("webhook delivery", |stop| delivery.run(stop));
        workers.start("webhook outbox writer", |stop| outbox_writer.run(stop));
        let (dau, dau_worker) = Dau::new(db.accounts.clone(), users.clone());
        let dau_worker = dau_worker.counting(metrics.clone());
        workers.start("daily-active writer", |stop| dau_worker.run(stop));
        let (accounts, registrations) = Accounts::new(db.accounts.clone(), users.clone());
        workers.start("registrations", |stop| registrations.run(stop));
        workers.start("user records sweep", |stop| users.sweep_until(stop));
        let auth = Arc::new(Authenticator::new(
            apps,
            accounts,
            settings.limits.login_failures_per_minute,
            clock.clone(),
        ));
        let s = &settings.session;
        let timing = SessionTiming {
            reconnect_grace: Duration::from_secs(s.reconnect_grace_secs),
            sig_expiry_notice_secs: s.sig_expiry_notice_secs as i64,
            heartbeat_timeout: Duration::from_secs(s.heartbeat_timeout_secs),
        };
        let (sessions, ends) = Sessions::new(Parts {
            auth,
            registry,
            policies,
            dau,
            outbox,
            timing,
            session_secret: s.secret.expose().to_owned(),
            clock,
            metrics: metrics.clone(),
            node,
            bus,
            logins_in_progress_per_app: settings.limits.logins_in_progress_per_app,
        });
        workers.start("reaper", |stop| sessions.clone().reap_until(stop));
        if let Some(incoming) = incoming {
            // Stopped after the connection ends, so that those the registry could not take are tried once more.
            workers.start("unsettled writes", |stop| {
                crate::login::settle::settle_until(sessions.clone(), stop)
            });
            workers.start("cluster heartbeat", |stop| {
                sessions.clone().heartbeat_until(stop)
            });
            workers.start("bus follower", |stop| {
                sessions.clone().follow_bus(incoming, stop)
            });
        }
        // Started last, so stopped first: the ends of the connections closed at shutdown are written before the
        // node leaves the cluster.
        workers.start("connection ends", |stop| ends.run(stop));
        let admin = Arc::new(Admin::new(sessions.clone(), db.clone()));
        let listener = bind(settings.server.listen)?;
        let limits = &settings.limits;
        let gateway = Gateway::new(
            sessions.clone(),
            Limits {
                heartbeat: timing.heartbeat_timeout,
                write_timeout: Duration::from_secs(settings.server.write_timeout_secs),
                max_frame: settings.server.max_frame_bytes,
                login_timeout: Duration::from_secs(limits.login_timeout_secs),
                frames_per_second: limits.frames_per_second,
            },
            PerIp::new(limits.connections_per_ip),
            RatePerIp::new(limits.new_connections_per_ip_per_second),
            RatePerIp::new(limits.abusive_closes_per_ip_per_second),
        );
        let metrics_listener = match &metrics {
            Some(_) => Some(bind(settings.server.metrics_listen)?),
            None => None,
        };
        let state = AppState::new(Shared {
            metrics,
            settings: Arc::new(settings),
            sessions,
            admin,
            db,
            gateway,
        });
        Ok(Application {
            listener,
            metrics_listener,
            state,
            workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Re-reads `file` (and the environment) at every SIGHUP and applies it, until the server stops (a worker
    /// of the application's).
    pub fn reload_on_sighup(
        &mut self,
        file: Option<std::path::PathBuf>,
        log: crate::app::telemetry::LogControl,
    ) {
        let reloader = Arc::new(crate::app::reload::Reloader::new(
            file,
            (*self.state.settings).clone(),
            self.state.admin.clone(),
            log,
        ));
        self.workers
            .start("SIGHUP reload", process::reload_on_sighup(reloader));
    }

    /// Where `/metrics` is served, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes. Then, within `server.shutdown_grace_secs` in all: stops accepting,
    /// closes every WebSocket with 1012, lets HTTP requests in flight finish, and stops the workers in order
    /// (queued registrations and daily-active rows are written; webhook attempts that fall due within the grace
    /// are made).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            metrics_listener,
            state,
            workers,
        } = self;
        let metrics_addr = metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let metrics_stop = tokio_util::sync::CancellationToken::new();
        let metrics_task = metrics_listener.map(|l| {
            let router = metrics_router(state.clone());
            let options = ServeOptions {
                header_read_timeout: Duration::from_secs(10),
                ..Default::default()
            };
            let stopped = metrics_stop.clone();
            tokio::spawn(serve(l, router, options, async move {
                stopped.cancelled().await
            }))
        });
        tracing::info!(addr = %listener.local_addr()?, metrics_addr, "imlogin listening");
        let settings = state.settings.clone();
        let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
        let options = ServeOptions {
            header_read_timeout: Duration::from_secs(settings.server.header_read_timeout_secs),
            trusted_proxies: settings
                .server
                .trusted_proxy_nets()
                .expect("validated at load")
                .into(),
            // A tripped address with no allowance left (sockets closed for abuse) gets nothing more for now: not
            // even an HTTP 429, whose exchange costs more than the refusal is worth under a flood.
            refuse_at_accept: Some(RefuseAtAccept(Arc::new(state.gateway.refuses()))),
        };
        let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
        let sessions = state.sessions.clone();
        let connections = state.gateway.connections().clone();
        let stop_by = workers.deadline();
        let http = serve(listener, router(state), options, async move {
            shutdown.await;
            tracing::info!("shutting down");
            let at = tokio::time::Instant::now() + grace;
            stop_by.set(at);
            let _ = stopping_tx.send(at);
            // Every WebSocket closes with 1012 (the HTTP server does not see upgraded ones).
            sessions.hub().shutdown();
        });
        let drained = async {
            http.await;
            connections.close();
            connections.wait().await;
            workers.stop().await;
        };
        tokio::pin!(drained);
        tokio::select! {
            _ = &mut drained => {}
            deadline = stopping => match deadline {
                Ok(deadline) => {
                    if tokio::time::timeout_at(deadline, drained).await.is_err() {
                        tracing::warn!("shutdown did not finish within server.shutdown_grace_secs; stopping anyway");
                    }
                }
                Err(_) => drained.await,
            }
        }
        // Scraped to the end: it stops serving once everything else has stopped.
        metrics_stop.cancel();
        if let Some(task) = metrics_task {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        Ok(())
    }
}
