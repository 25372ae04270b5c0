//! `GET /healthz` (the process is alive) and `GET /readyz` (the database and the session registry answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::login::service::Sessions;
use crate::store::Database;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(
    State(db): State<Database>,
    State(sessions): State<Arc<Sessions>>,
) -> (StatusCode, Json<Value>) {
    let (db, registry) = tokio::join!(db.accounts.ping(), sessions.ping_registry());
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness check: database unreachable");
    }
    if let Err(e) = &registry {
        tracing::warn!(error = %e, "readiness check: session registry unreachable");
    }
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = db.is_ok() && registry.is_ok();
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({
            "status": if ready { "ok" } else { "unavailable" },
            "database": word(db.is_ok()),
            "registry": word(registry.is_ok()),
        })),
    )
}
