//! The HTTP side: the server loop ([`serve`]), the client API ([`client`]), the admin APIs ([`admin`]) and
//! health checks ([`health`]).

pub mod admin;
pub mod client;
pub mod health;
pub mod serve;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// Gives every HTTP request an id (the client's `X-Request-Id` if it sent a reasonable one), logs within a span
/// that carries it, and returns it in the response's `X-Request-Id`.
pub async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 64 && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = format!("{:016x}", rand::random::<u64>());
            HeaderValue::from_str(&id).expect("hex is a valid header value")
        });
    let span = tracing::info_span!("http", request_id = %id.to_str().unwrap_or_default(),
        method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    response.headers_mut().insert(REQUEST_ID, id);
    response
}
