//! The serving skeleton: health, readiness, and the real binary's start and clean SIGTERM shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{test_settings, Backend, TestApp, TestDb};

#[tokio::test]
async fn healthz_and_readyz_on_sqlite() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(test_settings(&db.url()), db.store().await).await;
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

/// Starts `imlogin serve` on port 0 and returns the child and the address it logged.
pub fn start_binary(envs: &[(&str, String)]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("serve")
        .env("IMLOGIN__SERVER__LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        assert!(
            !line.contains(crate::helpers::KEY) && !line.contains("demo-session-secret"),
            "a log line shows a secret: {line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "imlogin listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test]
async fn binary_creates_sqlite_folder_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("nested/deeper/imlogin.db");
    let (mut child, addr) = start_binary(&[(
        "IMLOGIN__DATABASE__URL",
        format!("sqlite://{}", db_path.display()),
    )]);
    assert!(
        db_path.exists(),
        "the SQLite file and its folders are created"
    );
    let r = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let status = terminate(&mut child).await;
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
    let (mut child, addr) = start_binary(&[
        ("IMLOGIN__DATABASE__URL", url),
        ("IMLOGIN__SERVER__SHUTDOWN_GRACE_SECS", "1".to_owned()),
    ]);
    // A client that starts a request and never finishes it.
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut stuck, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let status = terminate(&mut child).await;
    assert!(status.success(), "{status}");
}

/// Sends SIGTERM and waits (up to 10 s) for the process to exit.
async fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    panic!("the server did not exit within 10 s of SIGTERM");
}
