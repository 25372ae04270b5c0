//! PROTOCOL §9: State.StateChange webhooks to a real HTTP receiver: order, fields, signing, retries, dead
//! letters, a crash with events in the outbox; the flush at SIGTERM ([`shutdown`]), receivers that answer badly
//! ([`receivers`]) and one app's stalled receiver beside another's ([`fairness`]).

mod fairness;
mod receivers;
mod shutdown;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{eventually, params, spawn_on, Backend, TestApp, APP};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// HTTP 500.
    Fail,
    /// Never answers.
    Hang,
    /// 200 with a body that is not JSON.
    Garbage,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub query: HashMap<String, String>,
    pub body: Value,
    /// Answered 200 with JSON: delivered.
    pub delivered: bool,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(mode));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = (hits.clone(), mode.clone());
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, hits, mode }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The delivered events of one user, in arrival order.
    pub fn delivered(&self, user: &str) -> Vec<Value> {
        self.hits()
            .into_iter()
            .filter(|h| h.delivered && h.body["Info"]["To_Account"] == user)
            .map(|h| h.body)
            .collect()
    }
}

type ReceiverState = (Arc<Mutex<Vec<Hit>>>, Arc<Mutex<Mode>>);

async fn receive(
    State((hits, mode)): State<ReceiverState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mode = *mode.lock().unwrap();
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    hits.lock().unwrap().push(Hit {
        query,
        body,
        delivered: mode == Mode::Ok,
    });
    match mode {
        Mode::Ok => axum::Json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}))
            .into_response(),
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Garbage => "surely not json".into_response(),
        Mode::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// Overrides that point the demo app's webhook at `r`.
fn webhook_env(
    r: &Receiver,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("APPS__0__WEBHOOK__URL", r.url()),
        ("APPS__0__WEBHOOK__TOKEN", "the-webhook-token".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

async fn spawn_with_webhook(
    backend: Backend,
    r: &Receiver,
    extra: &[(&'static str, &'static str)],
) -> (crate::helpers::TestDb, TestApp) {
    let env = webhook_env(r, extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_on(backend, &env).await
}

crate::both_configs!(
    every_state_change_arrives_in_seq_order_signed,
    a_failing_receiver_gets_retries_then_a_dead_letter,
    garbage_and_hangs_count_as_failures,
    connections_reset_by_the_receiver_are_retried_until_delivered,
);

async fn every_state_change_arrives_in_seq_order_signed(backend: Backend) {
    let r = Receiver::start(Mode::Ok).await;
    let (_db, app) = spawn_with_webhook(backend, &r, &[]).await;
    let a = app.connect().await;
    a.login(&params("hooked", "android")).await.unwrap();
    // Another phone of the same class takes the slot: one Login event with the kicked device.
    let b = app.connect().await;
    b.login(&params("hooked", "iphone")).await.unwrap();
    b.logout().await.unwrap();
    let web = app.connect().await;
    let l = web.login(&params("hooked", "web")).await.unwrap();
    web.close();
    drop(web);
    eventually("the web instance is disconnected", || async {
        let i = app
            .state
            .sessions
            .user_instances(APP, "hooked")
            .await
            .unwrap();
        i.len() == 1 && !i[0].is_online()
    })
    .await;
    let back = app.connect().await;
    back.resume(&l.session_token).await.unwrap();
    let (s, _) = app.native(Method::POST, "/users/hooked/kick", None).await;
    assert_eq!(s, 200);
    let expected = [
        ("Login", "Register", "login", "Android"),
        ("Login", "Register", "login", "IOS"),
        ("Logout", "Unregister", "logout", "IOS"),
        ("Login", "Register", "login", "Web"),
        ("Disconnect", "LinkClose", "disconnect", "Web"),
        ("Login", "Register", "resume", "Web"),
        ("Logout", "Unregister", "admin_kick", "RESTAPI"),
    ];
    eventually("every event is delivered", || async {
        r.delivered("hooked").len() == expected.len()
    })
    .await;
    let events = r.delivered("hooked");
    let hits: Vec<Hit> = r
        .hits()
        .into_iter()
        .filter(|h| h.body["Info"]["To_Account"] == "hooked")
        .collect();
    let mut last_seq = 0;
    for ((ev, hit), (action, reason, cause, platform)) in events.iter().zip(&hits).zip(expected) {
        assert_eq!(ev["CallbackCommand"], "State.StateChange");
        assert_eq!(
            (ev["Info"]["Action"].as_str(), ev["Info"]["Reason"].as_str()),
            (Some(action), Some(reason)),
            "{ev}"
        );
        assert_eq!(ev["Cause"], cause);
        let seq = ev["Seq"].as_u64().unwrap();
        assert!(seq > last_seq, "Seq increases: {events:?}");
        last_seq = seq;
        assert!(ev["EventId"].as_str().is_some_and(|id| id.len() == 32));
        assert!(ev["EventTime"].as_i64().unwrap() > 1_700_000_000_000);
        let q = &hit.query;
        assert_eq!(q["SdkAppid"], APP.to_string());
        assert_eq!(q["CallbackCommand"], "State.StateChange");
        assert_eq!(q["contenttype"], "json");
        assert_eq!(q["ClientIP"], "127.0.0.1");
        assert_eq!(q["OptPlatform"], platform, "{ev}");
        let expected_sign = imlogin::webhooks::delivery::sign(
            "the-webhook-token",
            q["RequestTime"].parse().unwrap(),
        );
        assert_eq!(q["Sign"], expected_sign);
    }
    assert_eq!(events[1]["KickedDevice"], json!([{"Platform": "Android"}]));
    assert!(events[0].get("KickedDevice").is_none());
}

async fn a_failing_receiver_gets_retries_then_a_dead_letter(backend: Backend) {
    let r = Receiver::start(Mode::Fail).await;
    let (_db, app) =
        spawn_with_webhook(backend, &r, &[("APPS__0__WEBHOOK__MAX_ATTEMPTS", "3")]).await;
    // Connected throughout: the login is the only event.
    let retried = app.connect().await;
    retried.login(&params("retried", "web")).await.unwrap();
    eventually("two attempts failed", || async { r.hits().len() == 2 }).await;
    r.set(Mode::Ok);
    eventually("the third attempt is delivered", || async {
        r.delivered("retried").len() == 1
    })
    .await;
    let hits = r.hits();
    let times: Vec<i64> = hits
        .iter()
        .map(|h| h.query["RequestTime"].parse().unwrap())
        .collect();
    assert!(
        times[2] - times[0] >= 2,
        "1 s then 2 s of backoff: {times:?}"
    );
    assert!(
        hits.iter().all(|h| h.body == hits[0].body),
        "the same event each time"
    );
    for h in &hits {
        let t: i64 = h.query["RequestTime"].parse().unwrap();
        assert_eq!(
            h.query["Sign"],
            imlogin::webhooks::delivery::sign("the-webhook-token", t),
            "signed per attempt"
        );
    }
    // Always failing: after max_attempts, a dead letter.
    r.set(Mode::Fail);
    let dead_user = app.connect().await;
    dead_user.login(&params("dead", "web")).await.unwrap();
    let dead = || async {
        let (_, page) = app
            .native(Method::GET, "/webhooks/dead_letters", None)
            .await;
        page["events"].as_array().cloned().unwrap_or_default()
    };
    eventually("it is dead-lettered", || async { dead().await.len() == 1 }).await;
    let letters = dead().await;
    let letter = &letters[0];
    assert_eq!(
        (letter["user_id"].as_str(), letter["attempts"].as_u64()),
        (Some("dead"), Some(3))
    );
    assert!(
        letter["last_error"].as_str().unwrap().contains("500"),
        "{letter}"
    );
    assert_eq!(letter["body"]["Info"]["To_Account"], "dead");
    // Retried once the receiver works: delivered, and no longer a dead letter.
    r.set(Mode::Ok);
    let id = letter["event_id"].as_str().unwrap();
    assert_eq!(
        app.native(
            Method::POST,
            &format!("/webhooks/dead_letters/{id}/retry"),
            None
        )
        .await
        .0,
        204
    );
    eventually("the retried letter is delivered", || async {
        r.delivered("dead").len() == 1
    })
    .await;
    assert!(dead().await.is_empty());
    assert_eq!(
        app.native(
            Method::POST,
            &format!("/webhooks/dead_letters/{id}/retry"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.native(
            Method::DELETE,
            &format!("/webhooks/dead_letters/{id}"),
            None
        )
        .await
        .0,
        404
    );
    // Dropped: gone for good.
    r.set(Mode::Fail);
    app.connect()
        .await
        .login(&params("dropped", "web"))
        .await
        .unwrap();
    eventually("dead-lettered again", || async { dead().await.len() == 1 }).await;
    let id = dead().await[0]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.native(
            Method::DELETE,
            &format!("/webhooks/dead_letters/{id}"),
            None
        )
        .await
        .0,
        204
    );
    assert!(dead().await.is_empty());
}

async fn garbage_and_hangs_count_as_failures(backend: Backend) {
    let r = Receiver::start(Mode::Garbage).await;
    let (_db, app) = spawn_with_webhook(
        backend,
        &r,
        &[
            ("APPS__0__WEBHOOK__MAX_ATTEMPTS", "2"),
            ("APPS__0__WEBHOOK__TIMEOUT_MS", "300"),
        ],
    )
    .await;
    app.connect()
        .await
        .login(&params("g", "web"))
        .await
        .unwrap();
    eventually("a retry after garbage", || async { r.hits().len() == 1 }).await;
    r.set(Mode::Hang);
    let dead = || async {
        let (_, page) = app
            .native(Method::GET, "/webhooks/dead_letters", None)
            .await;
        page["events"].as_array().cloned().unwrap_or_default()
    };
    eventually(
        "the hang times out and the event is dead-lettered",
        || async { dead().await.len() == 1 },
    )
    .await;
    let letters = dead().await;
    assert!(
        letters[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("request failed"),
        "{letters:?}"
    );
    // A login never waits for the receiver.
    app.connect()
        .await
        .login(&params("g2", "web"))
        .await
        .unwrap();
}

/// Events written to the outbox survive a kill -9 and are delivered after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_the_outbox_survive_a_crash() {
    let r = Receiver::start(Mode::Hang).await;
    let db = crate::helpers::TestDb::new(Backend::Postgres).await;
    let mut env = db.binary_env();
    env.extend(
        webhook_env(&r, &[("APPS__0__WEBHOOK__TIMEOUT_MS", "200")])
            .into_iter()
            .map(|(k, v)| {
                (
                    match k {
                        "APPS__0__WEBHOOK__URL" => "IMLOGIN__APPS__0__WEBHOOK__URL",
                        "APPS__0__WEBHOOK__TOKEN" => "IMLOGIN__APPS__0__WEBHOOK__TOKEN",
                        _ => "IMLOGIN__APPS__0__WEBHOOK__TIMEOUT_MS",
                    },
                    v,
                )
            }),
    );
    let mut b = crate::server::start_binary(&env);
    let http = reqwest::Client::new();
    for i in 0..5 {
        let r = http
            .post(format!("http://{}/v1/login", b.addr))
            .json(&params(&format!("crash-{i}"), "web"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let outbox = db.database().await.outbox;
    eventually("the events are in the outbox", || async {
        outbox.outbox_pending().await.unwrap() == 5
    })
    .await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    r.set(Mode::Ok);
    let _b = crate::server::start_binary(&env);
    eventually("delivered after the restart", || async {
        (0..5).all(|i| !r.delivered(&format!("crash-{i}")).is_empty())
    })
    .await;
    eventually("and deleted", || async {
        outbox.outbox_pending().await.unwrap() == 0
    })
    .await;
}

/// A fresh database of `backend` and the binary serving on it (in that configuration), the demo app's webhook
/// pointed at `url`.
async fn binary_on(
    backend: Backend,
    url: &str,
    extra: &[(&'static str, &str)],
) -> (crate::helpers::TestDb, crate::server::Binary) {
    let db = crate::helpers::TestDb::new(backend).await;
    let mut env = db.binary_env();
    env.extend([
        ("IMLOGIN__APPS__0__WEBHOOK__URL", url.to_owned()),
        // Its log (printed by a failing test) says what delivery did and why.
        ("RUST_LOG", "imlogin=debug".to_owned()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let b = crate::server::start_binary(&env);
    (db, b)
}

/// In front of a receiver: resets (RST) the first `resets` connections without answering, then relays to it.
async fn resetting_relay(to: SocketAddr, resets: usize) -> (String, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reset = Arc::new(Mutex::new(0));
    let counted = reset.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut n = counted.lock().unwrap();
            if *n < resets {
                *n += 1;
                // Linger 0: the close is a reset, as a crashing receiver or a middlebox sends.
                let _ = socket.set_zero_linger();
                drop(socket);
                continue;
            }
            drop(n);
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
            });
        }
    });
    (format!("http://{addr}/hook"), reset)
}

async fn connections_reset_by_the_receiver_are_retried_until_delivered(backend: Backend) {
    let r = Receiver::start(Mode::Ok).await;
    let (url, resets) = resetting_relay(r.addr, 2).await;
    let (_db, app) = spawn_on(
        backend,
        &[
            ("APPS__0__WEBHOOK__URL", url.as_str()),
            ("APPS__0__WEBHOOK__MAX_ATTEMPTS", "5"),
        ],
    )
    .await;
    let c = app.connect().await;
    c.login(&params("reset", "web")).await.unwrap();
    // The first attempt and its retry (1 s later) are reset; the third (2 s after) is delivered.
    for _ in 0..200 {
        if !r.delivered("reset").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*resets.lock().unwrap(), 2, "two connections were reset");
    let events = r.delivered("reset");
    assert_eq!(events.len(), 1, "delivered once, after the resets");
    assert_eq!(events[0]["Info"]["Action"], "Login");
    let (_, page) = app
        .native(Method::GET, "/webhooks/dead_letters", None)
        .await;
    assert_eq!(page["events"], json!([]), "no dead letter");
}
