//! The client HTTP API (PROTOCOL §6): `POST /v1/login`, `GET /v1/session`, `POST /v1/logout`. Every body is
//! `{code, message, data?}`; the status follows the code.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::error::{Code, Failure};

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

fn json_object(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, Failure> {
    let bytes = body.map_err(|e| {
        Failure::with_message(Code::InvalidParameters, format!("unreadable body: {e}"))
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Failure::with_message(
            Code::InvalidParameters,
            "the body must be a JSON object",
        )),
    }
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

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request = json_object(body)?;
        let ok = state.sessions.login(&request, peer.ip(), None).await?;
        Ok(serde_json::to_value(ok.data()).expect("serializable"))
    }
    .await;
    reply(result)
}

pub async fn session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        let inst = state.sessions.session(bearer(&headers)?).await?;
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

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        state.sessions.http_logout(bearer(&headers)?).await?;
        Ok(json!({}))
    }
    .await;
    reply(result)
}
