//! The WebSocket gateway at `GET /v1/ws` (PROTOCOL §3): the upgrade ([`ws`]), the transport ([`io`]), the
//! write queue ([`wire`]), the loop every connection runs ([`driver`]), what a connection is logged in as
//! ([`instance`]) and the protocol's frames and requests ([`native`]); and beside it the gateway of the cloud
//! IM's Web SDK ([`websdk`]) over the same login service, the same loop and the same instance state. Its handlers take the [`Gateway`], their part of the application's state.

pub mod driver;
pub mod instance;
pub mod io;
pub mod native;
pub mod websdk;
pub mod wire;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use tokio_util::task::TaskTracker;

use crate::http::serve::ClientIp;
use crate::limits::per_ip::{PerIp, RatePerIp};
use crate::login::service::Sessions;
use native::connection::Limits;
use wire::Ending;

/// How long a closing connection waits for the client to take the close frame and close its side.
pub const LINGER: Duration = Duration::from_secs(2);
/// How long, and how many bytes, a client closed for abuse is read and discarded after its close frame (see
/// `WsIo::close_lingering`): long enough for the frame to arrive ahead of a reset, short enough that a flood
/// costs little.
pub(crate) const ABORT_LINGER: Duration = Duration::from_millis(250);
pub(crate) const ABORT_DRAIN: usize = 1024 * 1024;

/// The protocol a gateway speaks on its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/v1/ws`: PROTOCOL §3, text frames.
    Native,
    /// The Web SDK's frames: binary on `/tim/binfo`, text on `/tim/info`.
    WebSdk { binary: bool },
}

/// What the gateway's handlers use: the login service, every connection's limits, the limits per client
/// address, and the tracker of the connections' tasks (awaited at shutdown: the HTTP server does not see
/// upgraded sockets). One pointer, cloned for each upgrade.
#[derive(Clone)]
pub struct Gateway(Arc<Parts>);

struct Parts {
    sessions: Arc<Sessions>,
    /// Shared: each connection's task keeps a pointer, not a copy, for its whole life.
    limits: Arc<Limits>,
    /// Open WebSockets per client (`limits.connections_per_ip`).
    per_ip: PerIp,
    /// New WebSockets per client a second (`limits.new_connections_per_ip_per_second`).
    new_per_ip: RatePerIp,
    /// WebSockets closed for abuse per client a second (`limits.abusive_closes_per_ip_per_second`).
    abusive_per_ip: Arc<RatePerIp>,
}

impl Gateway {
    pub fn new(
        sessions: Arc<Sessions>,
        limits: Limits,
        per_ip: PerIp,
        new_per_ip: RatePerIp,
        abusive_per_ip: RatePerIp,
    ) -> Gateway {
        Gateway(Arc::new(Parts {
            sessions,
            limits: Arc::new(limits),
            per_ip,
            new_per_ip,
            abusive_per_ip: Arc::new(abusive_per_ip),
        }))
    }

    /// The connections' tasks: closed and awaited at shutdown.
    pub fn connections(&self) -> &TaskTracker {
        self.0.sessions.tasks()
    }

    /// Whether a client is to be refused at once when it connects (its sockets were closed for abuse past its
    /// allowance).
    pub fn refuses(&self) -> impl Fn(std::net::IpAddr) -> bool + Send + Sync + 'static {
        let abusive = self.0.abusive_per_ip.clone();
        move |ip| abusive.exhausted(ip)
    }
}

/// `GET /v1/ws`.
pub async fn upgrade(state: State<Gateway>, ip: ClientIp, request: Request) -> Response {
    serve_upgrade(state, ip, request, Protocol::Native)
}

/// Upgrades `request` and serves the socket in `protocol` until it ends, then closes it lingering.
pub fn serve_upgrade(
    State(Gateway(state)): State<Gateway>,
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
    let limits = state.limits.clone();
    let sessions = state.sessions.clone();
    let abusive = state.abusive_per_ip.clone();
    ws::accept(
        request,
        limits.max_frame,
        state.sessions.tasks(),
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
                Ending::Linger => io.close_lingering(LINGER, usize::MAX).await,
                // Closed for abuse: counted against its address (past its allowance, the address is tripped).
                Ending::Abort => {
                    abusive.admit(ip);
                    // Its close frame must still arrive ahead of a reset; its flood costs at most the bounds.
                    io.close_lingering(ABORT_LINGER, ABORT_DRAIN).await;
                }
            }
            // Counted against the client until the socket is gone (named here so that the task owns it).
            drop(slot);
        },
    )
}
