//! What someone without a valid ticket can make the server hold, and what must never reach the log: each
//! against the real binary where the outside can see it.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{params, spawn_on, Backend};
use crate::server::{start_binary, Binary};

fn sqlite_env(dir: &tempfile::TempDir) -> (&'static str, String) {
    (
        "IMLOGIN__DATABASE__URL",
        format!("sqlite://{}/x.db", dir.path().display()),
    )
}

/// The sockets the server holds open (database files open lazily, so they are left out).
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Waits (up to `within`) until the server holds `files` open files.
async fn open_files_become(b: &Binary, files: usize, within: Duration) -> bool {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        if open_files(b.pid()) == files {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_login_body_over_the_limit_is_refused_413_unread() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[sqlite_env(&dir)]);
    let http = reqwest::Client::new();
    let huge =
        json!({"sdkappid": 1, "user_id": "x".repeat(1 << 20), "user_sig": "s", "platform": "web"});
    let r = http
        .post(format!("http://{}/v1/login", b.addr))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], 6017);
    // A normal login still fits.
    let r = http
        .post(format!("http://{}/v1/login", b.addr))
        .json(&params("fits", "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The per-user throttle counts only valid UserIDs, so whatever UserIDs failed logins name, they add no keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_with_invalid_user_ids_add_no_throttle_keys() {
    // 55 requests in a row on one connection: more than the default frame rate allows.
    let (_db, app) = spawn_on(Backend::Sqlite, &[("LIMITS__FRAMES_PER_SECOND", "1000")]).await;
    let c = app.connect().await;
    for i in 0..50 {
        let mut p = serde_json::to_value(params("x", "web")).unwrap();
        p["user_id"] = json!(format!("{i}{}", "y".repeat(8000)));
        assert_eq!(c.request("login", p).await.unwrap().code, 7003);
    }
    for i in 0..5 {
        let mut p = serde_json::to_value(params(&format!("valid-{i}"), "web")).unwrap();
        p["user_sig"] = json!("not-a-ticket");
        assert_eq!(c.request("login", p).await.unwrap().code, 70003);
    }
    let (clients, users) = app.state.sessions.auth().throttle().len();
    assert_eq!((clients, users), (1, 5));
}

/// A client that floods requests and never reads its answers is dropped: the heartbeat fires even while the
/// server waits to write, and every write has a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[
        sqlite_env(&dir),
        ("IMLOGIN__SESSION__HEARTBEAT_TIMEOUT_SECS", "3".into()),
        // The frame-rate limit would close this client first: the write side is what is tested here.
        ("IMLOGIN__LIMITS__FRAMES_PER_SECOND", "1000000".into()),
    ]);
    let before = open_files(b.pid());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(b.addr.parse().unwrap()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/v1/ws", b.addr), stream)
        .await
        .unwrap();
    let flood_until = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut id = 0u64;
    while tokio::time::Instant::now() < flood_until {
        id += 1;
        let frame = Message::Text(format!(r#"{{"id":{id},"op":"ping"}}"#).into());
        if tokio::time::timeout_at(flood_until, ws.send(frame))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(open_files(b.pid()), before + 1, "connected");
    // Silent from here on, never reading: the heartbeat (3 s) plus the close's linger (2 s), with room for a
    // loaded machine.
    assert!(
        open_files_become(&b, before, Duration::from_secs(20)).await,
        "the server still holds the connection of a client that never reads"
    );
    drop(ws);
}

#[tokio::test]
async fn a_request_head_that_never_completes_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[
        sqlite_env(&dir),
        ("IMLOGIN__SERVER__HEADER_READ_TIMEOUT_SECS", "1".into()),
    ]);
    let mut half = tokio::net::TcpStream::connect(&b.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), half.read(&mut buf))
        .await
        .expect("the server closes within the header timeout");
    // Closed: end of stream, or an error status before it, or a reset.
    if let Ok(n) = read {
        assert!(n == 0 || buf.starts_with(b"HTTP/1.1 4"), "{:?}", &buf[..n]);
    }
    // An idle keep-alive connection is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(&b.addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("an idle connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)));
}

/// Whatever `RUST_LOG` says, no frame, ticket or session token reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_carry_no_ticket_and_no_session_token() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[sqlite_env(&dir), ("RUST_LOG", "trace".into())]);
    let p = params("logged", "web");
    let client = imlogin::client::Client::connect(&format!("ws://{}/v1/ws", b.addr))
        .await
        .unwrap();
    let login = client.login(&p).await.unwrap();
    client.renew_sig(&p.user_sig).await.unwrap();
    let again = imlogin::client::Client::connect(&format!("ws://{}/v1/ws", b.addr))
        .await
        .unwrap();
    again.resume(&login.session_token).await.unwrap();
    reqwest::Client::new()
        .get(format!("http://{}/v1/session", b.addr))
        .bearer_auth(&login.session_token)
        .send()
        .await
        .unwrap();
    again.logout().await.unwrap();
    // Stopped, it has written every line.
    let mut b = b;
    crate::server::sigterm(&b.child);
    crate::server::wait_exit(&mut b.child).await;
    let log = b.log();
    assert!(log.lines().count() > 5, "trace logging is on: {log}");
    for (what, secret) in [
        ("UserSig", p.user_sig.as_str()),
        ("session token", login.session_token.as_str()),
    ] {
        // Any sizeable piece of it counts.
        let piece = &secret[secret.len() / 2..secret.len() / 2 + 24];
        assert!(!log.contains(piece), "the {what} is in the log");
    }
}

#[tokio::test]
async fn apps_that_share_a_jwt_key_must_each_set_their_own_audience() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shared.toml");
    let app = |id: u32, audience: Option<&str>| {
        format!(
            "[[apps]]\nsdkappid = {id}\nsecret_key = \"key-{id}\"\nadmins = [\"admin\"]\n\
             [apps.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"one-shared-jwt-secret\"\n{}\n",
            audience
                .map(|a| format!("audience = \"{a}\""))
                .unwrap_or_default()
        )
    };
    let run = |text: String| {
        std::fs::write(&config, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_imlogin"))
            .args(["check-config", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run(app(1, None) + &app(2, Some("two")));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apps[0].jwt.audience") && err.contains("share a JWT key"),
        "{err}"
    );
    let out = run(app(1, Some("same")) + &app(2, Some("same")));
    assert_eq!(
        out.status.code(),
        Some(2),
        "the same audience does not separate them"
    );
    let out = run(app(1, Some("one")) + &app(2, Some("two")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The binary refuses to start on such a file too.
    let serve = std::process::Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env(
            "IMLOGIN__DATABASE__URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .env("IMLOGIN__SERVER__LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__APPS__0__JWT__AUDIENCE", "two")
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2));
}
