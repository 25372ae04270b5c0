//! The server side of the WebSocket handshake (RFC 6455 §4.2) over hyper's upgrade, so a connection keeps the
//! raw socket under its WebSocket (for the lingering close) and gets the buffer sizes it wants.

use std::future::Future;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;

/// The read buffer each connection keeps, and the most one read takes from the socket: it stays resident for
/// every idle session. 256 B holds a heartbeat or a short request in one read; a login (~500 B) takes two or
/// three, a few µs against the login's hundreds, and an idle session costs ~3.8 KB instead of ~7.2 KB with 4 KiB
/// (docs/benchmarks.md). 128 KiB is the usual default.
pub const READ_BUFFER: usize = 256;

/// A server WebSocket over an upgraded HTTP connection.
pub type ServerWs = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The WebSocket settings for messages of at most `max_message` bytes: a small read buffer, frames written
/// through at once, and a bound on what a client that does not read can make the server buffer.
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(max_message.saturating_mul(8).max(128 * 1024))
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A WebSocket upgrade answered with 101, whose connection hyper has yet to hand over.
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    max_message: usize,
}

impl Upgrade {
    /// The WebSocket, once hyper hands the connection over; `None` if the client left first.
    pub async fn open(self) -> Option<ServerWs> {
        let upgraded = self.on_upgrade.await.ok()?;
        Some(
            WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config(self.max_message)),
            )
            .await,
        )
    }
}

/// Answers a WebSocket upgrade request with 101 and runs `serve` in a task of `tracker` (it opens the socket with
/// [`Upgrade::open`]); a request that is not a valid upgrade gets 400 (426 for another protocol version).
///
/// `serve` gets the upgrade rather than the socket so that its future is the task's whole future: a wrapper
/// awaiting the upgrade, then `serve`, would keep `serve`'s captures twice (as its own and as the future's) for
/// the connection's life.
pub fn accept<F, Fut>(
    mut request: Request,
    max_message: usize,
    tracker: &TaskTracker,
    serve: F,
) -> Response
where
    F: FnOnce(Upgrade) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let headers = request.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return (
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is expected here",
        )
            .into_response();
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 is required",
        )
            .into_response();
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded",
        )
            .into_response();
    };
    tracker.spawn(serve(Upgrade {
        on_upgrade,
        max_message,
    }));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .expect("a valid response")
}
