//! The native admin API under `/admin/v1/apps/{sdkappid}` (PROTOCOL §7): JSON, proper HTTP statuses, one app's
//! admin API key as a bearer token. Every route is registered together with its OpenAPI operation (utoipa), so
//! the document served at `/admin/v1/openapi.json` cannot drift from the routes, and every route sits behind
//! the same key check.

pub mod dead_letters;
pub mod error;
pub mod instances;
pub mod page;
pub mod policy;
pub mod stats;
pub mod user_query;
pub mod users;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ApiResult};

use self::user_query as by_query;
use crate::admin::{Admin, AdminActor};
use crate::http::serve::ClientIp;

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

/// The native API's routes, each behind the key check, with the admin service as their state, and the OpenAPI
/// document that describes them.
pub fn routes(admin: Arc<Admin>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = operations()
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_app_key,
        ))
        .split_for_parts();
    (router.with_state(admin), doc)
}

/// Every route with its operation.
fn operations() -> OpenApiRouter<Arc<Admin>> {
    OpenApiRouter::with_openapi(Doc::openapi())
        .routes(routes!(users::list_users))
        .routes(routes!(
            users::get_user,
            users::put_user,
            users::delete_user
        ))
        .routes(routes!(users::disable_user))
        .routes(routes!(users::enable_user))
        .routes(routes!(users::kick_user))
        // The same user routes with the UserID in the query string, for `.` and `..` (see user_query).
        .routes(routes!(
            by_query::get_user_by_query,
            by_query::put_user_by_query,
            by_query::delete_user_by_query
        ))
        .routes(routes!(by_query::disable_user_by_query))
        .routes(routes!(by_query::enable_user_by_query))
        .routes(routes!(by_query::kick_user_by_query))
        .routes(routes!(instances::list_instances))
        .routes(routes!(stats::online_stats))
        .routes(routes!(stats::dau_stats))
        .routes(routes!(
            policy::get_policy,
            policy::put_policy,
            policy::delete_policy
        ))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::retry_dead_letter))
        .routes(routes!(dead_letters::drop_dead_letter))
}
