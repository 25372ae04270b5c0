//! The serving skeleton: health, readiness, and the real binary's start and clean SIGTERM shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{test_settings, Backend, TestApp, TestDb};

#[tokio::test]
async fn healthz_and_readyz_on_sqlite() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(test_settings(&db.url()), db.database().await).await;
    assert_eq!(app.status_of("/healthz").await, 200);
    assert_eq!(app.status_of("/readyz").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database() {
    let (_db, proxy, app) = crate::helpers::spawn_behind_proxy().await;
    assert_eq!(app.status_of("/readyz").await, 200);
    proxy.cut();
    assert_eq!(app.status_of("/readyz").await, 503);
    assert_eq!(app.status_of("/healthz").await, 200, "alive all the same");
    proxy.restore();
    crate::helpers::eventually("ready again once the database is back", || async {
        app.status_of("/readyz").await == 200
    })
    .await;
}

/// `imlogin serve` running as a child process; killed on drop if still running.
pub struct Binary {
    pub child: std::process::Child,
    /// host:port it listens on.
    pub addr: String,
    /// host:port of `/metrics` ("" when metrics are off).
    pub metrics_addr: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `imlogin serve` on port 0 (JSON logs, `RUST_LOG` unset unless `envs` sets it).
pub fn start_binary(envs: &[(&str, String)]) -> Binary {
    start_binary_with(&[], envs)
}

/// [`start_binary`] with arguments after `serve` (e.g. `--config FILE`).
pub fn start_binary_with(args: &[&str], envs: &[(&str, String)]) -> Binary {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("serve")
        .args(args)
        .env("IMLOGIN__SERVER__LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__LOG__FORMAT", "json")
        // Every test client comes from 127.0.0.1, many sockets a second (tests/api/limits.rs sets the limit).
        .env("IMLOGIN__LIMITS__NEW_CONNECTIONS_PER_IP_PER_SECOND", "0")
        .env_remove("RUST_LOG")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (addr, metrics_addr) = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        assert!(
            !line.contains(crate::helpers::KEY) && !line.contains("demo-session-secret"),
            "a log line shows a secret: {line}"
        );
        log.lock().unwrap().push(line.clone());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "imlogin listening" {
            break (
                v["addr"].as_str().unwrap().to_owned(),
                v["metrics_addr"].as_str().unwrap_or_default().to_owned(),
            );
        }
    };
    // Keep reading stderr so the child never blocks on a full pipe.
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Binary {
        child,
        addr,
        metrics_addr,
        log,
    }
}

#[tokio::test]
async fn binary_creates_sqlite_folder_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("nested/deeper/imlogin.db");
    let mut b = start_binary(&[(
        "IMLOGIN__DATABASE__URL",
        format!("sqlite://{}", db_path.display()),
    )]);
    assert!(
        db_path.exists(),
        "the SQLite file and its folders are created"
    );
    let r = reqwest::get(format!("http://{}/readyz", b.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let status = terminate(&mut b.child).await;
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}

#[test]
fn binary_refuses_a_bad_config_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("serve")
        .env("IMLOGIN__SESSION__HEARTBEAT_TIMEOUT_SECS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("session.heartbeat_timeout_secs"), "{err}");
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_even_with_a_stuck_client() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/x.db", dir.path().display());
    let mut b = start_binary(&[
        ("IMLOGIN__DATABASE__URL", url),
        ("IMLOGIN__SERVER__SHUTDOWN_GRACE_SECS", "1".to_owned()),
        ("IMLOGIN__SERVER__HEADER_READ_TIMEOUT_SECS", "60".to_owned()),
    ]);
    // A client that starts a request and never finishes it.
    let mut stuck = std::net::TcpStream::connect(&b.addr).unwrap();
    std::io::Write::write_all(&mut stuck, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The server has read it once a request on another connection has been answered after it.
    reqwest::get(format!("http://{}/healthz", b.addr))
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    let status = terminate(&mut b.child).await;
    let took = asked.elapsed();
    assert!(status.success(), "{status}");
    // The bound is the grace (1 s); the rest is the process starting to stop and exiting.
    assert!(
        took < Duration::from_millis(2500),
        "exited {took:?} after SIGTERM"
    );
}

/// Daily-active rows still queued when SIGTERM arrives are written before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_active_rows_queued_at_sigterm_are_written_before_exit() {
    use sqlx::Connection;
    let db = TestDb::new(Backend::Postgres).await;
    let mut b = start_binary(&[("IMLOGIN__DATABASE__URL", db.url())]);
    let addr = b.addr.clone();
    // The writer's INSERTs wait behind this lock, so the rows of later logins stay queued in the server.
    let mut lock = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE daily_active IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let login = |user: String| {
        let body = serde_json::to_value(crate::helpers::params(&user, "web")).unwrap();
        let req = http.post(format!("http://{addr}/v1/login")).json(&body);
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    };
    for i in 0..5 {
        login(format!("first-{i}")).await;
    }
    crate::helpers::eventually("the writer waits for the lock", || async {
        let mut c = sqlx::PgConnection::connect(&db.url()).await.unwrap();
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted")
            .fetch_one(&mut c)
            .await
            .unwrap();
        waiting > 0
    })
    .await;
    for i in 0..5 {
        login(format!("second-{i}")).await;
    }
    sigterm(&b.child);
    crate::helpers::eventually("the server is shutting down", || async {
        b.log().contains("shutting down")
    })
    .await;
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "still writing what is queued"
    );
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    let status = wait_exit(&mut b.child).await;
    assert!(status.success(), "{status}");
    let today = imlogin::runtime::clock::utc_date(imlogin::runtime::clock::unix_now());
    let counts = db
        .store()
        .await
        .active_counts(crate::helpers::APP, &today, &today)
        .await
        .unwrap();
    assert_eq!(
        counts,
        vec![(today, 10)],
        "every login's row is in the database"
    );
}

/// Sends SIGTERM and waits (up to 10 s) for the process to exit.
async fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    sigterm(child);
    wait_exit(child).await
}

pub fn sigterm(child: &std::process::Child) {
    signal(child, "TERM");
}

/// Sends the signal named (`TERM`, `HUP`, `KILL`) to the process.
pub fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits (up to 10 s) for the process to exit.
pub async fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    for _ in 0..400 {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    panic!("the server did not exit within 10 s of SIGTERM");
}
