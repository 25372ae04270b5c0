//! The WebSocket gateway at `GET /v1/ws` (PROTOCOL §3).

pub mod connection;
pub mod protocol;

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;

use crate::app::AppState;

/// The read buffer each connection keeps: axum's default (128 KiB) would stay resident for every idle session.
pub const READ_BUFFER: usize = 4096;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let max = state.settings.server.max_frame_bytes;
    let tracker = state.connections.clone();
    ws.read_buffer_size(READ_BUFFER)
        // Write each frame through at once (no batching buffer), and bound what a slow reader can queue.
        .write_buffer_size(0)
        .max_write_buffer_size(max.saturating_mul(64).max(1 << 20))
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracker.track_future(connection::run(
                socket,
                state.sessions.clone(),
                peer.ip(),
                max,
            ))
        })
}
