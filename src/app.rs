//! The application: shared state, the router, and `build` / `run_until_stopped` (zero-to-production style, so
//! tests start the real server on port 0).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::accounts::{self, AccountStore, Accounts};
use crate::apps::Apps;
use crate::auth::Authenticator;
use crate::config::Settings;
use crate::http;

/// Everything a handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub auth: Arc<Authenticator>,
}

impl AppState {
    pub fn accounts(&self) -> &Accounts {
        self.auth.accounts()
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
        let apps = Apps::from_config(&settings.apps);
        let auth = Authenticator::new(
            apps,
            Accounts::new(store),
            settings.limits.login_failures_per_minute,
        );
        let listener = TcpListener::bind(settings.server.listen).await?;
        let state = AppState {
            settings: Arc::new(settings),
            auth: Arc::new(auth),
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

    /// Serves until `shutdown` completes, then stops accepting and drains in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = router(self.state);
        tracing::info!(addr = %self.listener.local_addr()?, "imlogin listening");
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(http::health::healthz))
        .route("/readyz", get(http::health::readyz))
        .with_state(state)
}

/// Completes on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
