//! PROTOCOL §9: one app's stalled receiver never delays another app's deliveries: each app has its own share of
//! in-flight attempts (32, docs/admin.md), and apps with work ready take turns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use imlogin::client::LoginParams;

use super::{Mode, Receiver};
use crate::helpers::{eventually, params, spawn_on, Backend, OTHER_APP, OTHER_APP_ENV, OTHER_KEY};

crate::both_configs!(a_hanging_receiver_does_not_delay_another_apps_events);

/// The documented share of one app.
const PER_APP_IN_FLIGHT: usize = 32;

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
            imlogin::clock::unix_now() as u64,
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
