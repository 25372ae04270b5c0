//! The app's multi-terminal policy: read, set by an admin, or reset to the config file's.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use crate::admin::{Admin, AdminActor};
use crate::model::{Mode, Policy};

/// A multi-terminal policy (docs/protocol.md §5).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// `single`, `dual`, `triple` or `multi`.
    #[schema(value_type = String)]
    mode: Mode,
    /// 1-10.
    web_instances: u8,
    /// 1-3.
    instances_per_platform: u8,
}

impl From<Policy> for PolicyBody {
    fn from(p: Policy) -> PolicyBody {
        PolicyBody {
            mode: p.mode,
            web_instances: p.web_instances,
            instances_per_platform: p.instances_per_platform,
        }
    }
}

fn policy_now(admin: &Admin, sdkappid: u32) -> ApiResult<Json<PolicyBody>> {
    let (policy, _) = admin
        .policy(sdkappid)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 60009, "no such app"))?;
    Ok(Json(policy.into()))
}

/// The policy in force: an admin's, or the config file's.
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/policy", tag = "policy",
    params(("sdkappid" = u32, Path)),
    responses((status = 200, body = PolicyBody), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn get_policy(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
) -> ApiResult<Json<PolicyBody>> {
    policy_now(&admin, who.sdkappid)
}

/// Sets the policy: persisted, it wins over the config file's (also after a restart) and applies to the next
/// logins at once.
#[utoipa::path(put, path = "/admin/v1/apps/{sdkappid}/policy", tag = "policy",
    params(("sdkappid" = u32, Path)), request_body = PolicyBody,
    responses((status = 200, body = PolicyBody), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn put_policy(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    body: Result<Json<PolicyBody>, JsonRejection>,
) -> ApiResult<Json<PolicyBody>> {
    let Json(p) = body?;
    let policy = Policy {
        mode: p.mode,
        web_instances: p.web_instances,
        instances_per_platform: p.instances_per_platform,
    };
    admin.set_policy(&who, policy).await?;
    policy_now(&admin, who.sdkappid)
}

/// Goes back to the config file's policy; answers the policy now in force.
#[utoipa::path(delete, path = "/admin/v1/apps/{sdkappid}/policy", tag = "policy",
    params(("sdkappid" = u32, Path)),
    responses((status = 200, body = PolicyBody), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn delete_policy(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
) -> ApiResult<Json<PolicyBody>> {
    admin.clear_policy(&who).await?;
    policy_now(&admin, who.sdkappid)
}
