//! PROTOCOL §9, receivers that answer badly: a redirect is a failed attempt and is not followed, and no request
//! carries a `Referer`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use reqwest::Method;

use crate::helpers::{eventually, params, spawn_on, Backend};

crate::both_stores!(a_redirect_is_a_failed_attempt_not_followed);

/// Records the headers of every request it gets and answers each with `answer()`.
struct Recorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Recorder {
    async fn start(answer: impl Fn() -> Response + Clone + Send + Sync + 'static) -> Recorder {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let answer = answer.clone();
            seen.lock().unwrap().push(headers);
            async move { answer() }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Recorder { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn requests(&self) -> Vec<HeaderMap> {
        self.requests.lock().unwrap().clone()
    }
}

async fn a_redirect_is_a_failed_attempt_not_followed(backend: Backend) {
    let elsewhere = Recorder::start(|| {
        axum::Json(serde_json::json!({"ActionStatus": "OK", "ErrorCode": 0})).into_response()
    })
    .await;
    let to = elsewhere.url();
    let hook = Recorder::start(move || {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, to.clone())],
        )
            .into_response()
    })
    .await;
    let (_db, app) = spawn_on(
        backend,
        &[
            ("APPS__0__WEBHOOK__URL", hook.url().as_str()),
            ("APPS__0__WEBHOOK__TOKEN", "the-webhook-token"),
            ("APPS__0__WEBHOOK__MAX_ATTEMPTS", "2"),
        ],
    )
    .await;
    let r = app
        .http
        .post(app.url("/v1/login"))
        .json(&params("redirected", "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dead = || async {
        let (_, page) = app
            .native(Method::GET, "/webhooks/dead_letters", None)
            .await;
        page["events"].as_array().cloned().unwrap_or_default()
    };
    eventually("the event is dead-lettered after its retry", || async {
        dead().await.len() == 1
    })
    .await;
    let letter = &dead().await[0];
    assert_eq!(letter["attempts"], 2, "{letter}");
    assert!(
        letter["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("redirect (307) not followed")),
        "{letter}"
    );
    assert_eq!(hook.requests().len(), 2, "the first attempt and its retry");
    assert!(
        elsewhere.requests().is_empty(),
        "the body is never posted where the redirect points"
    );
    for h in hook.requests() {
        assert!(h.get(header::REFERER).is_none(), "{h:?}");
    }
}
