//! The routes: each edge's handlers, with the part of the state they use (see [`super::state`]), and the
//! internal listener's `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use super::state::AppState;
use crate::{gateway, http};

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
        .with_state(state.clone())
        .merge(http::web::routes(state.sessions.clone()))
        .merge(native.layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)))
        .merge(rest)
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            http::body_deadline,
        ))
        .layer(axum::middleware::from_fn(http::request_id))
}

/// The internal listener's router: `GET /metrics` in Prometheus text.
pub(super) fn metrics_router(state: AppState) -> Router {
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
                sampled.ws_connections.set(s.hub().len() as i64);
                sampled.dau_queue.set(s.dau().queued() as i64);
                sampled.webhook_queue.set(s.webhooks_queued() as i64);
                let (size, idle) = state.db.accounts.pool_status();
                sampled.db_pool_connections.set(i64::from(size));
                sampled.db_pool_idle.set(idle as i64);
                m.render()
            }
        }),
    )
}
