//! PROTOCOL §9, receivers that answer badly: an answer is read up to 64 KiB (a huge one costs the server no
//! memory), a redirect is a failed attempt and is not followed, and no request carries a `Referer`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use reqwest::Method;

use crate::helpers::{eventually, params, spawn_on, Backend};

crate::both_configs!(
    a_huge_answer_is_read_only_up_to_its_bound,
    a_redirect_is_a_failed_attempt_not_followed,
);

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

/// What the incident's receiver answered: 200 and 300 MB (JSON whitespace, streamed, never held whole).
fn huge_answer() -> Response {
    const CHUNK: usize = 64 * 1024;
    let chunks = futures_util::stream::repeat(Bytes::from_static(&[b' '; CHUNK]))
        .take(300 * 1024 * 1024 / CHUNK)
        .map(Ok::<_, Infallible>);
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// A figure of `/proc/PID/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

async fn a_huge_answer_is_read_only_up_to_its_bound(backend: Backend) {
    let r = Recorder::start(huge_answer).await;
    let (db, b) = super::binary_on(
        backend,
        &r.url(),
        // Time enough to read it all, as a server without the bound would.
        &[("IMLOGIN__APPS__0__WEBHOOK__TIMEOUT_MS", "30000")],
    )
    .await;
    let pid = b.pid();
    let http = reqwest::Client::new();
    // One login first, so the figures before include what any login costs.
    let login = |user: String| {
        let req = http
            .post(format!("http://{}/v1/login", b.addr))
            .json(&params(&user, "web"));
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    };
    login("warm-up".into()).await;
    let outbox = db.database().await.outbox;
    // Answered, and its row deleted: delivered.
    let delivered = |n: usize| {
        let outbox = outbox.clone();
        let r = &r;
        async move { r.requests().len() >= n && outbox.outbox_pending().await.unwrap() == 0 }
    };
    eventually("the warm-up event is delivered", || delivered(1)).await;
    let (rss_before, peak_before) = (proc_status_kib(pid, "VmRSS"), proc_status_kib(pid, "VmHWM"));
    let users = 4;
    futures_util::future::join_all((0..users).map(|i| login(format!("huge-{i}")))).await;
    eventually("every event is delivered", || delivered(1 + users)).await;
    let (rss_after, peak_after) = (proc_status_kib(pid, "VmRSS"), proc_status_kib(pid, "VmHWM"));
    eprintln!(
        "RSS {rss_before} kB → {rss_after} kB; peak {peak_before} kB → {peak_after} kB \
         ({users} answers of 300 MB each)"
    );
    assert_eq!(
        r.requests().len(),
        1 + users,
        "each answered 200: delivered at its first attempt"
    );
    assert!(outbox
        .dead_letters(crate::helpers::APP, 0, 10)
        .await
        .unwrap()
        .is_empty());
    // Generous: 300 MB held even once would be three times this.
    assert!(
        peak_after.saturating_sub(peak_before) < 100 * 1024,
        "the peak RSS grew from {peak_before} kB to {peak_after} kB"
    );
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
