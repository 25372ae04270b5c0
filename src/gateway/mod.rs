//! The WebSocket gateway at `GET /v1/ws` (PROTOCOL §3): the upgrade ([`ws`]), the frames ([`protocol`]), the
//! transport ([`io`]), the write queue ([`wire`]) and the connection state machine ([`connection`]); and beside it
//! the gateway of the cloud IM's Web SDK ([`websdk`]) over the same login service.

pub mod connection;
pub mod io;
pub mod protocol;
pub mod websdk;
pub mod wire;
pub mod ws;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;

use crate::app::AppState;
use crate::http::serve::ClientIp;

/// How long a closing connection waits for the client to take the close frame and close its side.
pub const LINGER: Duration = Duration::from_secs(2);

pub async fn upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    request: Request,
) -> Response {
    let limits = state.connection_limits;
    let sessions = state.sessions.clone();
    ws::accept(
        request,
        limits.max_frame,
        &state.connections,
        move |ws| async move {
            let mut io = io::WsIo::new(ws);
            connection::serve(&mut io, sessions, ip, limits).await;
            io.close_lingering(LINGER).await;
        },
    )
}
