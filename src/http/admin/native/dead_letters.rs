//! Webhook dead letters: events given up on, listed, retried or dropped.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use super::page::{limit, PageQuery};
use crate::admin::{Admin, AdminActor};

/// A webhook event that was given up on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    event_id: String,
    user_id: String,
    seq: u64,
    attempts: i32,
    last_error: String,
    /// The event's JSON body.
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLettersPage {
    events: Vec<DeadLetter>,
    next_cursor: Option<String>,
}

/// Webhook events given up on after `max_attempts`, oldest first.
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/webhooks/dead_letters", tag = "webhooks",
    params(("sdkappid" = u32, Path), PageQuery),
    responses((status = 200, body = DeadLettersPage), (status = 400, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn list_dead_letters(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<DeadLettersPage>> {
    let Query(q) = query?;
    let limit = limit(q.limit)?;
    let after = match &q.cursor {
        None => 0,
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::invalid("`cursor` is not one this API gave"))?,
    };
    let events = admin.dead_letters(who.sdkappid, after, limit).await?;
    let next_cursor = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(DeadLettersPage {
        events: events
            .into_iter()
            .map(|d| {
                let e = d.letter.event;
                DeadLetter {
                    body: serde_json::from_str(e.body.get()).unwrap_or_default(),
                    event_id: e.event_id,
                    user_id: e.user_id,
                    seq: e.seq,
                    attempts: d.letter.attempts,
                    last_error: d.letter.last_error,
                }
            })
            .collect(),
        next_cursor,
    }))
}

/// Puts a dead letter back in the outbox, in its user's order.
#[utoipa::path(post, path = "/admin/v1/apps/{sdkappid}/webhooks/dead_letters/{event_id}/retry", tag = "webhooks",
    params(("sdkappid" = u32, Path), ("event_id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn retry_dead_letter(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, event_id)): Path<(u32, String)>,
) -> ApiResult<StatusCode> {
    admin.retry_dead_letter(&who, &event_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets a dead letter.
#[utoipa::path(delete, path = "/admin/v1/apps/{sdkappid}/webhooks/dead_letters/{event_id}", tag = "webhooks",
    params(("sdkappid" = u32, Path), ("event_id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn drop_dead_letter(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, event_id)): Path<(u32, String)>,
) -> ApiResult<StatusCode> {
    admin.drop_dead_letter(&who, &event_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
