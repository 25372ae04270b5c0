//! The server assembly: the one place that knows every part. [`Application::build`] connects the store, starts
//! the background workers and binds the listener (port 0 allowed, so tests start the real server);
//! [`Application::run_until_stopped`] serves until shutdown and then stops everything in order.

pub mod reload;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::accounts::dau::Dau;
use crate::accounts::Accounts;
use crate::admin::Admin;
use crate::config::apps::SdkApps;
use crate::config::{RegistryBackend, Settings};
use crate::gateway::native::connection::Limits;
use crate::http::serve::{serve, RefuseAtAccept, ServeOptions};
use crate::login::auth::Authenticator;
use crate::login::service::{Parts, SessionTiming, Sessions};
use crate::push::bus::{Bus, LocalBus};
use crate::registry::memory::MemoryRegistry;
use crate::registry::policies::Policies;
use crate::registry::redis::RedisRegistry;
use crate::registry::users::Users;
use crate::registry::Registry;
use crate::runtime::clock::Clock;
use crate::runtime::metrics::Metrics;
use crate::runtime::workers::Workers;
use crate::store::Database;
use crate::webhooks::delivery::Delivery;
use crate::webhooks::outbox::Outbox;
use crate::{gateway, http};

/// Everything a handler may need: one shared pointer, so that a request (whose handler clones the state, as
/// the router does) copies one `Arc` instead of each of the parts.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub settings: Arc<Settings>,
    pub metrics: Option<Arc<Metrics>>,
    pub sessions: Arc<Sessions>,
    pub admin: Arc<Admin>,
    pub db: Database,
    /// The WebSocket connection tasks, awaited at shutdown (the HTTP server does not see upgraded ones).
    pub connections: TaskTracker,
    /// Shared: each connection's task keeps a pointer, not a copy, for its whole life.
    pub connection_limits: Arc<Limits>,
    /// Open WebSockets per client (`limits.connections_per_ip`).
    pub per_ip: Arc<crate::limits::per_ip::PerIp>,
    /// New WebSockets per client a second (`limits.new_connections_per_ip_per_second`).
    pub new_per_ip: Arc<crate::limits::per_ip::RatePerIp>,
    /// WebSockets closed for abuse per client a second (`limits.abusive_closes_per_ip_per_second`).
    pub abusive_per_ip: Arc<crate::limits::per_ip::RatePerIp>,
}

impl AppState {
    pub fn accounts(&self) -> &Accounts {
        self.sessions.auth.accounts()
    }
}

impl axum::extract::FromRef<AppState> for Arc<Admin> {
    fn from_ref(state: &AppState) -> Arc<Admin> {
        state.admin.clone()
    }
}

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
            cluster(&settings, &clock, &users, &mut workers).await?;
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
        let sessions = Sessions::new(Parts {
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
            // Started last, so stopped first: the ends of the connections closed at shutdown are written before
            // the node leaves the cluster.
            workers.start("connection ends", |stop| {
                sessions.clone().detach_until(stop)
            });
        }
        let admin = Arc::new(Admin::new(sessions.clone(), db.clone()));
        let listener = bind(settings.server.listen)?;
        let connection_limits = Arc::new(Limits {
            heartbeat: timing.heartbeat_timeout,
            write_timeout: Duration::from_secs(settings.server.write_timeout_secs),
            max_frame: settings.server.max_frame_bytes,
            login_timeout: Duration::from_secs(settings.limits.login_timeout_secs),
            frames_per_second: settings.limits.frames_per_second,
        });
        let metrics_listener = match &metrics {
            Some(_) => Some(bind(settings.server.metrics_listen)?),
            None => None,
        };
        let per_ip = Arc::new(crate::limits::per_ip::PerIp::new(
            settings.limits.connections_per_ip,
        ));
        let new_per_ip = Arc::new(crate::limits::per_ip::RatePerIp::new(
            settings.limits.new_connections_per_ip_per_second,
        ));
        let abusive_per_ip = Arc::new(crate::limits::per_ip::RatePerIp::new(
            settings.limits.abusive_closes_per_ip_per_second,
        ));
        let state = AppState(Arc::new(Shared {
            per_ip,
            new_per_ip,
            abusive_per_ip,
            metrics,
            settings: Arc::new(settings),
            sessions,
            admin,
            db,
            connections: TaskTracker::new(),
            connection_limits,
        }));
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

    /// What re-reads `file` (and the environment) and applies it, for SIGHUP.
    pub fn reloader(
        &self,
        file: Option<std::path::PathBuf>,
        log: crate::app::telemetry::LogControl,
    ) -> Arc<crate::app::reload::Reloader> {
        Arc::new(crate::app::reload::Reloader::new(
            file,
            (*self.state.settings).clone(),
            self.state.admin.clone(),
            log,
        ))
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
        let metrics_task = metrics_listener.map(|l| {
            let router = metrics_router(state.clone());
            let options = ServeOptions {
                header_read_timeout: Duration::from_secs(10),
                ..Default::default()
            };
            tokio::spawn(serve(l, router, options, std::future::pending()))
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
            refuse_at_accept: {
                let abusive = state.abusive_per_ip.clone();
                Some(RefuseAtAccept(Arc::new(move |ip| abusive.exhausted(ip))))
            },
        };
        let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
        let sessions = state.sessions.clone();
        let connections = state.connections.clone();
        let stop_by = workers.deadline();
        let http = serve(listener, router(state), options, async move {
            shutdown.await;
            tracing::info!("shutting down");
            let at = tokio::time::Instant::now() + grace;
            stop_by.set(at);
            let _ = stopping_tx.send(at);
            // Every WebSocket closes with 1012 (the HTTP server does not see upgraded ones).
            sessions.hub.shutdown();
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
        if let Some(task) = metrics_task {
            task.abort();
        }
        Ok(())
    }
}

/// The largest body of a client HTTP request: a login with a long JWT fits in a few KiB.
pub const CLIENT_BODY_LIMIT: usize = 8 * 1024;

/// The largest body of a native admin call (`/v4` reads its own, see `http::admin::v4::V4_BODY_LIMIT`).
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let body_timeout = Duration::from_secs(state.settings.limits.body_read_timeout_secs);
    // The login reads its body itself, with the limit (and drains what exceeds it).
    let client = Router::new()
        .route("/v1/login", post(http::client::login))
        .route("/v1/session", get(http::client::session))
        .route("/v1/logout", post(http::client::logout))
        .layer(DefaultBodyLimit::disable());
    let v4 = http::admin::v4::V4 {
        admin: state.admin.clone(),
        limits: Arc::default(),
    };
    let rest = Router::new()
        .route(
            "/v4/{service}/{command}",
            post(http::admin::v4::call).get(http::admin::v4::call),
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(v4);
    let (native, openapi) = http::admin::native::routes(state.admin.clone());
    let openapi = Arc::new(
        openapi
            .to_pretty_json()
            .expect("the OpenAPI document serializes"),
    );
    Router::new()
        .route("/healthz", get(http::health::healthz))
        .route("/readyz", get(http::health::readyz))
        .route("/v1/ws", get(gateway::upgrade))
        .route("/tim/binfo", get(gateway::websdk::binfo))
        .route("/tim/info", get(gateway::websdk::info))
        .route(
            "/admin/v1/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    (*openapi).clone(),
                )
            }),
        )
        .merge(client)
        .merge(http::web::routes())
        .merge(native.layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)))
        .with_state(state)
        .merge(rest)
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            http::body_deadline,
        ))
        .layer(axum::middleware::from_fn(http::request_id))
}

/// The internal listener's router: `GET /metrics` in Prometheus text.
fn metrics_router(state: AppState) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let state = state.clone();
            async move {
                let Some(m) = &state.metrics else {
                    return String::new();
                };
                let s = &state.sessions;
                let sampled = &m.sampled;
                sampled.ws_connections.set(s.hub.len() as i64);
                sampled.dau_queue.set(s.dau.queued() as i64);
                sampled.webhook_queue.set(s.outbox.queued() as i64);
                let (size, idle) = state.db.accounts.pool_status();
                sampled.db_pool_connections.set(i64::from(size));
                sampled.db_pool_idle.set(idle as i64);
                m.render()
            }
        }),
    )
}

/// How long a Redis request may take before the login that made it answers 70169.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// This node's number, and the registry and bus of `registry.backend`: in memory (one node), or in Redis (a
/// cluster, where nodes are numbered by Redis; the bus's task is started into `workers`, and what it brings is
/// returned for the bus follower).
async fn cluster(
    settings: &Settings,
    clock: &Clock,
    users: &Arc<Users>,
    workers: &mut Workers,
) -> anyhow::Result<(
    u64,
    Arc<dyn Registry>,
    Arc<dyn Bus>,
    Option<tokio::sync::mpsc::Receiver<crate::push::bus::Incoming>>,
)> {
    let r = &settings.registry;
    match r.backend {
        RegistryBackend::Memory => Ok((
            1,
            Arc::new(MemoryRegistry::new(users.clone())),
            Arc::new(LocalBus),
            None,
        )),
        RegistryBackend::Redis => {
            let url = r.redis_url.expose();
            let unreachable = |e: crate::registry::RegistryError| {
                anyhow::anyhow!("Redis (registry.redis_url): {e}")
            };
            let conn = crate::registry::redis::connect(url, REDIS_TIMEOUT)
                .await
                .map_err(unreachable)?;
            let node = crate::registry::redis::node_number(&conn, &r.namespace)
                .await
                .map_err(unreachable)?;
            let (bus, worker, incoming) = crate::push::redis_bus::connect(
                url,
                &r.namespace,
                node,
                conn.clone(),
                REDIS_TIMEOUT,
            )
            .await
            .map_err(unreachable)?;
            workers.start("bus", |stop| worker.run(stop));
            let registry = RedisRegistry::new(
                conn,
                &r.namespace,
                node,
                Duration::from_secs(settings.session.reconnect_grace_secs),
                Duration::from_secs(r.node_timeout_secs),
                clock.clone(),
            );
            // Known to the cluster before the first login.
            registry.heartbeat().await.map_err(unreachable)?;
            Ok((node, Arc::new(registry), bus, Some(incoming)))
        }
    }
}

/// Connections the kernel may queue for `accept` (capped by `net.core.somaxconn`). The usual default (128)
/// overflows during login storms, such as every client reconnecting after a restart, and each overflow costs a
/// client a 1 s SYN retry.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (a restart can rebind at once).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Turns transparent huge pages off for this process (Linux), before anything is allocated: the allocator asks
/// for huge pages on its arenas, and an idle connection's few small allocations, spread over them, would keep
/// whole 2 MiB pages resident (measured: 8.3 -> 7.7 KB per idle session, logins/s unchanged;
/// docs/benchmarks.md). Memory that idle sessions do not use is worth more here than fewer TLB misses.
pub fn tune_memory() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Not fatal: the process only holds more memory.
        eprintln!("could not turn transparent huge pages off: {e}");
    }
}

/// Raises the open-files limit to the hard limit (each connection is a file) and logs what that allows.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(
            open_files = n,
            approx_connections = n.saturating_sub(64),
            "open-files limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
}

/// Re-reads the configuration at every SIGHUP, for as long as the process runs.
pub fn reload_on_sighup(reloader: Arc<crate::app::reload::Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: no live reload");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reloader.reload().await {
                    Ok(report) => {
                        tracing::info!(restart_needed = ?report.restart_needed, "SIGHUP: configuration reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: the configuration was refused; the running one is kept")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// Completes on SIGTERM or ctrl-c (SIGINT). The handlers are installed when this is called, not when the future
/// is first polled: a SIGTERM that arrives while the server starts is still a clean shutdown.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => std::future::pending::<()>().await,
            }
            tracing::info!("shutdown signal received");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}
