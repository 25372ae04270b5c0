//! The WebSocket gateway at `GET /v1/ws` (PROTOCOL §3): the upgrade ([`ws`]), the frames ([`protocol`]), the
//! transport ([`io`]), the write queue ([`wire`]), the loop every connection runs ([`driver`]) and the protocol's
//! state machine ([`connection`]); and beside it the gateway of the cloud IM's Web SDK ([`websdk`]) over the same
//! login service and the same loop.

pub mod driver;
pub mod io;
pub mod native;
pub mod websdk;
pub mod wire;
pub mod ws;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::serve::ClientIp;
use wire::Ending;

/// How long a closing connection waits for the client to take the close frame and close its side.
pub const LINGER: Duration = Duration::from_secs(2);

/// The protocol a gateway speaks on its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/v1/ws`: PROTOCOL §3, text frames.
    Native,
    /// The Web SDK's frames: binary on `/tim/binfo`, text on `/tim/info`.
    WebSdk { binary: bool },
}

/// `GET /v1/ws`.
pub async fn upgrade(state: State<AppState>, ip: ClientIp, request: Request) -> Response {
    serve_upgrade(state, ip, request, Protocol::Native)
}

/// Upgrades `request` and serves the socket in `protocol` until it ends, then closes it lingering.
pub fn serve_upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    request: Request,
    protocol: Protocol,
) -> Response {
    if !state.abusive_per_ip.admit_tripped(ip) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many sockets from this address were closed for abuse (limits.abusive_closes_per_ip_per_second)",
        )
            .into_response();
    }
    if !state.new_per_ip.admit(ip) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many new connections from this address (limits.new_connections_per_ip_per_second)",
        )
            .into_response();
    }
    let Some(slot) = state.per_ip.acquire(ip) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many open connections from this address (limits.connections_per_ip)",
        )
            .into_response();
    };
    let limits = state.connection_limits.clone();
    let sessions = state.sessions.clone();
    let abusive = state.abusive_per_ip.clone();
    ws::accept(
        request,
        limits.max_frame,
        &state.connections,
        move |upgrade| async move {
            let Some(ws) = upgrade.open().await else {
                return;
            };
            let mut io = match protocol {
                Protocol::WebSdk { binary: true } => io::WsIo::binary(ws),
                _ => io::WsIo::new(ws),
            };
            let ending = match protocol {
                Protocol::Native => {
                    driver::serve::<_, native::connection::Native>(&mut io, sessions, ip, &limits)
                        .await
                }
                Protocol::WebSdk { .. } => {
                    driver::serve::<_, websdk::connection::WebSdk>(&mut io, sessions, ip, &limits)
                        .await
                }
            };
            match ending {
                Ending::Linger => io.close_lingering(LINGER).await,
                // Closed for abuse: counted against its address (past its allowance, the address is tripped).
                Ending::Abort => {
                    abusive.admit(ip);
                }
            }
            // Counted against the client until the socket is gone (named here so that the task owns it).
            drop(slot);
        },
    )
}
