//! The connection state machine alone: driven over channels, on tokio's paused clock, against the real login
//! service (in-memory registry, SQLite in memory, users registered before the clock stops).

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
    Sessions::new(Parts {
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
    })
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
    let (conn, mailbox) = sessions.hub.register();
    sessions
        .login(login_request(user, "web"), IP, Some(conn))
        .await
        .unwrap();
    mailbox
}

#[tokio::test]
async fn silence_for_the_heartbeat_closes_4003_and_any_frame_resets_it() {
    let s = sessions(&["hb"]).await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "hb", "web", 3600);
    assert_eq!(c.json().await["code"], 0);
    tokio::time::advance(Duration::from_secs(60)).await;
    c.tx.send(Inbound::Control).unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(89)).await;
    c.quiet().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(c.closed_with().await, close::HEARTBEAT_TIMEOUT);
    c.task.await.unwrap();
    // The instance stays, disconnected, resumable for the grace.
    let left = s.registry.user_instances(APP, "hb").await.unwrap();
    assert!(left.len() == 1 && left[0].conn.is_none());
}

#[tokio::test]
async fn a_connection_that_does_not_log_in_in_time_is_closed_1008() {
    let s = sessions(&["late"]).await;
    let mut idle = connect(&s, LIMITS);
    let mut busy = connect(&s, LIMITS);
    // Frames other than a login do not count: only a login does.
    busy.tx
        .send(Inbound::Text(r#"{"id":1,"op":"ping"}"#.into()))
        .unwrap();
    assert_eq!(busy.json().await["code"], 0);
    let mut on_time = connect(&s, LIMITS);
    tokio::time::advance(Duration::from_secs(29)).await;
    on_time.login(1, "late", "web", 3600);
    assert_eq!(on_time.json().await["code"], 0);
    idle.quiet().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(idle.closed_with().await, close::POLICY);
    assert_eq!(busy.closed_with().await, close::POLICY);
    // Logged in, the connection outlives the login timeout (up to its heartbeat).
    tokio::time::advance(Duration::from_secs(60)).await;
    on_time.quiet().await;
}

#[tokio::test]
async fn frames_faster_than_the_limit_close_1008_after_the_burst() {
    let s = sessions(&[]).await;
    let limits = Limits {
        frames_per_second: 5,
        ..LIMITS
    };
    let mut steady = connect(&s, limits);
    // 5 a second for a while is fine.
    for _ in 0..20 {
        steady.tx.send(Inbound::Control).unwrap();
        tokio::time::advance(Duration::from_millis(200)).await;
    }
    steady.quiet().await;
    // A burst of twice the rate is fine; one more is not.
    let mut flood = connect(&s, limits);
    for _ in 0..10 {
        flood.tx.send(Inbound::Control).unwrap();
    }
    settle().await;
    flood.quiet().await;
    flood.tx.send(Inbound::Control).unwrap();
    assert_eq!(flood.closed_with().await, close::POLICY);
}

#[tokio::test]
async fn the_usersig_notice_then_expiry_then_a_new_login() {
    let s = sessions(&["exp"]).await;
    let limits = Limits {
        heartbeat: Duration::from_secs(3600),
        ..LIMITS
    };
    let mut c = connect(&s, limits);
    // Expires at T0 + 400: the notice is due 300 s before, at T0 + 100.
    c.login(1, "exp", "android", 400);
    assert_eq!(c.json().await["data"]["sig_expires_at"], T0 + 400);
    tokio::time::advance(Duration::from_secs(99)).await;
    c.quiet().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        c.json().await,
        json!({"event": "user_sig_expiring", "expires_at": T0 + 400})
    );
    // Expired once now > expires_at: one second past it.
    tokio::time::advance(Duration::from_secs(300)).await;
    c.quiet().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        c.json().await,
        json!({"event": "user_sig_expired", "code": 6206})
    );
    assert!(s
        .registry
        .user_instances(APP, "exp")
        .await
        .unwrap()
        .is_empty());
    c.send(json!({"id": 2, "op": "get_login_status"}));
    assert_eq!(c.json().await["data"]["status"], 3);
    // A ticket with less than the notice left is noticed at once. The user's cached login state is older than
    // its 5 minutes by now, so this login reads the account from the database: real I/O, which a paused clock
    // would let the frame's timeout overtake (it auto-advances while the runtime waits).
    tokio::time::resume();
    c.send(
        json!({"id": 3, "op": "login", "sdkappid": APP, "user_id": "exp",
        "user_sig": tls::generate(APP, KEY, "exp", 200, (T0 + 401) as u64), "platform": "android"}),
    );
    assert_eq!(c.json().await["code"], 0);
    assert_eq!(c.json().await["event"], "user_sig_expiring");
}

#[tokio::test]
async fn requests_behind_a_login_wait_and_are_answered_in_order() {
    let s = sessions(&["busy"]).await;
    let _stuck = stuck_instance(&s, "busy").await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "busy", "web", 3600);
    settle().await;
    // While the login waits for the stuck instance's kick: status, user and ping at once; another login or a
    // resume 7501; logout and renew_sig wait.
    c.send(json!({"id": 2, "op": "logout"}));
    c.send(json!({"id": 3, "op": "get_login_status"}));
    c.send(json!({"id": 4, "op": "get_login_user"}));
    c.send(json!({"id": 5, "op": "ping"}));
    c.send(json!({"id": 6, "op": "resume", "session_token": "x"}));
    c.login(7, "other", "web", 3600);
    c.send(json!({"id": 8, "op": "renew_sig", "user_sig": ticket("busy", 7200)}));
    let answer = |v: Value| (v["id"].as_u64().unwrap(), v["code"].as_u64().unwrap());
    assert_eq!(c.json().await["data"]["status"], 2);
    assert_eq!(c.json().await["data"]["user_id"], "");
    assert_eq!(answer(c.json().await), (5, 0));
    assert_eq!(answer(c.json().await), (6, 7501));
    assert_eq!(answer(c.json().await), (7, 7501));
    c.quiet().await;
    // The kick timeout passes; then the login, the logout and the renew_sig, in order.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(answer(c.json().await), (1, 0));
    assert_eq!(answer(c.json().await), (2, 0));
    assert_eq!(answer(c.json().await), (8, 6014));
}

#[tokio::test]
async fn more_than_64_requests_behind_a_login_close_1008() {
    let s = sessions(&["flood"]).await;
    let _stuck = stuck_instance(&s, "flood").await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "flood", "web", 3600);
    settle().await;
    for id in 2..=(2 + MAX_QUEUED as u64) {
        c.send(json!({"id": id, "op": "logout"}));
    }
    assert_eq!(c.closed_with().await, close::POLICY);
}

#[tokio::test]
async fn a_message_over_the_limit_closes_1009() {
    let s = sessions(&[]).await;
    let mut c = connect(&s, LIMITS);
    c.send(json!({"id": 1, "op": "ping", "pad": "x".repeat(900)}));
    assert_eq!(c.json().await["code"], 0, "up to the limit is fine");
    c.send(json!({"id": 2, "op": "ping", "pad": "x".repeat(1100)}));
    assert_eq!(c.closed_with().await, close::TOO_LARGE);
    c.task.await.unwrap();
    // The transport's own limit (a frame announced too large) closes the same way.
    let mut c = connect(&s, LIMITS);
    c.tx.send(Inbound::TooLarge).unwrap();
    assert_eq!(c.closed_with().await, close::TOO_LARGE);
}

#[tokio::test]
async fn a_kick_that_arrives_during_the_login_is_delivered_after_its_answer() {
    let s = sessions(&["racer"]).await;
    let _stuck = stuck_instance(&s, "racer").await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "racer", "web", 3600);
    settle().await;
    // Another web login of the same user takes the slot of the instance this login just admitted.
    let (other, _mailbox) = s.hub.register();
    s.login(login_request("racer", "web"), IP, Some(other))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    let answer = c.json().await;
    assert_eq!(answer["code"], 0);
    assert_eq!(
        c.json().await,
        json!({"event": "kicked_offline", "code": 6208, "reason": "multi_terminal", "by_platform": "web"})
    );
    assert_eq!(c.closed_with().await, close::KICKED);
    c.task.await.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_read_is_not_read_and_is_dropped_after_the_write_timeout() {
    let s = sessions(&["deaf"]).await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "deaf", "web", 3600);
    assert_eq!(c.json().await["code"], 0);
    c.blocked.store(true, Ordering::Relaxed);
    let sent = 5000;
    for id in 0..sent {
        c.send(json!({"id": id, "op": "ping"}));
    }
    settle().await;
    let read = c.read.load(Ordering::Relaxed);
    assert!(
        read < sent as usize / 2,
        "it stops reading once {OUT_HIGH_WATER} bytes wait to be sent (read {read} of {sent})"
    );
    tokio::time::advance(LIMITS.write_timeout - Duration::from_millis(1)).await;
    settle().await;
    assert!(!c.task.is_finished());
    tokio::time::advance(Duration::from_millis(2)).await;
    settle().await;
    assert!(c.task.is_finished(), "dropped at the write deadline");
    let left = s.registry.user_instances(APP, "deaf").await.unwrap();
    assert!(left.len() == 1 && left[0].conn.is_none(), "left resumable");
}

#[tokio::test]
async fn the_heartbeat_fires_while_a_write_is_pending() {
    let s = sessions(&[]).await;
    let limits = Limits {
        heartbeat: Duration::from_secs(3),
        write_timeout: Duration::from_secs(60),
        ..LIMITS
    };
    let c = connect(&s, limits);
    c.blocked.store(true, Ordering::Relaxed);
    c.send(json!({"id": 1, "op": "ping"}));
    settle().await;
    // (Tokio's timers fire on whole milliseconds: a millisecond more than the heartbeat.)
    tokio::time::advance(Duration::from_millis(3001)).await;
    settle().await;
    assert!(
        c.task.is_finished(),
        "closed at the heartbeat, not at the write deadline"
    );
}

#[tokio::test]
async fn resume_of_an_instance_whose_usersig_expired_is_refused_without_moving_it() {
    let s = sessions(&["late"]).await;
    let (holder, _holder_mailbox) = s.hub.register();
    let body = json!({"sdkappid": APP, "user_id": "late", "user_sig": ticket("late", 10), "platform": "web"});
    let request = LoginRequest::from_fields(Fields::parse(body.to_string().as_bytes()).unwrap());
    let ok = s.login(request, IP, Some(holder)).await.unwrap();
    let key = ok.instance.key();
    tokio::time::advance(Duration::from_secs(11)).await;
    let (other, _other_mailbox) = s.hub.register();
    let refused = s.resume(&ok.session_token, other, IP).await.unwrap_err();
    assert_eq!(refused.code, Code::NoPreviousLogin);
    assert_eq!(
        s.registry.get(&key).await.unwrap().unwrap().conn,
        Some(holder),
        "left on the connection it is on, which tells its client when its timer fires"
    );
    // Disconnected, it is removed by the attempt.
    s.detach(&key, holder, crate::model::Cause::Disconnect)
        .await;
    let refused = s.resume(&ok.session_token, other, IP).await.unwrap_err();
    assert_eq!(refused.code, Code::NoPreviousLogin);
    assert!(s.registry.get(&key).await.unwrap().is_none());
}

/// Every idle session keeps its connection's future resident: a buffer or a future held across an await in
/// it costs that much per session (docs/benchmarks.md, memory per idle session).
#[tokio::test]
async fn the_connection_future_stays_small() {
    let s = sessions(&[]).await;
    let (_tx, inbound) = mpsc::unbounded_channel();
    let (outbound, _rx) = mpsc::unbounded_channel();
    let mut io = TestIo {
        inbound,
        outbound,
        blocked: Default::default(),
        read: Default::default(),
    };
    let size = std::mem::size_of_val(&driver::serve::<_, Native>(&mut io, s, IP, &LIMITS));
    assert!(size <= 1024, "the connection future takes {size} bytes");
}
