//! The application's state: one shared pointer, split with `FromRef` into the part each handler uses (the login
//! service, the admin service, the database, the gateway), so that only the application knows all of them.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::admin::Admin;
use crate::config::Settings;
use crate::gateway::Gateway;
use crate::login::service::Sessions;
use crate::runtime::metrics::Metrics;
use crate::store::Database;

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
    pub gateway: Gateway,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl FromRef<AppState> for Arc<Admin> {
    fn from_ref(state: &AppState) -> Arc<Admin> {
        state.admin.clone()
    }
}

impl FromRef<AppState> for Arc<Sessions> {
    fn from_ref(state: &AppState) -> Arc<Sessions> {
        state.sessions.clone()
    }
}

impl FromRef<AppState> for Database {
    fn from_ref(state: &AppState) -> Database {
        state.db.clone()
    }
}

impl FromRef<AppState> for Gateway {
    fn from_ref(state: &AppState) -> Gateway {
        state.gateway.clone()
    }
}
