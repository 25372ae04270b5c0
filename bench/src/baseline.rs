//! The baseline: a bare WebSocket server on imlogin's own stack (its HTTP server loop, its WebSocket upgrade
//! and buffer settings, its listen backlog, the same build profile and allocator) that answers every text frame
//! with one fixed login-shaped response. No UserSig, no registry, no database: the limit of any login over
//! WebSocket on this machine.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use imlogin::gateway::ws::{self, ServerWs};
use imlogin::http::serve::{serve as serve_http, ServeOptions};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::task::TaskTracker;

/// As long as imlogin's login response for the bench's users.
pub const RESPONSE: &str = r#"{"id":1,"code":0,"message":"","data":{"user_id":"known-1234","platform":"web","instance_id":"0123456789abcdef01234567","session_token":"MTQwMDAwMDAwMDowMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc6a25vd24tMTIzNA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","sig_expires_at":1700086400,"repeat_login":false}}"#;

pub async fn serve(listener: TcpListener) {
    let tracker = TaskTracker::new();
    let app = Router::new().route(
        "/v1/ws",
        get(move |request: Request| {
            let tracker = tracker.clone();
            async move { upgrade(request, &tracker) }
        }),
    );
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    serve_http(listener, app, options, std::future::pending()).await;
}

fn upgrade(request: Request, tracker: &TaskTracker) -> Response {
    ws::accept(request, 16384, tracker, |upgrade| async move {
        let Some(ws) = upgrade.open().await else {
            return;
        };
        answer(ws).await;
    })
}

async fn answer(mut ws: ServerWs) {
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(_) if ws.send(Message::Text(RESPONSE.into())).await.is_err() => return,
            Message::Close(_) => return,
            _ => {}
        }
    }
}
