//! Webhook receivers for the benchmarks, in the generator's process: one that answers every event at once and
//! counts them, and one that accepts connections and never answers (a dead receiver).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use imlogin::http::serve::{serve, ServeOptions};
use tokio::net::TcpListener;

/// Answers 200 `{}` to every event and counts them.
pub struct FastReceiver {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
    /// Microseconds since `started` at which the last event arrived.
    last_us: Arc<AtomicU64>,
    started: Instant,
}

impl FastReceiver {
    pub async fn start() -> anyhow::Result<FastReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicUsize::new(0));
        let last_us = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (r, l) = (received.clone(), last_us.clone());
        let app = Router::new().route(
            "/hook",
            post(move || {
                let (r, l) = (r.clone(), l.clone());
                async move {
                    r.fetch_add(1, Ordering::Relaxed);
                    l.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    "{}"
                }
            }),
        );
        let options = ServeOptions {
            header_read_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        tokio::spawn(serve(listener, app, options, std::future::pending()));
        Ok(FastReceiver {
            addr,
            received,
            last_us,
            started,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }

    /// When the last event arrived.
    pub fn last_at(&self) -> Instant {
        self.started + Duration::from_micros(self.last_us.load(Ordering::Relaxed))
    }
}

/// Accepts connections and reads nothing, answers nothing, closes nothing.
pub struct DeadReceiver {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DeadReceiver {
    pub async fn start() -> anyhow::Result<DeadReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        Ok(DeadReceiver { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

impl Drop for DeadReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
