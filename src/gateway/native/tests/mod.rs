//! The connection state machine alone: driven over channels, on tokio's paused clock, against the real login
//! service (in-memory registry, SQLite in memory, users registered before the clock stops). The harness is here;
//! the tests by topic: the connection's limits and timers ([`limits`]), logins and what waits behind them
//! ([`logins`]).

mod limits;
mod logins;

use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::accounts::dau::Dau;
use crate::accounts::Accounts;
use crate::config::apps::SdkApps;
use crate::config::Settings;
use crate::gateway::driver;
use crate::login::auth::Authenticator;
use crate::login::request::Fields;
use crate::login::service::{Parts, SessionTiming};
use crate::push::hub::Mailbox;
use crate::registry::memory::MemoryRegistry;
use crate::registry::policies::Policies;
use crate::registry::users::Users;
use crate::runtime::clock::Clock;
use crate::store::Database;
use crate::usersig::tls;
use crate::webhooks::outbox::Outbox;

const APP: u32 = 1_400_000_000;
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Unix time (s) when each test's clock starts.
const T0: i64 = 1_800_000_000;

/// A transport made of channels; writes can be blocked (a client that does not read).
struct TestIo {
    inbound: mpsc::UnboundedReceiver<Inbound>,
    outbound: mpsc::UnboundedSender<Outbound>,
    blocked: Arc<AtomicBool>,
    read: Arc<AtomicUsize>,
}

impl Stream for TestIo {
    type Item = Inbound;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let r = self.inbound.poll_recv(cx);
        if let Poll::Ready(Some(_)) = r {
            self.read.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl Sink<Outbound> for TestIo {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if self.blocked.load(Ordering::Relaxed) {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
    fn start_send(self: Pin<&mut Self>, item: Outbound) -> Result<(), ()> {
        self.outbound.send(item).map_err(|_| ())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
}

/// The test's end of one connection.
struct Client {
    tx: mpsc::UnboundedSender<Inbound>,
    rx: mpsc::UnboundedReceiver<Outbound>,
    blocked: Arc<AtomicBool>,
    read: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    fn send(&self, frame: Value) {
        self.tx
            .send(Inbound::Text(frame.to_string().into()))
            .unwrap();
    }

    fn login(&self, id: u64, user: &str, platform: &str, expire: u64) {
        self.send(
            json!({"id": id, "op": "login", "sdkappid": APP, "user_id": user,
            "user_sig": ticket(user, expire), "platform": platform}),
        );
    }

    /// The next frame, as JSON text or a close code.
    async fn next(&mut self) -> Outbound {
        tokio::time::timeout(Duration::from_secs(1), self.rx.recv())
            .await
            .expect("a frame within a second")
            .expect("the connection is open")
    }

    async fn json(&mut self) -> Value {
        match self.next().await {
            Outbound::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn closed_with(&mut self) -> u16 {
        loop {
            match self.next().await {
                Outbound::Close(code, _) => return code,
                Outbound::Text(_) => continue,
            }
        }
    }

    /// Nothing is sent once the connection has had every chance to run.
    async fn quiet(&mut self) {
        settle().await;
        assert_eq!(self.rx.try_recv().ok(), None);
    }
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn ticket(user: &str, expire: u64) -> String {
    tls::generate(APP, KEY, user, expire, T0 as u64)
}

fn login_request(user: &str, platform: &str) -> LoginRequest {
    let body = json!({"sdkappid": APP, "user_id": user, "user_sig": ticket(user, 3600), "platform": platform});
    LoginRequest::from_fields(Fields::parse(body.to_string().as_bytes()).unwrap())
}

/// The login service on a paused clock starting at [`T0`], with `users` registered (and cached) first.
async fn sessions(users: &[&str]) -> Arc<Sessions> {
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    let db = Database::open("sqlite::memory:", 1).await.unwrap();
    let clock = Clock::following_tokio(T0 * 1000);
    let records = Users::new(clock.clone());
    let (accounts, registrations) = Accounts::new(db.accounts.clone(), records.clone());
    tokio::spawn(registrations.run(CancellationToken::new()));
    for u in users {
        accounts.get_or_register(APP, u, T0).await.unwrap();
    }
    let policies = Policies::load(db.policies.clone()).await.unwrap();
    tokio::time::pause();
    let auth = Arc::new(Authenticator::new(
        SdkApps::from_config(&settings.apps),
        accounts,
        100,
        clock.clone(),
    ));
    // The writers are not run: their rows wait in memory, and no test here reads them.
    let (dau, _writer) = Dau::new(db.accounts.clone(), records.clone());
    let (outbox, _writer, _written) = Outbox::new(db.outbox.clone(), "test".into());
    let timing = SessionTiming {
        reconnect_grace: Duration::from_secs(120),
        sig_expiry_notice_secs: 300,
        heartbeat_timeout: Duration::from_secs(90),
    };
    let registry = Arc::new(MemoryRegistry::new(records));
    let (sessions, ends) = Sessions::new(Parts {
        auth,
        registry,
        policies,
        dau,
        outbox,
        timing,
        session_secret: "a-session-secret-for-tests".into(),
        clock,
        metrics: None,
        node: 1,
        bus: Arc::new(crate::push::bus::LocalBus),
        logins_in_progress_per_app: 1000,
    });
    tokio::spawn(ends.run(CancellationToken::new()));
    sessions
}

const LIMITS: Limits = Limits {
    heartbeat: Duration::from_secs(90),
    write_timeout: Duration::from_secs(10),
    max_frame: 1024,
    login_timeout: Duration::from_secs(30),
    frames_per_second: 1000,
};

fn connect(sessions: &Arc<Sessions>, limits: Limits) -> Client {
    let (tx, inbound) = mpsc::unbounded_channel();
    let (outbound, rx) = mpsc::unbounded_channel();
    let blocked = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicUsize::new(0));
    let mut io = TestIo {
        inbound,
        outbound,
        blocked: blocked.clone(),
        read: read.clone(),
    };
    let sessions = sessions.clone();
    let task = tokio::spawn(async move {
        driver::serve::<_, Native>(&mut io, sessions, IP, &limits).await;
    });
    Client {
        tx,
        rx,
        blocked,
        read,
        task,
    }
}

/// An instance of `user` on a connection that never reads its pushes: a login that kicks it waits for its
/// `kicked_offline` to be written for the whole kick timeout (2 s), which keeps that login in progress.
async fn stuck_instance(sessions: &Arc<Sessions>, user: &str) -> Arc<Mailbox> {
    let (conn, mailbox) = sessions.hub().register();
    sessions
        .login(login_request(user, "web"), IP, Some(conn))
        .await
        .unwrap();
    mailbox
}
