//! The app's logged-in instances.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult};
use super::page::{decode_cursor, limit};
use crate::admin::{Admin, AdminActor};
use crate::model::Instance;
use crate::model::Platform;

/// One logged-in instance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    user_id: String,
    /// `android`, `iphone`, `ipad`, `windows`, `mac`, `linux` or `web`.
    platform: String,
    instance_id: String,
    device_id: Option<String>,
    /// `online` (connected) or `disconnected` (within the reconnect grace).
    state: String,
    /// Unix ms.
    login_at: i64,
    /// The client's address at login (behind a trusted proxy: the address the proxy forwarded).
    client_ip: String,
}

impl From<Instance> for InstanceView {
    fn from(i: Instance) -> InstanceView {
        InstanceView {
            state: if i.is_online() {
                "online"
            } else {
                "disconnected"
            }
            .into(),
            platform: i.platform.to_string(),
            user_id: i.user_id.to_string(),
            instance_id: i.instance_id,
            device_id: i.device_id,
            login_at: i.login_at_ms,
            client_ip: i.ip.to_string(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstancesPage {
    instances: Vec<InstanceView>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InstancesQuery {
    /// Only this platform.
    platform: Option<String>,
    cursor: Option<String>,
    /// 1-1000, default 100.
    limit: Option<u32>,
}

/// The app's instances (connected, or disconnected within the grace), in (UserID, instance id) order.
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/instances", tag = "sessions",
    params(("sdkappid" = u32, Path), InstancesQuery),
    responses((status = 200, body = InstancesPage), (status = 400, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn list_instances(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<InstancesQuery>, QueryRejection>,
) -> ApiResult<Json<InstancesPage>> {
    let Query(q) = query?;
    let limit = limit(q.limit)?;
    let platform = q
        .platform
        .as_deref()
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|_| ApiError::invalid(format!("unknown platform {p:?}")))
        })
        .transpose()?;
    let after = decode_cursor(&q.cursor)?;
    let after = after
        .as_deref()
        .map(|c| {
            c.split_once('\n')
                .ok_or_else(|| ApiError::invalid("`cursor` is not one this API gave"))
        })
        .transpose()?;
    let instances = admin
        .instances(who.sdkappid, platform, after, limit as usize)
        .await?;
    let next_cursor = (instances.len() == limit as usize)
        .then(|| {
            instances
                .last()
                .map(|i| B64.encode(format!("{}\n{}", i.user_id, i.instance_id)))
        })
        .flatten();
    Ok(Json(InstancesPage {
        instances: instances.into_iter().map(InstanceView::from).collect(),
        next_cursor,
    }))
}
