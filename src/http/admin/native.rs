//! The native admin API under `/admin/v1/apps/{sdkappid}` (PROTOCOL §7): JSON, proper HTTP statuses, one app's
//! admin API key as a bearer token. Every route is registered together with its OpenAPI operation (utoipa), so
//! the document served at `/admin/v1/openapi.json` cannot drift from the routes, and every route sits behind
//! the same key check.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::user_query as by_query;
use crate::accounts::{Account, Profile};
use crate::admin::{Admin, AdminActor, AdminError};
use crate::http::serve::ClientIp;
use crate::model::Instance;
use crate::model::Platform;
use crate::model::{Mode, Policy};

/// An error: its HTTP status, and a body `{code, message}` with a code of the protocol's table.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// The error code (docs/admin.md lists them).
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, 70402, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::Unavailable(cause) => {
                tracing::warn!(%cause, "admin call failed: unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    70169,
                    "database or registry unreachable; retry",
                )
            }
            AdminError::NoAccount => ApiError::new(StatusCode::NOT_FOUND, 70107, "no such account"),
            AdminError::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, 60009, format!("no such {what}"))
            }
            AdminError::Invalid(why) => ApiError::invalid(why),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            r.status()
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, 70402, format!("the body: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::invalid(format!("the query string: {}", r.body_text()))
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// The key check in front of every route of an app: a missing or unknown key is 401, another app's key 403.
pub async fn require_app_key(
    State(admin): State<Arc<Admin>>,
    ClientIp(ip): ClientIp,
    mut request: Request,
    next: Next,
) -> Response {
    let sdkappid = request
        .uri()
        .path()
        .strip_prefix("/admin/v1/apps/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse::<u32>().ok());
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(owner) = key.and_then(|k| admin.app_of_key(k)) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            70403,
            "Authorization: Bearer <the app's admin_api_key> is required",
        )
        .into_response();
    };
    match sdkappid {
        Some(app) if app == owner => {}
        _ => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                70403,
                "this key is not the key of that app",
            )
            .into_response()
        }
    }
    request.extensions_mut().insert(AdminActor {
        sdkappid: owner,
        admin: "admin_api_key".into(),
        ip,
    });
    next.run(request).await
}

/// An account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    user_id: String,
    nick: String,
    face_url: String,
    /// Unix seconds.
    created_at: i64,
    disabled: bool,
}

impl From<Account> for User {
    fn from(a: Account) -> User {
        User {
            user_id: a.user_id,
            nick: a.nick,
            face_url: a.face_url,
            created_at: a.created_at,
            disabled: a.disabled,
        }
    }
}

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
            user_id: i.user_id,
            instance_id: i.instance_id,
            device_id: i.device_id,
            login_at: i.login_at_ms,
            client_ip: i.ip.to_string(),
        }
    }
}

/// An account with its instances.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    user: User,
    instances: Vec<InstanceView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsersPage {
    users: Vec<User>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1-1000, default 100.
    limit: Option<u32>,
}

fn limit(l: Option<u32>) -> ApiResult<u32> {
    match l.unwrap_or(100) {
        l @ 1..=1000 => Ok(l),
        _ => Err(ApiError::invalid("`limit` must be between 1 and 1000")),
    }
}

fn decode_cursor(cursor: &Option<String>) -> ApiResult<Option<String>> {
    cursor
        .as_deref()
        .map(|c| {
            B64.decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid("`cursor` is not one this API gave"))
        })
        .transpose()
}

/// Accounts in UserID order (bytewise), a page at a time.
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/users", tag = "accounts",
    params(("sdkappid" = u32, Path), PageQuery),
    responses((status = 200, body = UsersPage), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn list_users(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<UsersPage>> {
    let Query(q) = query?;
    let limit = limit(q.limit)?;
    // A user list's cursor is a UserID: anything else (a NUL, which PostgreSQL cannot compare as text) is not one
    // this API gave.
    let after = decode_cursor(&q.cursor)?
        .map(|u| match crate::model::is_valid_user_id(&u) {
            true => Ok(u),
            false => Err(ApiError::invalid("`cursor` is not one this API gave")),
        })
        .transpose()?;
    let users = admin
        .accounts(who.sdkappid, after.as_deref(), limit)
        .await?;
    let next_cursor = (users.len() == limit as usize)
        .then(|| users.last().map(|u| B64.encode(&u.user_id)))
        .flatten();
    Ok(Json(UsersPage {
        users: users.into_iter().map(User::from).collect(),
        next_cursor,
    }))
}

/// An account and its instances.
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/users/{user_id}", tag = "accounts",
    params(("sdkappid" = u32, Path), ("user_id" = String, Path)),
    responses((status = 200, body = UserDetail), (status = 404, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn get_user(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, user_id)): Path<(u32, String)>,
) -> ApiResult<Json<UserDetail>> {
    user_detail(&admin, &who, user_id).await
}

/// What `GET /users/{user_id}` and `GET /user?user_id=` answer.
pub(super) async fn user_detail(
    admin: &Admin,
    who: &AdminActor,
    user_id: String,
) -> ApiResult<Json<UserDetail>> {
    let account = admin.account(who.sdkappid, &user_id).await?;
    let online = admin.online(who.sdkappid, &[user_id]).await?;
    let instances = online
        .into_iter()
        .flat_map(|u| u.instances)
        .map(InstanceView::from)
        .collect();
    Ok(Json(UserDetail {
        user: account.into(),
        instances,
    }))
}

/// Profile fields to set; absent ones keep their value.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ProfileBody {
    nick: Option<String>,
    face_url: Option<String>,
}

/// Creates the account, or updates its profile.
#[utoipa::path(put, path = "/admin/v1/apps/{sdkappid}/users/{user_id}", tag = "accounts",
    params(("sdkappid" = u32, Path), ("user_id" = String, Path)), request_body = ProfileBody,
    responses((status = 200, body = User), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn put_user(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, user_id)): Path<(u32, String)>,
    body: Result<Json<ProfileBody>, JsonRejection>,
) -> ApiResult<Json<User>> {
    set_profile(&admin, &who, &user_id, body).await
}

/// What `PUT /users/{user_id}` and `PUT /user?user_id=` do.
pub(super) async fn set_profile(
    admin: &Admin,
    who: &AdminActor,
    user_id: &str,
    body: Result<Json<ProfileBody>, JsonRejection>,
) -> ApiResult<Json<User>> {
    let Json(p) = body?;
    let profile = Profile {
        nick: p.nick.as_deref(),
        face_url: p.face_url.as_deref(),
    };
    Ok(Json(admin.import(who, user_id, profile).await?.into()))
}

/// Deletes the account; its live instances are kicked with `account_deleted`.
#[utoipa::path(delete, path = "/admin/v1/apps/{sdkappid}/users/{user_id}", tag = "accounts",
    params(("sdkappid" = u32, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn delete_user(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, user_id)): Path<(u32, String)>,
) -> ApiResult<StatusCode> {
    admin.delete(&who, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables the account: its logins answer 70051, its live instances are kicked with `account_disabled`.
#[utoipa::path(post, path = "/admin/v1/apps/{sdkappid}/users/{user_id}/disable", tag = "accounts",
    params(("sdkappid" = u32, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn disable_user(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, user_id)): Path<(u32, String)>,
) -> ApiResult<StatusCode> {
    admin.set_disabled(&who, &user_id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a disabled account.
#[utoipa::path(post, path = "/admin/v1/apps/{sdkappid}/users/{user_id}/enable", tag = "accounts",
    params(("sdkappid" = u32, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn enable_user(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, user_id)): Path<(u32, String)>,
) -> ApiResult<StatusCode> {
    admin.set_disabled(&who, &user_id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which instances to kick; with `revoke_sigs`, every ticket issued up to now stops working too.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct KickBody {
    /// One instance; absent: all of the user's.
    instance_id: Option<String>,
    #[serde(default)]
    revoke_sigs: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Kicked {
    kicked: usize,
}

/// Kicks one instance of the user, or all (`admin_kick`; 70052 to the clients when tickets are revoked).
#[utoipa::path(post, path = "/admin/v1/apps/{sdkappid}/users/{user_id}/kick", tag = "sessions",
    params(("sdkappid" = u32, Path), ("user_id" = String, Path)), request_body = KickBody,
    responses((status = 200, body = Kicked), (status = 404, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn kick_user(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    Path((_, user_id)): Path<(u32, String)>,
    body: Result<Json<KickBody>, JsonRejection>,
) -> ApiResult<Json<Kicked>> {
    kick(&admin, &who, &user_id, body).await
}

/// What `POST /users/{user_id}/kick` and `POST /user/kick?user_id=` do.
pub(super) async fn kick(
    admin: &Admin,
    who: &AdminActor,
    user_id: &str,
    body: Result<Json<KickBody>, JsonRejection>,
) -> ApiResult<Json<Kicked>> {
    let body = match body {
        Ok(Json(b)) => b,
        // An empty body kicks every instance.
        Err(JsonRejection::MissingJsonContentType(_)) => KickBody::default(),
        Err(e) => return Err(e.into()),
    };
    let kicked = admin
        .kick(who, user_id, body.instance_id.as_deref(), body.revoke_sigs)
        .await?;
    Ok(Json(Kicked { kicked }))
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

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The app's `admin_api_key` from the configuration."))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "imlogin native admin API", description = "Accounts, sessions, statistics, policy and webhook \
        dead letters of one app, with that app's admin API key. See docs/admin.md."),
    modifiers(&BearerKey),
    components(schemas(ApiError))
)]
struct Doc;

/// The native admin routes, each behind the key check, and the OpenAPI document that describes them.
/// The native API's routes, with the admin service as their state, and the OpenAPI document they make.
pub fn routes(admin: Arc<Admin>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::<Arc<Admin>>::with_openapi(Doc::openapi())
        .routes(routes!(list_users))
        .routes(routes!(get_user, put_user, delete_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(kick_user))
        // The same user routes with the UserID in the query string, for `.` and `..` (see user_query).
        .routes(routes!(
            by_query::get_user_by_query,
            by_query::put_user_by_query,
            by_query::delete_user_by_query
        ))
        .routes(routes!(by_query::disable_user_by_query))
        .routes(routes!(by_query::enable_user_by_query))
        .routes(routes!(by_query::kick_user_by_query))
        .routes(routes!(list_instances))
        .routes(routes!(online_stats))
        .routes(routes!(dau_stats))
        .routes(routes!(get_policy, put_policy, delete_policy))
        .routes(routes!(list_dead_letters))
        .routes(routes!(retry_dead_letter))
        .routes(routes!(drop_dead_letter))
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_app_key,
        ))
        .split_for_parts();
    (router.with_state(admin), doc)
}
