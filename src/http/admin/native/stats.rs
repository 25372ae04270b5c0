//! Statistics: instances online by platform, and daily active users.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult};
use crate::admin::{Admin, AdminActor};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OnlineStats {
    total: usize,
    /// Every platform, zero included.
    by_platform: BTreeMap<String, usize>,
}

/// Instances of the app now (connected or within the grace), by platform.
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/stats/online", tag = "stats",
    params(("sdkappid" = u32, Path)),
    responses((status = 200, body = OnlineStats), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn online_stats(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
) -> ApiResult<Json<OnlineStats>> {
    let counts = admin.online_counts(who.sdkappid).await?;
    Ok(Json(OnlineStats {
        total: counts.total,
        by_platform: counts
            .by_platform
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DauQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    from: String,
    /// Last day, `YYYY-MM-DD` (UTC); at most 366 days after `from`.
    to: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DauDay {
    date: String,
    users: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DauStats {
    /// Every day of the range, days without logins included (0).
    days: Vec<DauDay>,
}

/// Daily active users: users with a successful login on each UTC day.
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/stats/dau", tag = "stats",
    params(("sdkappid" = u32, Path), DauQuery),
    responses((status = 200, body = DauStats), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn dau_stats(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<DauQuery>, QueryRejection>,
) -> ApiResult<Json<DauStats>> {
    let Query(q) = query?;
    let days = admin.daily_active(who.sdkappid, &q.from, &q.to).await?;
    Ok(Json(DauStats {
        days: days
            .into_iter()
            .map(|(date, users)| DauDay { date, users })
            .collect(),
    }))
}
