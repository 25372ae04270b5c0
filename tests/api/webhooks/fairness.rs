//! PROTOCOL §9: one app's stalled receiver never delays another app's deliveries: each app has its own share of
//! in-flight attempts (32, docs/admin.md), and apps with work ready take turns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use imlogin::client::LoginParams;

use super::{Mode, Receiver};
use crate::helpers::{
    eventually, params, spawn_on, Backend, APP, KEY, OTHER_APP, OTHER_APP_ENV, OTHER_KEY,
};

crate::both_configs!(
    a_hanging_receiver_does_not_delay_another_apps_events,
    eight_hanging_receivers_do_not_delay_a_ninth_app,
);

/// The documented share of one app.
const PER_APP_IN_FLIGHT: usize = 32;
/// Attempts in flight over every app, beyond which an app gets only its guarantee (docs/admin.md).
const MAX_IN_FLIGHT: usize = 256;

/// A receiver that never answers; counts the requests it got.
async fn hanging_receiver() -> (String, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let count = started.clone();
    let app = axum::Router::new().fallback(move || {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), started)
}

async fn a_hanging_receiver_does_not_delay_another_apps_events(backend: Backend) {
    let (a_url, a_started) = hanging_receiver().await;
    let b = Receiver::start(Mode::Ok).await;
    let b_url = b.url();
    let mut env: Vec<(&str, &str)> = OTHER_APP_ENV.to_vec();
    env.extend([
        ("APPS__0__WEBHOOK__URL", a_url.as_str()),
        // Long: none of A's attempts ends while the test runs.
        ("APPS__0__WEBHOOK__TIMEOUT_MS", "60000"),
        ("APPS__1__WEBHOOK__URL", b_url.as_str()),
    ]);
    let (_db, app) = spawn_on(backend, &env).await;
    let logins_to_a = 600;
    for batch in (0..logins_to_a).collect::<Vec<_>>().chunks(20) {
        let logins = batch.iter().map(|i| {
            let req = app
                .http
                .post(app.url("/v1/login"))
                .json(&params(&format!("a-{i}"), "web"));
            async move { assert_eq!(req.send().await.unwrap().status(), 200) }
        });
        futures_util::future::join_all(logins).await;
    }
    eventually("A's receiver holds its share of attempts", || async {
        a_started.load(Ordering::SeqCst) >= PER_APP_IN_FLIGHT
    })
    .await;
    let other = LoginParams {
        sdkappid: OTHER_APP,
        user_id: "b-user".into(),
        user_sig: imlogin::usersig::tls::generate(
            OTHER_APP,
            OTHER_KEY,
            "b-user",
            3600,
            imlogin::runtime::clock::unix_now() as u64,
        ),
        platform: "web".into(),
        device_id: None,
    };
    let r = app
        .http
        .post(app.url("/v1/login"))
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let logged_in = Instant::now();
    eventually("B's event arrives while A's receiver hangs", || async {
        !b.delivered("b-user").is_empty()
    })
    .await;
    eprintln!(
        "B's event arrived {:?} after its login, with A's receiver hanging ({logins_to_a} logins to A)",
        logged_in.elapsed()
    );
    assert_eq!(
        a_started.load(Ordering::SeqCst),
        PER_APP_IN_FLIGHT,
        "A's attempts are all still hanging, and A never had more than its share in flight"
    );
}

/// Login fields for `user` of app `sdkappid`, whose key is `key`.
fn login_of(sdkappid: u32, key: &str, user: &str) -> LoginParams {
    let now = imlogin::runtime::clock::unix_now() as u64;
    LoginParams {
        sdkappid,
        user_id: user.into(),
        user_sig: imlogin::usersig::tls::generate(sdkappid, key, user, 3600, now),
        platform: "web".into(),
        device_id: None,
    }
}

/// Eight apps whose receivers hang hold every shared slot (8 × 32): a ninth app's events still go out, within
/// the attempts each app may always start.
async fn eight_hanging_receivers_do_not_delay_a_ninth_app(backend: Backend) {
    let (hung_url, hung_started) = hanging_receiver().await;
    let b = Receiver::start(Mode::Ok).await;
    let b_url = b.url();
    // Apps 0 (the demo app) to 7 hang; app 8 answers.
    let apps: Vec<(u32, String)> = (0..9u32)
        .map(|i| match i {
            0 => (APP, KEY.to_owned()),
            i => (APP + 100 + i, format!("the-key-of-app-number-{i}")),
        })
        .collect();
    let mut owned: Vec<(String, String)> = Vec::new();
    for (i, (id, key)) in apps.iter().enumerate().skip(1) {
        owned.extend([
            (format!("APPS__{i}__SDKAPPID"), id.to_string()),
            (format!("APPS__{i}__SECRET_KEY"), key.clone()),
            (format!("APPS__{i}__ADMINS"), r#"["administrator"]"#.into()),
        ]);
    }
    for i in 0..9 {
        let url = if i < 8 { &hung_url } else { &b_url };
        owned.push((format!("APPS__{i}__WEBHOOK__URL"), url.clone()));
        owned.push((format!("APPS__{i}__WEBHOOK__TIMEOUT_MS"), "60000".into()));
    }
    let env: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (_db, app) = spawn_on(backend, &env).await;
    let login = |p: LoginParams| {
        let req = app.http.post(app.url("/v1/login")).json(&p);
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    };
    for (id, key) in &apps[..8] {
        let logins = (0..=PER_APP_IN_FLIGHT).map(|u| login(login_of(*id, key, &format!("h-{u}"))));
        futures_util::future::join_all(logins).await;
    }
    eventually("the hung receivers hold every shared slot", || async {
        hung_started.load(Ordering::SeqCst) >= MAX_IN_FLIGHT
    })
    .await;
    let (b_id, b_key) = &apps[8];
    login(login_of(*b_id, b_key, "b-user")).await;
    eventually(
        "the ninth app's event arrives while the eight hang",
        || async { !b.delivered("b-user").is_empty() },
    )
    .await;
    assert_eq!(
        hung_started.load(Ordering::SeqCst),
        MAX_IN_FLIGHT,
        "the hung apps' attempts are all still hanging, and they never had more than the shared slots"
    );
}
