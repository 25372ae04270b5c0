//! The client HTTP API (PROTOCOL §6): `POST /v1/login`, `GET /v1/session`, `POST /v1/logout`. Every body is
//! `{code, message, data?}`; the status follows the code.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::http::serve::ClientIp;
use crate::login::request::{Fields, LoginRequest};
use crate::login::service::Sessions;
use crate::model::error::{Code, Failure};

fn reply(result: Result<Value, Failure>) -> Response {
    match result {
        Ok(data) => (
            StatusCode::OK,
            Json(json!({"code": 0, "message": "", "data": data})),
        )
            .into_response(),
        Err(f) => {
            let status =
                StatusCode::from_u16(f.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                Json(json!({"code": f.code.number(), "message": f.message})),
            )
                .into_response()
        }
    }
}

/// What a client may send past the body limit before the server stops reading: the rest of a too-large body
/// is read and discarded up to this, so the client (still sending) receives the 413 instead of a reset.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// A body that is too large (413 with 6017) or unreadable, or that is not a JSON object (400 with 6017).
#[allow(clippy::result_large_err)] // a response is what the caller sends either way
async fn request_fields(body: Body) -> Result<Fields, Response> {
    use http_body_util::BodyExt;
    let invalid = |why: String| Failure::with_message(Code::InvalidParameters, why);
    let limit = CLIENT_BODY_LIMIT;
    let mut body = body;
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(reply(Err(invalid("unreadable body".into()))));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            bytes.extend_from_slice(&data);
        } else if seen > limit + DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        let why = format!("the body is larger than {limit} bytes");
        let mut response = reply(Err(invalid(why)));
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return Err(response);
    }
    Fields::parse(&Bytes::from(bytes))
        .map_err(|_| reply(Err(invalid("the body must be a JSON object".into()))))
}

fn bearer(headers: &HeaderMap) -> Result<&str, Failure> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Failure::with_message(
                Code::NoPreviousLogin,
                "Authorization: Bearer <session_token> is required",
            )
        })
}

/// The largest body of a client HTTP request: a login with a long JWT fits in a few KiB.
pub const CLIENT_BODY_LIMIT: usize = 8 * 1024;

pub async fn login(
    State(sessions): State<Arc<Sessions>>,
    ClientIp(ip): ClientIp,
    body: Body,
) -> Response {
    let fields = match request_fields(body).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let result = async {
        let request = LoginRequest::from_fields(fields);
        let ok = sessions.login(request, ip, None).await?;
        Ok(serde_json::to_value(ok.data()).expect("serializable"))
    }
    .await;
    reply(result)
}

pub async fn session(State(sessions): State<Arc<Sessions>>, headers: HeaderMap) -> Response {
    let result = async {
        let inst = sessions.session(bearer(&headers)?).await?;
        Ok(json!({
            "user_id": inst.user_id,
            "platform": inst.platform,
            "instance_id": inst.instance_id,
            "state": if inst.is_online() { "online" } else { "disconnected" },
            "sig_expires_at": inst.sig_expires_at,
        }))
    }
    .await;
    reply(result)
}

pub async fn logout(
    State(sessions): State<Arc<Sessions>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let result = async {
        sessions.http_logout(bearer(&headers)?, ip).await?;
        Ok(json!({}))
    }
    .await;
    reply(result)
}
