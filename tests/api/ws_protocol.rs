//! PROTOCOL §3: the envelope, bad frames, ops before login, limits, heartbeat, close codes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use imlogin::client::{ClientEvent, LoginParams};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{event, params, spawn_on, Backend, TestApp};

crate::both_configs!(
    ops_before_login,
    bad_frames_get_6017_with_or_without_id,
    missing_and_mistyped_login_fields,
    login_answers_every_field,
    oversize_message_closes_1009,
    heartbeat_timeout_closes_4003,
    shutdown_closes_1012,
);

async fn ops_before_login(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    let t = c.ping().await.unwrap();
    assert!((t - (imlogin::runtime::clock::unix_now() * 1000)).abs() < 5000);
    assert_eq!(c.status().await.unwrap(), 3);
    assert_eq!(c.login_user().await.unwrap(), "");
    for op in ["logout", "renew_sig"] {
        let r = c.request(op, json!({"user_sig": "x"})).await.unwrap();
        assert_eq!(r.code, 6014, "{op}");
        assert!(!r.message.is_empty() && r.data.is_none());
    }
    // Ids are echoed exactly, up to 2^64-1, and unknown extra fields are ignored.
    c.send_raw(r#"{"id":18446744073709551615,"op":"ping","extra":{"x":1}}"#)
        .unwrap();
    let mut raw = raw_ws(&app).await;
    raw.send(Message::Text(
        r#"{"id":18446744073709551615,"op":"ping"}"#.into(),
    ))
    .await
    .unwrap();
    let v = next_json(&mut raw).await;
    assert_eq!(v["id"].as_u64(), Some(u64::MAX));
    assert_eq!(v["code"], 0);
    assert!(v["data"]["server_time_ms"].is_i64());
}

async fn raw_ws(
    app: &TestApp,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(app.ws_url())
        .await
        .unwrap()
        .0
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn bad_frames_get_6017_with_or_without_id(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut ws = raw_ws(&app).await;
    for bad in [
        "not json",
        "[1,2]",
        "42",
        "{}",
        r#"{"id":-1,"op":"ping"}"#,
        r#"{"id":1.5,"op":"ping"}"#,
        r#"{"id":18446744073709551616,"op":"ping"}"#,
        r#"{"id":"7","op":"ping"}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
        let v = next_json(&mut ws).await;
        assert_eq!(
            (v["id"].clone(), v["code"].clone()),
            (Value::Null, json!(6017)),
            "{bad}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(v.get("data").is_none());
    }
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let v = next_json(&mut ws).await;
    assert_eq!(
        (v["id"].clone(), v["code"].clone()),
        (Value::Null, json!(6017))
    );
    for (frame, id) in [
        (r#"{"id":5}"#, 5),
        (r#"{"id":6,"op":"fly"}"#, 6),
        (r#"{"id":7,"op":null}"#, 7),
    ] {
        ws.send(Message::Text(frame.into())).await.unwrap();
        let v = next_json(&mut ws).await;
        assert_eq!(
            (v["id"].as_u64(), v["code"].as_u64()),
            (Some(id), Some(6017)),
            "{frame}"
        );
    }
    // The connection is still usable.
    ws.send(Message::Text(r#"{"id":8,"op":"get_login_status"}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["data"]["status"], 3);
}

async fn missing_and_mistyped_login_fields(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    let p = params("fields", "android");
    let good = serde_json::to_value(&p).unwrap();
    for (field, value, code) in [
        ("sdkappid", Value::Null, 6017),
        ("sdkappid", json!("1400000000"), 6017),
        ("user_id", json!(12), 6017),
        ("user_sig", json!(null), 6017),
        ("platform", json!("ios"), 6017),
        ("platform", json!("Android"), 6017),
        ("device_id", json!("x".repeat(65)), 6017),
        ("user_id", json!("@TLS#admin"), 7003),
        ("user_sig", json!(""), 70002),
        ("user_sig", json!("not-a-ticket"), 70003),
        ("sdkappid", json!(1), 70020),
    ] {
        let mut req = good.clone();
        if value.is_null() {
            req.as_object_mut().unwrap().remove(field);
        } else {
            req[field] = value.clone();
        }
        let r = c.request("login", req).await.unwrap();
        assert_eq!(r.code, code, "{field} = {value}");
    }
    let r = c.request("resume", json!({})).await.unwrap();
    assert_eq!(r.code, 6017);
    let r = c
        .request("resume", json!({"session_token": 5}))
        .await
        .unwrap();
    assert_eq!(r.code, 6017);
    assert_eq!(c.status().await.unwrap(), 3);
}

async fn login_answers_every_field(backend: Backend) {
    let (db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    let mut p = params("fresh-user", "iphone");
    p.device_id = Some("device 1".into());
    let r = c
        .request("login", serde_json::to_value(&p).unwrap())
        .await
        .unwrap();
    assert_eq!((r.code, r.message.as_str()), (0, ""));
    let d = r.data.unwrap();
    assert_eq!(d["user_id"], "fresh-user");
    assert_eq!(d["platform"], "iphone");
    assert!(d["instance_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(d["session_token"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(d["sig_expires_at"].as_i64().unwrap() > imlogin::runtime::clock::unix_now());
    assert_eq!(d["repeat_login"], false);
    assert!(d.get("resumed").is_none());
    assert_eq!(c.status().await.unwrap(), 1);
    assert_eq!(c.login_user().await.unwrap(), "fresh-user");
    // Registered durably before success was sent.
    assert!(db
        .store()
        .await
        .get(crate::helpers::APP, "fresh-user")
        .await
        .unwrap()
        .is_some());
}

async fn oversize_message_closes_1009(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("SERVER__MAX_FRAME_BYTES", "1024")]).await;
    let mut c = app.connect().await;
    // Exactly the limit is fine.
    let pad = "x".repeat(1024 - r#"{"id":1,"op":"ping","pad":""}"#.len());
    let r = c.request("ping", json!({"pad": pad})).await.unwrap();
    assert_eq!(r.code, 0);
    c.send_raw(format!(
        r#"{{"id":2,"op":"ping","pad":"{}"}}"#,
        "x".repeat(2000)
    ))
    .unwrap();
    match event(&mut c).await {
        ClientEvent::Closed { code, .. } => assert_eq!(code, Some(1009)),
        other => panic!("expected close 1009, got {other:?}"),
    }
    // A message split into small fragments is limited after reassembly too.
    let mut ws = raw_ws(&app).await;
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::Data, coding::OpCode, Frame};
    let chunk = "y".repeat(600);
    ws.send(Message::Frame(Frame::message(
        chunk.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        chunk,
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(closed, 1009);
}

/// A client still sending a large message when the server closes must read the close code: the server
/// half-closes and drains its input instead of closing with input unread (which makes the kernel reset the
/// connection and discard the close frame before the client reads it). Every time, not most times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mib_message_gets_1009_every_time() {
    use tokio::io::AsyncWriteExt;
    let (_db, app) = spawn_on(Backend::Sqlite, &[]).await;
    let tries = (0..10).map(|_| async {
        let mut ws = raw_ws(&app).await;
        // One masked text frame of 1 MiB (mask key 0, so the payload goes as it is), written in pieces, as a
        // client on a slow link sends it, and read only once all is sent, as a blocking client would.
        let len: u64 = 1 << 20;
        let mut frame = vec![0x81, 0x80 | 127];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.resize(frame.len() + len as usize, b'x');
        let raw = match ws.get_mut() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
            _ => unreachable!("plain TCP"),
        };
        for chunk in frame.chunks(64 * 1024) {
            if raw.write_all(chunk).await.is_err() {
                // Reset by the server: what a client library reports as 1006 (abnormal closure).
                return 1006;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an answer within 10 s")
            {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(_)) => continue,
                other => panic!("expected close 1009, got {other:?}"),
            }
        }
    });
    for code in futures_util::future::join_all(tries).await {
        assert_eq!(code, 1009);
    }
}

/// A client that closes first gets its close frame answered with the same code, then the server closes the
/// socket itself (RFC 6455 §7.1.1): the client reads the end of the stream, not a reset, and need not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_from_the_client_is_answered_then_the_server_closes_the_socket() {
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let (_db, app) = spawn_on(Backend::Sqlite, &[]).await;
    for _ in 0..10 {
        let mut ws = raw_ws(&app).await;
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer within 5 s")
        {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
            other => panic!("expected the close frame answered, got {other:?}"),
        }
        let mut raw = match ws.into_inner() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
            _ => unreachable!("plain TCP"),
        };
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest))
            .await
            .expect("the server closes the socket within 5 s");
        assert_eq!(read.unwrap(), 0, "{rest:?}");
    }
}

/// Over a real socket (the timing cases run on a paused clock in the connection's unit tests).
async fn heartbeat_timeout_closes_4003(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("SESSION__HEARTBEAT_TIMEOUT_SECS", "1")]).await;
    let mut silent = app.connect().await;
    silent.login(&params("hb", "web")).await.unwrap();
    match event(&mut silent).await {
        ClientEvent::Closed { code, .. } => assert_eq!(code, Some(4003)),
        other => panic!("{other:?}"),
    }
}

async fn shutdown_closes_1012(backend: Backend) {
    let (_db, mut app) = spawn_on(backend, &[]).await;
    let mut c = app.connect().await;
    c.login(&params("bye", "mac")).await.unwrap();
    app.stop();
    match event(&mut c).await {
        ClientEvent::Closed { code, .. } => assert_eq!(code, Some(1012)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_login_in_progress() {
    // A database that stops answering keeps a new user's login in progress for the pool's timeout.
    let (_db, proxy, app) = crate::helpers::spawn_behind_proxy().await;
    let c = app.connect().await;
    proxy.stall();
    let p: LoginParams = params("slowpoke", "linux");
    let login = c.request("login", serde_json::to_value(&p).unwrap());
    let during = async {
        crate::helpers::eventually("the login is in progress", || async {
            c.status().await.unwrap() == 2
        })
        .await;
        let status = c.status().await.unwrap();
        let user = c.login_user().await.unwrap();
        let ping = c.request("ping", json!({})).await.unwrap().code;
        let second = c
            .request(
                "login",
                serde_json::to_value(params("other", "linux")).unwrap(),
            )
            .await
            .unwrap()
            .code;
        let resume = c
            .request("resume", json!({"session_token": "x"}))
            .await
            .unwrap()
            .code;
        (status, user, ping, second, resume)
    };
    let logout_after = async {
        crate::helpers::eventually("the login is in progress", || async {
            c.status().await.unwrap() == 2
        })
        .await;
        c.request("logout", json!({})).await.unwrap()
    };
    let (first, during, logout) = tokio::join!(login, during, logout_after);
    assert_eq!(during, (2, String::new(), 0, 7501, 7501));
    let first = first.unwrap();
    assert_eq!(first.code, 70169, "a new user without a reachable database");
    // The queued logout is answered after the login, in order: not logged in.
    assert_eq!(logout.code, 6014);
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_requests_behind_a_login_closes_1008() {
    let (_db, proxy, app) = crate::helpers::spawn_behind_proxy().await;
    let mut c = app.connect().await;
    proxy.stall();
    let p = serde_json::to_value(params("flooder", "web")).unwrap();
    let mut frame = p.as_object().unwrap().clone();
    frame.insert("id".into(), json!(1));
    frame.insert("op".into(), json!("login"));
    c.send_raw(Value::Object(frame).to_string()).unwrap();
    crate::helpers::eventually("the login is in progress", || async {
        c.status().await.unwrap() == 2
    })
    .await;
    // 64 requests may wait behind the login; the 65th is abuse.
    for id in 2..=66 {
        c.send_raw(format!(r#"{{"id":{id},"op":"logout"}}"#))
            .unwrap();
    }
    match event(&mut c).await {
        ClientEvent::Closed { code, .. } => assert_eq!(code, Some(1008)),
        other => panic!("expected close 1008, got {other:?}"),
    }
    proxy.restore();
}
