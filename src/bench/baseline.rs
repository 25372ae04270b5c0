//! The baseline: a bare WebSocket server on the same stack as imlogin (axum + tokio, the same WebSocket buffer
//! settings, listen backlog and build profile) that answers every text frame with one fixed login-shaped response. No UserSig,
//! no registry, no database: the limit of any login over WebSocket on this machine.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::gateway::READ_BUFFER;

/// As long as imlogin's login response for the bench's users.
pub const RESPONSE: &str = r#"{"id":1,"code":0,"message":"","data":{"user_id":"known-1234","platform":"web","instance_id":"0123456789abcdef01234567","session_token":"MTQwMDAwMDAwMDowMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc6a25vd24tMTIzNA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","sig_expires_at":1700086400,"repeat_login":false}}"#;

pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let app = Router::new().route("/v1/ws", get(upgrade));
    axum::serve(listener, app).await
}

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(16384)
        .max_frame_size(16384)
        .on_upgrade(answer)
}

async fn answer(mut ws: WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        match msg {
            Message::Text(_) if ws.send(Message::Text(RESPONSE.into())).await.is_err() => return,
            Message::Close(_) => return,
            _ => {}
        }
    }
}
