//! Accounts: list, look up (with the instances), create or update the profile, delete, disable and enable,
//! and kick.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use super::instances::InstanceView;
use super::page::{decode_cursor, limit, PageQuery};
use crate::accounts::{Account, Profile};
use crate::admin::{Admin, AdminActor};

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
        .map(|u| match crate::model::UserId::parse(&u).is_ok() {
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
