//! Abuse limits (`[limits]`) on the real binary: connections per client address, the login timeout, frames per
//! second, slow request bodies, logins in progress per app.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{eventually, params, Backend, TestDb};
use crate::server::{start_binary, Binary};

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket to `path` of `b` from the source address `from`: the socket, or the HTTP status that refused it
/// (0: the connection was closed without an HTTP answer).
async fn ws_from(b: &Binary, from: &str, path: &str) -> Result<Ws, u16> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(b.addr.parse().unwrap()).await.unwrap();
    match tokio_tungstenite::client_async(format!("ws://{}{path}", b.addr), stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Io(_))
        | Err(tokio_tungstenite::tungstenite::Error::Protocol(_)) => Err(0),
        Err(e) => panic!("{e}"),
    }
}

/// The close code the server ends `ws` with (text frames before it are skipped), within 10 s.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn request(ws: &mut Ws, v: Value) -> Value {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                &*Box::leak(format!("IMLOGIN__{k}").into_boxed_str()),
                v.to_string(),
            )
        })
        .collect()
}

/// The binary on a SQLite file of its own (kept while the directory is), with one `[limits]` override.
fn binary_with(limit: (&str, &str)) -> (tempfile::TempDir, Binary) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/l.db", dir.path().display());
    let key = format!("LIMITS__{}", limit.0);
    let b = start_binary(&env(&[("DATABASE__URL", &db), (&key, limit.1)]));
    (dir, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_over_the_limit_are_refused_and_other_addresses_are_not() {
    let (_dir, b) = binary_with(("CONNECTIONS_PER_IP", "3"));
    let mut held = Vec::new();
    for path in ["/v1/ws", "/v1/ws", "/tim/binfo"] {
        held.push(ws_from(&b, "127.0.0.1", path).await.unwrap());
    }
    for path in ["/v1/ws", "/tim/binfo", "/tim/info"] {
        assert_eq!(
            ws_from(&b, "127.0.0.1", path).await.err(),
            Some(429),
            "{path}"
        );
    }
    // Another client address is another client.
    let mut other = ws_from(&b, "127.0.0.2", "/v1/ws").await.unwrap();
    let r = request(&mut other, json!({"id": 1, "op": "ping"})).await;
    assert_eq!(r["code"], 0);
    // A socket that ends gives its slot back.
    let mut one = held.pop().unwrap();
    one.close(None).await.unwrap();
    eventually("the slot to be given back", || async {
        ws_from(&b, "127.0.0.1", "/v1/ws").await.is_ok()
    })
    .await;
    // Plain HTTP is not a connection held: it is never refused for this.
    let r = reqwest::get(format!("http://{}/healthz", b.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_per_ip_a_second_over_the_limit_are_refused() {
    let (_dir, b) = binary_with(("NEW_CONNECTIONS_PER_IP_PER_SECOND", "5"));
    // A burst of twice the rate is admitted, the next is refused; another address is not.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match ws_from(&b, "127.0.0.3", "/v1/ws").await {
            Ok(ws) => held.push(ws),
            Err(status) => {
                assert_eq!(status, 429);
                refused += 1;
            }
        }
    }
    assert!(refused >= 5, "refused {refused} of 20");
    assert!(held.len() >= 10, "the burst was admitted: {}", held.len());
    assert!(ws_from(&b, "127.0.0.4", "/tim/binfo").await.is_ok());
    // The rate comes back.
    eventually("a new socket to be admitted again", || async {
        ws_from(&b, "127.0.0.3", "/v1/ws").await.is_ok()
    })
    .await;
}

/// Sends pings on `ws` until the server ends it.
async fn flood_until_closed(ws: &mut Ws) {
    for i in 0..1000 {
        let frame = json!({"id": i, "op": "ping"}).to_string();
        if ws.send(Message::Text(frame.into())).await.is_err() {
            break;
        }
    }
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_whose_sockets_are_closed_for_abuse_is_refused_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/l.db", dir.path().display());
    let b = start_binary(&env(&[
        ("DATABASE__URL", &db),
        ("LIMITS__FRAMES_PER_SECOND", "5"),
        ("LIMITS__ABUSIVE_CLOSES_PER_IP_PER_SECOND", "1"),
    ]));
    // Three sockets closed for flooding frames: the burst of twice the rate, and one that finds none left.
    for path in ["/v1/ws", "/tim/info", "/v1/ws"] {
        let mut ws = ws_from(&b, "127.0.0.5", path).await.unwrap();
        flood_until_closed(&mut ws).await;
    }
    // Tripped, each new socket pays too; with none left, connections from the address are closed as soon as
    // they are accepted, before any HTTP, whatever they ask for.
    eventually("the address to be refused", || async {
        ws_from(&b, "127.0.0.5", "/v1/ws").await.err() == Some(0)
    })
    .await;
    assert_eq!(ws_from(&b, "127.0.0.5", "/tim/binfo").await.err(), Some(0));
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let mut plain = socket.connect(b.addr.parse().unwrap()).await.unwrap();
    let _ = plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // Another address is not refused, and a client that logs in never counts.
    let mut other = ws_from(&b, "127.0.0.6", "/v1/ws").await.unwrap();
    let mut p = serde_json::to_value(params("behaves", "web")).unwrap();
    p["id"] = json!(1);
    p["op"] = json!("login");
    assert_eq!(request(&mut other, p).await["code"], 0);
    // The trip ends (2 s after the last abusive close) and the address is served again.
    eventually("the address to be admitted again", || async {
        ws_from(&b, "127.0.0.5", "/v1/ws").await.is_ok()
    })
    .await;
}

/// A WebSocket to `/v1/ws` through a trusted proxy at 127.0.0.7 for the client `client` (X-Forwarded-For).
async fn ws_via_proxy(b: &Binary, client: &str) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.7:0".parse().unwrap()).unwrap();
    let stream = socket.connect(b.addr.parse().unwrap()).await.unwrap();
    let mut req = format!("ws://{}/v1/ws", b.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_an_abusive_client_gets_429_and_the_proxy_is_never_closed_at_accept()
{
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/l.db", dir.path().display());
    let b = start_binary(&env(&[
        ("DATABASE__URL", &db),
        ("SERVER__TRUSTED_PROXIES", r#"["127.0.0.7/32"]"#),
        ("LIMITS__FRAMES_PER_SECOND", "5"),
        ("LIMITS__ABUSIVE_CLOSES_PER_IP_PER_SECOND", "1"),
    ]));
    for _ in 0..3 {
        let mut ws = ws_via_proxy(&b, "198.51.100.9").await.unwrap();
        flood_until_closed(&mut ws).await;
    }
    eventually("the forwarded client to be refused 429", || async {
        ws_via_proxy(&b, "198.51.100.9").await.err() == Some(429)
    })
    .await;
    // The proxy's other clients are served.
    assert!(ws_via_proxy(&b, "198.51.100.10").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_does_not_log_in_in_time_is_closed_1008() {
    let (_dir, b) = binary_with(("LOGIN_TIMEOUT_SECS", "1"));
    let mut idle = ws_from(&b, "127.0.0.1", "/v1/ws").await.unwrap();
    let mut sdk = ws_from(&b, "127.0.0.1", "/tim/binfo").await.unwrap();
    let mut logged_in = ws_from(&b, "127.0.0.1", "/v1/ws").await.unwrap();
    let mut p = serde_json::to_value(params("on-time", "web")).unwrap();
    p["id"] = json!(1);
    p["op"] = json!("login");
    assert_eq!(request(&mut logged_in, p).await["code"], 0);
    assert_eq!(close_code(&mut idle).await, 1008);
    assert_eq!(close_code(&mut sdk).await, 1008);
    // The logged-in socket is still served after the others were closed.
    let r = request(&mut logged_in, json!({"id": 2, "op": "ping"})).await;
    assert_eq!(r["code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_faster_than_the_limit_close_1008() {
    let (_dir, b) = binary_with(("FRAMES_PER_SECOND", "5"));
    for path in ["/v1/ws", "/tim/info"] {
        let mut ws = ws_from(&b, "127.0.0.1", path).await.unwrap();
        for i in 0..30 {
            let frame =
                json!({"id": i, "op": "ping", "head": {"servcmd": "heartbeat.alive", "seq": i}});
            if ws
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        assert_eq!(close_code(&mut ws).await, 1008, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_arrives_too_slowly_gets_408() {
    let (_dir, b) = binary_with(("BODY_READ_TIMEOUT_SECS", "1"));
    let auth = format!("Authorization: Bearer {}\r\n", crate::helpers::ADMIN_KEY);
    for (method, path, extra) in [
        ("POST", "/v1/login".to_owned(), ""),
        (
            "PUT",
            "/admin/v1/apps/1400000000/users/x".to_owned(),
            &*auth,
        ),
        (
            "POST",
            format!(
                "/v4/openim/query_online_status?{}",
                crate::helpers::v4_query_for_admin()
            ),
            "",
        ),
    ] {
        let mut s = TcpStream::connect(&b.addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
            .await
            .expect("answered and closed within 10 s")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_progress_per_app_are_bounded() {
    use sqlx::Connection;
    let db = TestDb::new(Backend::Postgres).await;
    let mut env = db.binary_env();
    env.push(("IMLOGIN__LIMITS__LOGINS_IN_PROGRESS_PER_APP", "1".into()));
    let b = start_binary(&env);
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/login", b.addr);
    let login = |user: &str| http.post(&url).json(&params(user, "web")).send();
    // A user logged in once logs in from the cache after that, without the database.
    assert_eq!(login("known").await.unwrap().status(), 200);
    // The accounts table locked by another session: a new user's login waits for it, in progress.
    let mut locker = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let waiting = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { http.post(url).json(&params("waiting", "web")).send().await })
    };
    // Only once it waits on the lock is it in progress: a login sent before might take the one slot first.
    let mut watcher = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let mut blocked = false;
    for _ in 0..400 {
        let waiters: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiters > 0 {
            blocked = true;
            break;
        }
        assert!(!waiting.is_finished(), "{:?}", waiting.await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        blocked,
        "the new user's login never waited on the locked table"
    );
    // Any other login of the app is refused at once while it waits, even one that needs no database.
    let mut refused = Value::Null;
    for _ in 0..400 {
        assert!(
            !waiting.is_finished(),
            "the new user's login ended while the table was locked: {:?}",
            waiting.await
        );
        let v: Value = login("known").await.unwrap().json().await.unwrap();
        if v["message"]
            .as_str()
            .is_some_and(|m| m.contains("in progress"))
        {
            refused = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(refused["code"], 70169);
    // The lock released, the waiting login completes and the app's logins are admitted again.
    lock.rollback().await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap().status(), 200);
    assert_eq!(login("known").await.unwrap().status(), 200);
}
