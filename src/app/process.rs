//! What the process sets up around the server: its listeners, its memory and open-files limits, and the
//! signals it answers (SIGHUP reloads, SIGTERM and SIGINT stop).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Connections the kernel may queue for `accept` (capped by `net.core.somaxconn`). The usual default (128)
/// overflows during login storms, such as every client reconnecting after a restart, and each overflow costs a
/// client a 1 s SYN retry.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with `LISTEN_BACKLOG` and `SO_REUSEADDR` (a restart can rebind at once).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Turns transparent huge pages off for this process (Linux), before anything is allocated: the allocator asks
/// for huge pages on its arenas, and an idle connection's few small allocations, spread over them, would keep
/// whole 2 MiB pages resident (measured: 8.3 -> 7.7 KB per idle session, logins/s unchanged;
/// docs/benchmarks.md). Memory that idle sessions do not use is worth more here than fewer TLB misses.
pub fn tune_memory() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Not fatal: the process only holds more memory.
        eprintln!("could not turn transparent huge pages off: {e}");
    }
}

/// Raises the open-files limit to the hard limit (each connection is a file) and logs what that allows.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(
            open_files = n,
            approx_connections = n.saturating_sub(64),
            "open-files limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
}

/// Re-reads the configuration at every SIGHUP, for as long as the process runs.
///
/// The handler is installed when this is called, not when the future is first polled: a SIGHUP that comes
/// before would otherwise end the process (its default action).
pub fn reload_on_sighup(
    reloader: Arc<super::reload::Reloader>,
) -> impl FnOnce(CancellationToken) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    move |stop| {
        Box::pin(reload_until(
            reloader,
            stop,
            #[cfg(unix)]
            hup,
        ))
    }
}

async fn reload_until(
    reloader: Arc<super::reload::Reloader>,
    stop: CancellationToken,
    #[cfg(unix)] hup: std::io::Result<tokio::signal::unix::Signal>,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = hup else {
            tracing::warn!("cannot listen for SIGHUP: no live reload");
            return;
        };
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                _ = stop.cancelled() => return,
            }
            match reloader.reload().await {
                Ok(report) => {
                    tracing::info!(restart_needed = ?report.restart_needed, "SIGHUP: configuration reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: the configuration was refused; the running one is kept")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        stop.cancelled().await;
    }
}

/// Completes on SIGTERM or ctrl-c (SIGINT). The handlers are installed when this is called, not when the future
/// is first polled: a SIGTERM that arrives while the server starts is still a clean shutdown.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => std::future::pending::<()>().await,
            }
            tracing::info!("shutdown signal received");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}
