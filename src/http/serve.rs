//! The HTTP/1.1 server under the router: accepts connections and serves each with hyper, with the limits a
//! server on the open internet needs and `axum::serve` does not set: a request head must arrive within
//! `server.header_read_timeout_secs` (which also ends idle keep-alive connections), and heads are capped in
//! size. Each request carries the client's address ([`ClientIp`]). On shutdown it stops accepting and lets
//! every connection finish the request it is serving.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The largest request head (request line and headers) a client may send.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The address of the client a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .ok_or((StatusCode::INTERNAL_SERVER_ERROR, "no client address"))
    }
}

/// How connections are served.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<[IpNet]>,
    /// Peers whose connections are closed as soon as they are accepted, before any HTTP (a trusted proxy never
    /// is: its clients are judged by their forwarded address, further in).
    pub refuse_at_accept: Option<RefuseAtAccept>,
}

/// Which peer addresses [`ServeOptions::refuse_at_accept`] closes.
#[derive(Clone)]
pub struct RefuseAtAccept(pub Arc<dyn Fn(IpAddr) -> bool + Send + Sync>);

impl std::fmt::Debug for RefuseAtAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefuseAtAccept")
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the rightmost address of
/// `X-Forwarded-For` that is not a trusted proxy (the leftmost if all are). A client can put anything at the
/// left of the header; only what trusted proxies appended is believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    // From the right: past each trusted proxy to the address it was given. A hop that is not an address ends
    // the walk at the last good one (only a client writes garbage, and only at the left).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, asks every connection to
/// close after its current request, and returns once all have (upgraded WebSockets are not tracked here).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of files or buffers: wait a moment instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Some(refuse) = &options.refuse_at_accept {
            // The rare case first: most peers are not refused, and need no look at the proxies.
            let trusted = || {
                options
                    .trusted_proxies
                    .iter()
                    .any(|n| n.contains(&peer.ip()))
            };
            if (refuse.0)(peer.ip()) && !trusted() {
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            options.clone(),
            closing.clone(),
        ));
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    options: ServeOptions,
    closing: CancellationToken,
) {
    let trusted = options.trusted_proxies.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let client = ClientIp(client_ip(peer.ip(), req.headers(), &trusted));
        req.extensions_mut().insert(client);
        let router = router.clone();
        async move {
            Ok::<_, Infallible>(
                router
                    .oneshot(req.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = closing.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("x-forwarded-for", v.parse().unwrap());
            m
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // From a trusted proxy: the rightmost hop that is not a trusted proxy.
        assert_eq!(
            client_ip(
                ip("10.1.1.1"),
                &h("6.6.6.6, 198.51.100.7, 10.2.2.2"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h("198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        // Every hop trusted: the leftmost; no header or garbage: the peer.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &h("10.3.3.3, 10.2.2.2"), &trusted),
            ip("10.3.3.3")
        );
        assert_eq!(
            client_ip(ip("10.1.1.1"), &HeaderMap::new(), &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(ip("10.1.1.1"), &h("not-an-ip"), &trusted),
            ip("10.1.1.1")
        );
        // Garbage a client put before its own address does not move the answer to the left of it.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &h("6.6.6.6, junk, 198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.1.1.1"), &h("6.6.6.6, junk, 10.2.2.2"), &trusted),
            ip("10.2.2.2")
        );
        // Nothing trusted: always the peer.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &h("1.2.3.4"), &[]),
            ip("10.1.1.1")
        );
    }
}
