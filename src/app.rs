//! The application: shared state, the router, and `build` / `run_until_stopped` (zero-to-production style, so
//! tests start the real server on port 0).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::accounts::{self, AccountStore, Accounts};
use crate::apps::Apps;
use crate::auth::Authenticator;
use crate::config::{RegistryBackend, Settings};
use crate::registry::memory::MemoryRegistry;
use crate::registry::Registry;
use crate::sessions::{SessionTiming, Sessions};
use crate::{gateway, http};

/// Everything a handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub sessions: Arc<Sessions>,
    /// The WebSocket connection tasks, awaited at shutdown (axum's graceful shutdown does not see them).
    pub connections: TaskTracker,
}

impl AppState {
    pub fn accounts(&self) -> &Accounts {
        self.sessions.auth.accounts()
    }
}

/// A built server: its listener is bound, its database migrated.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects the store named by the settings, migrates it and binds `server.listen` (port 0 allowed).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = accounts::connect(&settings.database).await?;
        Self::build_with_store(settings, store).await
    }

    /// Like [`Application::build`] with a store opened by the caller (tests share one across restarts).
    pub async fn build_with_store(
        settings: Settings,
        store: Arc<dyn AccountStore>,
    ) -> anyhow::Result<Application> {
        let registry: Arc<dyn Registry> = match settings.registry.backend {
            RegistryBackend::Memory => Arc::new(MemoryRegistry::new()),
            RegistryBackend::Redis => {
                anyhow::bail!("config key `registry.backend`: \"redis\" (the cluster registry) is not available yet")
            }
        };
        let apps = Apps::from_config(&settings.apps);
        let auth = Arc::new(Authenticator::new(
            apps,
            Accounts::new(store),
            settings.limits.login_failures_per_minute,
        ));
        let timing = SessionTiming {
            reconnect_grace: Duration::from_secs(settings.session.reconnect_grace_secs),
            sig_expiry_notice_secs: settings.session.sig_expiry_notice_secs as i64,
            heartbeat_timeout: Duration::from_secs(settings.session.heartbeat_timeout_secs),
        };
        let sessions = Sessions::new(auth, registry, timing, settings.session.secret.expose());
        sessions.spawn_maintenance();
        let listener = bind(settings.server.listen)?;
        let state = AppState {
            settings: Arc::new(settings),
            sessions,
            connections: TaskTracker::new(),
        };
        Ok(Application { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; then stops accepting, closes every WebSocket with 1012 and waits for
    /// them (at most `server.shutdown_grace_secs`).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let router = router(self.state);
        tracing::info!(addr = %self.listener.local_addr()?, "imlogin listening");
        let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
        let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
        let sessions = state.sessions.clone();
        let serve = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Every WebSocket closes with 1012 (axum's graceful shutdown does not see upgraded ones).
            sessions.hub.shutdown();
            let _ = stopping_tx.send(tokio::time::Instant::now() + grace);
        });
        // Once stopping, the whole shutdown (HTTP requests in flight, WebSockets closing) gets the grace, no more.
        let deadline = async {
            match stopping.await {
                Ok(deadline) => tokio::time::sleep_until(deadline).await,
                Err(_) => std::future::pending().await,
            }
        };
        let drained = async {
            let served = serve.await;
            state.sessions.hub.shutdown();
            state.connections.close();
            state.connections.wait().await;
            served
        };
        tokio::select! {
            served = drained => served,
            _ = deadline => {
                tracing::warn!("connections still open after the shutdown grace; stopping anyway");
                Ok(())
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(http::health::healthz))
        .route("/readyz", get(http::health::readyz))
        .route("/v1/ws", get(gateway::upgrade))
        .route("/v1/login", post(http::client::login))
        .route("/v1/session", get(http::client::session))
        .route("/v1/logout", post(http::client::logout))
        .with_state(state)
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

/// Completes on SIGTERM or ctrl-c (SIGINT). The handlers are installed when this is called, not when the future
/// is first polled (axum polls it from a task of its own): a SIGTERM that arrives while the server starts is
/// still a clean shutdown.
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
