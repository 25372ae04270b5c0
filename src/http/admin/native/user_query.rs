//! The native API's user routes again, with the UserID in the query string — `/user?user_id=…` beside
//! `/users/{user_id}` — for UserIDs no path can carry: `.` and `..` are dot segments, which browsers and most
//! HTTP clients resolve away before sending (percent-encoded as `%2e` too, by WHATWG URL parsing), while a query
//! value carries any UserID. The console uses these for every user. Same answers and errors as the path forms.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};
use super::users::{
    kick, set_profile, user_detail, KickBody, Kicked, ProfileBody, User, UserDetail,
};
use crate::admin::{Admin, AdminActor};

#[derive(Debug, Deserialize, IntoParams)]
pub struct UserQuery {
    /// The UserID, percent-encoded as any query value (`.`, `..`, `a/b?c#d` all fit).
    user_id: String,
}

fn user_id(query: Result<Query<UserQuery>, QueryRejection>) -> ApiResult<String> {
    Ok(query?.0.user_id)
}

/// An account and its instances (as `GET /users/{user_id}`).
#[utoipa::path(get, path = "/admin/v1/apps/{sdkappid}/user", tag = "accounts",
    params(("sdkappid" = u32, Path), UserQuery),
    responses((status = 200, body = UserDetail), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn get_user_by_query(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> ApiResult<Json<UserDetail>> {
    user_detail(&admin, &who, user_id(query)?).await
}

/// Creates the account, or updates its profile (as `PUT /users/{user_id}`).
#[utoipa::path(put, path = "/admin/v1/apps/{sdkappid}/user", tag = "accounts",
    params(("sdkappid" = u32, Path), UserQuery), request_body = ProfileBody,
    responses((status = 200, body = User), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn put_user_by_query(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<UserQuery>, QueryRejection>,
    body: Result<Json<ProfileBody>, JsonRejection>,
) -> ApiResult<Json<User>> {
    set_profile(&admin, &who, &user_id(query)?, body).await
}

/// Deletes the account (as `DELETE /users/{user_id}`).
#[utoipa::path(delete, path = "/admin/v1/apps/{sdkappid}/user", tag = "accounts",
    params(("sdkappid" = u32, Path), UserQuery),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn delete_user_by_query(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> ApiResult<StatusCode> {
    admin.delete(&who, &user_id(query)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables the account (as `POST /users/{user_id}/disable`).
#[utoipa::path(post, path = "/admin/v1/apps/{sdkappid}/user/disable", tag = "accounts",
    params(("sdkappid" = u32, Path), UserQuery),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn disable_user_by_query(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> ApiResult<StatusCode> {
    admin.set_disabled(&who, &user_id(query)?, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a disabled account (as `POST /users/{user_id}/enable`).
#[utoipa::path(post, path = "/admin/v1/apps/{sdkappid}/user/enable", tag = "accounts",
    params(("sdkappid" = u32, Path), UserQuery),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn enable_user_by_query(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> ApiResult<StatusCode> {
    admin.set_disabled(&who, &user_id(query)?, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Kicks one instance of the user, or all (as `POST /users/{user_id}/kick`).
#[utoipa::path(post, path = "/admin/v1/apps/{sdkappid}/user/kick", tag = "sessions",
    params(("sdkappid" = u32, Path), UserQuery), request_body = KickBody,
    responses((status = 200, body = Kicked), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("admin_api_key" = [])))]
pub async fn kick_user_by_query(
    State(admin): State<Arc<Admin>>,
    Extension(who): Extension<AdminActor>,
    query: Result<Query<UserQuery>, QueryRejection>,
    body: Result<Json<KickBody>, JsonRejection>,
) -> ApiResult<Json<Kicked>> {
    kick(&admin, &who, &user_id(query)?, body).await
}
