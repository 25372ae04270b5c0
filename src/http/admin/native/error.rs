//! The native API's errors: an HTTP status, and a body `{code, message}` with a code of the protocol's table.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::admin::AdminError;

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
    pub(super) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> ApiError {
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

pub type ApiResult<T> = Result<T, ApiError>;
