//! The pages served by imlogin itself: the admin console at `/console` (for every app; it signs in with an app's
//! admin API key) and the demo at `/demo` (only while the demo app of the embedded defaults is configured with its
//! public key). Their HTML and CSS (`web/src`) and bundled scripts (`web/dist`) are embedded in the binary:
//! nothing is fetched from anywhere.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::demo_app;
use crate::login::service::Sessions;
use crate::model::UserId;
use crate::usersig::tls;

const CONSOLE_HTML: &[u8] = include_bytes!("../../web/src/console/index.html");
const CONSOLE_JS: &[u8] = include_bytes!("../../web/dist/console.js");
const DEMO_HTML: &[u8] = include_bytes!("../../web/src/demo/index.html");
const DEMO_JS: &[u8] = include_bytes!("../../web/dist/demo.js");
const STYLE: &[u8] = include_bytes!("../../web/src/style.css");

/// Scripts, styles and API calls from this origin only; no frames, no inline code, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// How long a demo UserSig lasts (the demo's client asks for a fresh one before it expires).
const DEMO_SIG_SECS: u64 = 3600;

/// The console's and the demo's routes (the demo reads the configured apps through `sessions`).
pub fn routes(sessions: Arc<Sessions>) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { page(CONSOLE_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/",
            get(|| async { page(CONSOLE_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/console.js",
            get(|| async { page(CONSOLE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/style.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/demo", get(demo_file))
        .route("/demo/", get(demo_file))
        .route("/demo/demo.js", get(demo_file))
        .route("/demo/style.css", get(demo_file))
        .route("/demo/usersig", get(demo_usersig))
        .with_state(sessions)
}

fn page(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The demo app as configured now (a live reload may have removed it or changed its key).
fn demo(sessions: &Sessions) -> Option<Arc<crate::config::apps::SdkApp>> {
    sessions
        .auth()
        .apps()
        .get(demo_app().sdkappid)
        .filter(|a| a.is_demo)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": 60009, "message": "the demo is served only while the demo app of the embedded defaults is configured"})),
    )
        .into_response()
}

async fn demo_file(State(sessions): State<Arc<Sessions>>, uri: axum::http::Uri) -> Response {
    if demo(&sessions).is_none() {
        return not_found();
    }
    match uri.path() {
        "/demo/demo.js" => page(DEMO_JS, "text/javascript; charset=utf-8"),
        "/demo/style.css" => page(STYLE, "text/css; charset=utf-8"),
        _ => page(DEMO_HTML, "text/html; charset=utf-8"),
    }
}

#[derive(Deserialize)]
pub struct DemoSigQuery {
    user_id: String,
}

/// A UserSig of the demo app for any valid UserID: what an app's own server would compute. Its key is public, so
/// this gives nothing away; the console key is handed out only while it is the public default too.
async fn demo_usersig(
    State(sessions): State<Arc<Sessions>>,
    query: Result<Query<DemoSigQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(app) = demo(&sessions) else {
        return not_found();
    };
    let user_id =
        match query {
            Ok(Query(q)) if UserId::parse(&q.user_id).is_ok() => q.user_id,
            _ => return (
                StatusCode::BAD_REQUEST,
                Json(json!({"code": 6017, "message": "user_id: 1–32 printable ASCII characters"})),
            )
                .into_response(),
        };
    let demo = demo_app();
    let now = sessions.clock().now_secs().max(0) as u64;
    let user_sig = tls::generate(
        demo.sdkappid,
        demo.secret_key.expose(),
        &user_id,
        DEMO_SIG_SECS,
        now,
    );
    let mut body = json!({"sdkappid": demo.sdkappid, "user_id": user_id, "user_sig": user_sig});
    if app.has_demo_admin_key {
        if let Some(key) = &demo.admin_api_key {
            body["console_key"] = json!(key.expose());
        }
    }
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response()
}
