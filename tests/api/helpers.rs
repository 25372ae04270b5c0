//! Test harness: fresh databases on real PostgreSQL and SQLite, a Redis namespace of each test's own, a TCP proxy
//! that can cut or delay a connection, and the real server on port 0.
//!
//! Behaviour tests run on both configurations (see [`both_configs!`]): the **embedded** default (SQLite and the
//! in-memory registry, what `imlogin serve` starts with) and the **production** one (PostgreSQL and the Redis
//! registry, what operators deploy), each server with a database and a Redis namespace of its own, beside the
//! keys of every other test in the same Redis (as on a shared Redis).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use imlogin::accounts::{AccountStore, Accounts};
use imlogin::app::{AppState, Application};
use imlogin::client::{Client, ClientEvent, LoginParams};
use imlogin::config::Settings;
use imlogin::store::Database;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
pub const APP: u32 = 1_400_000_000;

/// The PostgreSQL server tests use (CI starts it; a missing server fails the tests, it never skips them).
pub fn pg_admin_url() -> String {
    std::env::var("IMLOGIN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis the production configuration's tests share (CI starts it).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The store of a test database, and with it the configuration a test server runs: `Postgres` is the
/// production configuration (PostgreSQL + the Redis registry), `Sqlite` the embedded default (SQLite + the
/// in-memory registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh, empty database, dropped (PostgreSQL) or deleted (SQLite) at the end of the test; with PostgreSQL,
/// a Redis namespace of its own too, whose keys are deleted at the end.
pub struct TestDb {
    pub backend: Backend,
    /// Where the database listens (PostgreSQL), for a proxy in front of it.
    pub pg_addr: Option<SocketAddr>,
    /// The registry's namespace in Redis (production configuration only).
    pub redis_ns: Option<String>,
    name: String,
    dir: tempfile::TempDir,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let name = format!(
            "imlogin_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut pg_addr = None;
        if backend == Backend::Postgres {
            crowd_redis().await;
            let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL must be running for the tests (scripts/test.sh starts it)");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let url: url_lite::Url = pg_admin_url().parse().unwrap();
            pg_addr = Some(url.addr);
        }
        TestDb {
            backend,
            pg_addr,
            redis_ns: (backend == Backend::Postgres)
                .then(|| format!("t{:016x}", rand::random::<u64>())),
            name,
            dir,
        }
    }

    /// The environment that starts the real binary on this database (and, in the production configuration, the
    /// Redis registry in this test's namespace).
    pub fn binary_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("IMLOGIN__DATABASE__URL", self.url())];
        if let Some(ns) = &self.redis_ns {
            env.extend([
                ("IMLOGIN__REGISTRY__BACKEND", "redis".to_owned()),
                ("IMLOGIN__REGISTRY__REDIS_URL", REDIS_URL.to_owned()),
                ("IMLOGIN__REGISTRY__NAMESPACE", ns.clone()),
            ]);
        }
        env
    }

    /// Settings for a test server on this database (and, in the production configuration, the Redis registry
    /// in this test's namespace), with overrides given as `("SECTION__KEY", value)`.
    pub fn settings(&self, overrides: &[(&str, &str)]) -> Settings {
        let mut all: Vec<(&str, &str)> = Vec::new();
        if let Some(ns) = &self.redis_ns {
            all.extend([
                ("REGISTRY__BACKEND", "redis"),
                ("REGISTRY__REDIS_URL", REDIS_URL),
                ("REGISTRY__NAMESPACE", ns.as_str()),
            ]);
        }
        all.extend_from_slice(overrides);
        test_settings_with(&self.url(), &all)
    }

    /// The database URL, optionally through `via` (a proxy's address) instead of the server's.
    pub fn url_via(&self, via: Option<SocketAddr>) -> String {
        match self.backend {
            Backend::Postgres => {
                let addr = via.or(self.pg_addr).unwrap();
                format!("postgres://postgres@{addr}/{}", self.name)
            }
            Backend::Sqlite => format!(
                "sqlite://{}/sub/dir/{}.db",
                self.dir.path().display(),
                self.name
            ),
        }
    }

    pub fn url(&self) -> String {
        self.url_via(None)
    }

    pub async fn store(&self) -> Arc<dyn AccountStore> {
        self.database().await.accounts
    }

    pub async fn store_via(&self, via: Option<SocketAddr>) -> Arc<dyn AccountStore> {
        self.database_via(via).await.accounts
    }

    pub async fn database(&self) -> Database {
        self.database_via(None).await
    }

    /// The database, reached through `via` (a proxy's address) if given.
    pub async fn database_via(&self, via: Option<SocketAddr>) -> Database {
        Database::open(&self.url_via(via), 8).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let name = self.name.clone();
        let ns = self.redis_ns.clone();
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
                if let Some(ns) = ns {
                    delete_redis_namespace(&ns).await;
                }
            });
        })
        .join();
    }
}

/// Fills the shared Redis with keys that are not a test server's, once per test run: unrelated keys, and users
/// of the demo app in another namespace, enough that scanning a namespace takes many steps, most of which find
/// none of its keys (as on a Redis that other services and deployments use). They expire within the hour.
async fn crowd_redis() {
    static CROWDED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CROWDED
        .get_or_init(|| async {
            let client = redis::Client::open(REDIS_URL).unwrap();
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis must be running for the tests (scripts/test.sh starts it)");
            let mut pipe = redis::pipe();
            for i in 0..1500 {
                pipe.cmd("SET")
                    .arg(format!("crowd:session:{i}"))
                    .arg("x")
                    .arg("EX")
                    .arg(3600)
                    .ignore();
                // A user of the demo app, online, in a deployment of another namespace.
                let key = format!("crowd-ns:u:{APP}:user{i}");
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg("i:0123456789abcdef01234567")
                    .arg("6|18f0000000|1|7fffffff|1|1||127.0.0.1|")
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(3600)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await.unwrap();
        })
        .await;
}

/// Deletes every key of a Redis namespace (by name, through SCAN: other tests' keys stay).
pub async fn delete_redis_namespace(ns: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{ns}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Just enough URL parsing for `postgres://user@host:port/db`.
mod url_lite {
    use std::net::{SocketAddr, ToSocketAddrs};
    pub struct Url {
        pub addr: SocketAddr,
    }
    impl std::str::FromStr for Url {
        type Err = String;
        fn from_str(s: &str) -> Result<Url, String> {
            let rest = s.split("://").nth(1).ok_or("no scheme")?;
            let host_port = rest.split('/').next().unwrap().rsplit('@').next().unwrap();
            let host_port = if host_port.contains(':') {
                host_port.to_owned()
            } else {
                format!("{host_port}:5432")
            };
            let addr = host_port
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or("no address")?;
            Ok(Url { addr })
        }
    }
}

/// A TCP proxy that forwards to `target` until cut; cutting drops every open connection and refuses new ones.
/// It can also hold every chunk back for a while, in both directions (a server that answers late).
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    cut_tx: watch::Sender<u64>,
}

/// Copies `from` to `to`, holding each chunk back by `delay_ms` as it is when the chunk arrives.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let (up2, stalled2, delay2) = (up.clone(), stalled.clone(), delay_ms.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if stalled2.load(Ordering::SeqCst) {
                    // Accept, then never answer: the client waits until its own timeout.
                    held.push(inbound);
                    continue;
                }
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                let delay = delay2.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = pump(in_read, out_write, delay.clone()) => {}
                        _ = pump(out_read, in_write, delay) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            stalled,
            delay_ms,
            cut_tx,
        }
    }

    /// Holds every chunk back by `delay` from now on (zero: forwards at once again).
    pub fn delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Drops open connections and leaves new ones hanging unanswered (a database that stopped responding).
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.cut_tx.send_modify(|n| *n += 1);
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut_tx.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Settings for a test server: the embedded defaults on port 0 with the given database.
pub fn test_settings(database_url: &str) -> Settings {
    test_settings_with(database_url, &[])
}

/// Test settings with overrides given as `("SECTION__KEY", value)`, as the environment would give them.
pub fn test_settings_with(database_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut env = vec![
        (
            "IMLOGIN__SERVER__LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "IMLOGIN__SERVER__METRICS_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("IMLOGIN__DATABASE__URL".to_owned(), database_url.to_owned()),
        (
            "IMLOGIN__LIMITS__LOGIN_FAILURES_PER_MINUTE".to_owned(),
            "1000".to_owned(),
        ),
        // Every test client comes from 127.0.0.1, many sockets a second (tests/api/limits.rs sets the limit).
        (
            "IMLOGIN__LIMITS__NEW_CONNECTIONS_PER_IP_PER_SECOND".to_owned(),
            "0".to_owned(),
        ),
    ];
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (format!("IMLOGIN__{k}"), v.to_string())),
    );
    Settings::load_with_env(None, env).unwrap()
}

/// The real server, running on a random port until dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn(settings: Settings, db: Database) -> TestApp {
        let app = Application::build_with(settings, db, imlogin::runtime::clock::Clock::system())
            .await
            .unwrap();
        let addr = app.local_addr();
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            state,
            stop: Some(tx),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.ws_url()).await.unwrap()
    }

    /// Stops accepting and closes every WebSocket (as SIGTERM does).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The accounts service on `store`, its registration worker running until the test ends.
pub fn accounts(store: Arc<dyn AccountStore>) -> Accounts {
    let users = imlogin::registry::users::Users::new(imlogin::runtime::clock::Clock::system());
    let (accounts, worker) = Accounts::new(store, users);
    tokio::spawn(worker.run(tokio_util::sync::CancellationToken::new()));
    accounts
}

/// Login fields for the demo app with a fresh one-hour ticket.
pub fn params(user: &str, platform: &str) -> LoginParams {
    LoginParams {
        sdkappid: APP,
        user_id: user.to_owned(),
        user_sig: sig(user, None, 3600),
        platform: platform.to_owned(),
        device_id: None,
    }
}

/// The next event, or a panic after 5 s.
pub async fn event(c: &mut Client) -> ClientEvent {
    tokio::time::timeout(std::time::Duration::from_secs(5), c.next_event())
        .await
        .expect("an event within 5 s")
        .expect("the event stream is open")
}

/// Waits (up to 10 s) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A v2 UserSig for the demo app's key, issued at `time` (default now) valid for `expire` seconds.
pub fn sig(user: &str, time: Option<u64>, expire: u64) -> String {
    let time = time.unwrap_or_else(|| imlogin::runtime::clock::unix_now() as u64);
    imlogin::usersig::tls::generate(APP, KEY, user, expire, time)
}

/// Runs the async test body on both configurations: `production::NAME` (PostgreSQL + Redis registry) and
/// `embedded::NAME` (SQLite + memory registry). Every behaviour test is registered here.
#[macro_export]
macro_rules! both_configs {
    ($($name:ident),* $(,)?) => {
        mod production {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Postgres).await })*
        }
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
    };
}

/// Runs the async test body once, on the embedded configuration: for what neither the store nor the registry
/// changes (frame parsing, limits in front of the login, the CLI).
#[macro_export]
macro_rules! embedded_only {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
    };
}

/// A fresh database of `backend` and the server on it (with the registry of that configuration), with config
/// overrides.
pub async fn spawn_on(backend: Backend, overrides: &[(&str, &str)]) -> (TestDb, TestApp) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(db.settings(overrides), db.database().await).await;
    (db, app)
}

/// A fresh PostgreSQL database and the server on it (the production configuration), reaching the database
/// through a [`Proxy`] the test can cut.
pub async fn spawn_behind_proxy() -> (TestDb, Proxy, TestApp) {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(db.pg_addr.unwrap()).await;
    let app = TestApp::spawn(db.settings(&[]), db.database_via(Some(proxy.addr)).await).await;
    (db, proxy, app)
}

impl TestApp {
    /// The HTTP status of `GET path`.
    pub async fn status_of(&self, path: &str) -> u16 {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The demo app's admin API key (config/default.toml).
pub const ADMIN_KEY: &str = "demo-admin-api-key-FOR-TRYING-ONLY";
/// A second app, for isolation tests: add it with [`OTHER_APP_ENV`].
pub const OTHER_APP: u32 = 1_400_000_001;
pub const OTHER_KEY: &str = "the-other-apps-secret-key";
pub const OTHER_ADMIN_KEY: &str = "the-other-apps-admin-api-key";
pub const OTHER_APP_ENV: [(&str, &str); 4] = [
    ("APPS__1__SDKAPPID", "1400000001"),
    ("APPS__1__SECRET_KEY", OTHER_KEY),
    ("APPS__1__ADMINS", r#"["administrator"]"#),
    ("APPS__1__ADMIN_API_KEY", OTHER_ADMIN_KEY),
];

/// Login fields for the second app ([`OTHER_APP_ENV`]) with a fresh one-hour ticket.
pub fn other_params(user: &str, platform: &str) -> LoginParams {
    let time = imlogin::runtime::clock::unix_now() as u64;
    LoginParams {
        sdkappid: OTHER_APP,
        user_sig: imlogin::usersig::tls::generate(OTHER_APP, OTHER_KEY, user, 3600, time),
        ..params(user, platform)
    }
}

/// The query string of a `/v4` call by the demo app's admin.
pub fn v4_query_for_admin() -> String {
    let sig = sig("administrator", None, 3600);
    format!("sdkappid={APP}&identifier=administrator&usersig={sig}&random=12345&contenttype=json")
}

impl TestApp {
    /// The query string of a `/v4` call by the demo app's admin.
    pub fn v4_query(&self) -> String {
        v4_query_for_admin()
    }

    /// `POST /v4/{path}?{query}` with `body`; the REST API always answers 200 with JSON.
    pub async fn v4_with(&self, path: &str, query: &str, body: &str) -> serde_json::Value {
        let r = self
            .http
            .post(self.url(&format!("/v4/{path}?{query}")))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the REST API always answers 200");
        r.json().await.unwrap()
    }

    /// A `/v4` call by the demo app's admin.
    pub async fn v4(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.v4_with(path, &self.v4_query(), &body.to_string())
            .await
    }

    /// A native admin call with the demo app's key: (status, JSON body or null).
    pub async fn native(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.native_as(ADMIN_KEY, method, path, body).await
    }

    pub async fn native_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .request(method, self.url(&format!("/admin/v1/apps/{APP}{path}")))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// Runs a Node test suite (`npm test` in `dir`, relative to the workspace) against this build's binary and
/// returns what it printed; fails with that output unless every test passed. One suite at a time: each starts
/// servers and most a Chromium, which is enough load beside the Rust tests on a small machine.
pub fn node_suite(dir: &str, needs: &str) -> String {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    assert!(
        dir.join("node_modules").join(needs).exists(),
        "these tests need their packages: run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    let out = std::process::Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&dir)
        .env("IMLOGIN_BIN", env!("CARGO_BIN_EXE_imlogin"))
        .env_remove("SCREENSHOTS")
        .output()
        .expect("npm runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("# fail 0"),
        "npm test in {} failed:\n{text}",
        dir.display()
    );
    text
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
