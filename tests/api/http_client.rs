//! PROTOCOL §6 (HTTP for clients) and §8 (daily active users).

use imlogin::client::ClientEvent;
use serde_json::{json, Value};

use crate::helpers::{event, params, sig, spawn_on, Backend, TestApp, APP};

crate::both_configs!(
    http_login_then_resume_on_the_websocket,
    http_logout_tells_the_attached_connection,
    http_statuses_follow_the_codes,
    http_login_counts_under_the_policy,
    daily_active_users_count_logins_once,
);

async fn post_login(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/v1/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn post_logout(app: &TestApp, token: &str) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/v1/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get_session(app: &TestApp, token: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.url("/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn http_login_then_resume_on_the_websocket(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let (status, body) = post_login(&app, serde_json::to_value(params("hl", "web")).unwrap()).await;
    assert_eq!(
        (status, body["code"].as_u64(), body["message"].as_str()),
        (200, Some(0), Some(""))
    );
    let data = &body["data"];
    assert_eq!(
        (
            data["user_id"].as_str(),
            data["platform"].as_str(),
            data["repeat_login"].as_bool()
        ),
        (Some("hl"), Some("web"), Some(false))
    );
    let token = data["session_token"].as_str().unwrap();
    let (s, b) = get_session(&app, token).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["state"], "disconnected");
    assert_eq!(b["data"]["instance_id"], data["instance_id"]);
    assert_eq!(b["data"]["sig_expires_at"], data["sig_expires_at"]);
    let c = app.connect().await;
    let r = c.resume(token).await.unwrap();
    assert!(r.resumed);
    assert_eq!(get_session(&app, token).await.1["data"]["state"], "online");
}

async fn http_logout_tells_the_attached_connection(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut c = app.connect().await;
    let l = c.login(&params("hlo", "android")).await.unwrap();
    let (s, b) = post_logout(&app, &l.session_token).await;
    assert_eq!(
        (s, b["code"].as_u64(), b["data"].clone()),
        (200, Some(0), json!({}))
    );
    assert_eq!(
        event(&mut c).await,
        ClientEvent::LoggedOut {
            reason: "http_logout".into()
        }
    );
    assert_eq!(c.status().await.unwrap(), 3);
    let (s, b) = get_session(&app, &l.session_token).await;
    assert_eq!((s, b["code"].as_u64()), (401, Some(6026)));
    assert_eq!(post_logout(&app, &l.session_token).await.0, 401);
}

async fn http_statuses_follow_the_codes(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("LIMITS__LOGIN_FAILURES_PER_MINUTE", "20")]).await;
    let p = serde_json::to_value(params("hs", "web")).unwrap();
    let with = |k: &str, v: Value| {
        let mut b = p.clone();
        b[k] = v;
        b
    };
    let now = imlogin::runtime::clock::unix_now() as u64;
    let cases = [
        (with("platform", json!("tv")), 400, 6017),
        (with("user_id", json!("")), 400, 7003),
        (with("user_sig", json!("")), 401, 70002),
        (with("user_sig", json!("zzz")), 401, 70003),
        (
            with(
                "user_sig",
                json!(imlogin::usersig::tls::generate(
                    APP, "bad-key", "hs", 60, now
                )),
            ),
            401,
            70009,
        ),
        (with("user_sig", json!(sig("other", None, 60))), 401, 70013),
        (
            with(
                "user_sig",
                json!(imlogin::usersig::tls::generate(APP + 1, "k", "hs", 60, now)),
            ),
            401,
            70014,
        ),
        (
            with("user_sig", json!(sig("hs", Some(now - 100), 10))),
            401,
            70001,
        ),
        (with("sdkappid", json!(42)), 404, 70020),
    ];
    for (body, status, code) in cases {
        let (s, b) = post_login(&app, body.clone()).await;
        assert_eq!((s, b["code"].as_u64()), (status, Some(code)), "{body}");
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for raw in ["not json", "[]", ""] {
        let r = app
            .http
            .post(app.url("/v1/login"))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{raw:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], 6017);
    }
    let r = app.http.get(app.url("/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 6026);
    // Disabled and revoked accounts: 403.
    let accounts = app.state.sessions.auth().accounts();
    accounts
        .get_or_register(APP, "hs-disabled", 1)
        .await
        .unwrap();
    accounts
        .set_disabled(APP, "hs-disabled", true)
        .await
        .unwrap();
    let (s, b) = post_login(
        &app,
        serde_json::to_value(params("hs-disabled", "web")).unwrap(),
    )
    .await;
    assert_eq!((s, b["code"].as_u64()), (403, Some(70051)));
    accounts
        .get_or_register(APP, "hs-revoked", 1)
        .await
        .unwrap();
    accounts
        .revoke(APP, "hs-revoked", now as i64 + 5)
        .await
        .unwrap();
    let (s, b) = post_login(
        &app,
        serde_json::to_value(params("hs-revoked", "web")).unwrap(),
    )
    .await;
    assert_eq!((s, b["code"].as_u64()), (403, Some(70052)));
    // Failures so far count against this IP: past the limit, 429 with the wait in the message.
    let mut last = (0, Value::Null);
    for _ in 0..25 {
        last = post_login(&app, with("user_sig", json!("zzz"))).await;
    }
    assert_eq!((last.0, last.1["code"].as_u64()), (429, Some(70050)));
    assert!(last.1["message"].as_str().unwrap().contains("seconds"));
}

async fn http_login_counts_under_the_policy(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut ws = app.connect().await;
    ws.login(&params("hp", "windows")).await.unwrap();
    let (s, _) = post_login(&app, serde_json::to_value(params("hp", "mac")).unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(
        event(&mut ws).await,
        ClientEvent::KickedOffline {
            code: 6208,
            reason: "multi_terminal".into(),
            by_platform: Some("mac".into())
        }
    );
}

async fn active_today(app: &TestApp) -> i64 {
    let today = imlogin::runtime::clock::utc_date(imlogin::runtime::clock::unix_now());
    let counts = app
        .state
        .sessions
        .auth()
        .accounts()
        .store()
        .active_counts(APP, &today, &today)
        .await
        .unwrap();
    counts.first().map(|c| c.1).unwrap_or(0)
}

async fn daily_active_users_count_logins_once(backend: Backend) {
    let (db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    c.login(&params("dau-1", "android")).await.unwrap();
    c.login(&params("dau-1", "web")).await.unwrap(); // the same user twice: once
    c.login(&params("dau-2", "web")).await.unwrap(); // a switching login counts
    post_login(&app, serde_json::to_value(params("dau-3", "web")).unwrap()).await; // HTTP counts
    crate::helpers::eventually("three users are active today", || async {
        active_today(&app).await == 3
    })
    .await;
    // A failed login does not count, nor does renew_sig.
    let e = app.connect().await;
    let bad = imlogin::client::LoginParams {
        user_sig: "bad".into(),
        ..params("dau-4", "web")
    };
    assert!(e.login(&bad).await.is_err());
    c.renew_sig(&sig("dau-2", None, 7200)).await.unwrap();
    assert!(!app.state.sessions.dau().is_marked(APP, "dau-4"));
    assert_eq!(
        app.state.sessions.dau().queued(),
        0,
        "nothing more to write"
    );
    assert_eq!(active_today(&app).await, 3);
    // Persisted: a new connection to the database sees the same.
    let today = imlogin::runtime::clock::utc_date(imlogin::runtime::clock::unix_now());
    assert_eq!(
        db.store()
            .await
            .active_counts(APP, &today, &today)
            .await
            .unwrap(),
        vec![(today.clone(), 3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_logins_survive_a_database_outage() {
    let (_db, proxy, app) = crate::helpers::spawn_behind_proxy().await;
    let c = app.connect().await;
    c.login(&params("steady", "android")).await.unwrap();
    c.logout().await.unwrap();
    proxy.cut();
    assert_eq!(
        c.login(&params("newcomer", "android"))
            .await
            .unwrap_err()
            .code(),
        Some(70169)
    );
    c.login(&params("steady", "android"))
        .await
        .expect("a cached user logs in without the database");
    let (s, b) = post_login(
        &app,
        serde_json::to_value(params("newcomer", "web")).unwrap(),
    )
    .await;
    assert_eq!((s, b["code"].as_u64()), (503, Some(70169)));
    proxy.restore();
    crate::helpers::eventually("new users log in again", || async {
        app.connect()
            .await
            .login(&params("newcomer", "iphone"))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_active_mark_lost_to_an_outage_is_written_at_the_next_login() {
    let (_db, proxy, app) = crate::helpers::spawn_behind_proxy().await;
    // Registered and cached, but not yet active today.
    app.state
        .sessions
        .auth()
        .accounts()
        .get_or_register(APP, "dau-outage", 1)
        .await
        .unwrap();
    proxy.cut();
    let c = app.connect().await;
    c.login(&params("dau-outage", "web"))
        .await
        .expect("a cached user logs in without the database");
    crate::helpers::eventually("the writer gave up on the mark", || async {
        !app.state.sessions.dau().is_marked(APP, "dau-outage")
    })
    .await;
    proxy.restore();
    c.login(&params("dau-outage", "android")).await.unwrap();
    crate::helpers::eventually("the mark is written after the outage", || async {
        let today = imlogin::runtime::clock::utc_date(imlogin::runtime::clock::unix_now());
        app.state
            .sessions
            .auth()
            .accounts()
            .store()
            .active_counts(APP, &today, &today)
            .await
            .map(|c| c.len() == 1)
            .unwrap_or(false)
    })
    .await;
}
