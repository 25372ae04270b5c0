//! The pages imlogin serves itself: the console (`/console`) and the demo (`/demo`, only for the demo app of the
//! embedded defaults); and, run from here so that the README's one test command runs them, the JavaScript
//! client's tests (`clients/js`) and the browser tests of the console and the demo (`web/`).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_on, Backend, TestApp, APP};

const PAGES: &[(&str, &str)] = &[
    ("/console", "text/html"),
    ("/console/console.js", "text/javascript"),
    ("/console/style.css", "text/css"),
    ("/demo", "text/html"),
    ("/demo/demo.js", "text/javascript"),
    ("/demo/style.css", "text/css"),
];

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(format!("http://{}{path}", app.addr))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_console_and_the_demo_are_served_from_the_binary_with_a_strict_policy() {
    let (_db, app) = spawn_on(Backend::Sqlite, &[]).await;
    for (path, kind) in PAGES {
        let r = get(&app, path).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    // What the pages load is served too, from here only (no CDN).
    for page in ["/console", "/demo"] {
        let html = get(&app, page).await.text().await.unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{page} loads nothing from elsewhere"
        );
        for part in html.split(['"', '\'']).filter(|p| p.starts_with('/')) {
            assert_eq!(get(&app, part).await.status(), 200, "{page} → {part}");
        }
    }
}

#[tokio::test]
async fn the_demo_gives_usersigs_that_log_in() {
    let (_db, app) = spawn_on(Backend::Sqlite, &[]).await;
    let r = get(&app, "/demo/usersig?user_id=demo-alice").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sdkappid"], APP);
    assert_eq!(v["console_key"], "demo-admin-api-key-FOR-TRYING-ONLY");
    let c = imlogin::client::Client::connect(&format!("ws://{}/v1/ws", app.addr))
        .await
        .unwrap();
    let mut p = crate::helpers::params("demo-alice", "web");
    p.user_sig = v["user_sig"].as_str().unwrap().to_owned();
    let data = c.login(&p).await.unwrap();
    assert_eq!(data.user_id, "demo-alice");
    assert!(data.sig_expires_at > imlogin::runtime::clock::Clock::system().now_secs() + 3000);
    for bad in [
        "",
        "user_id=",
        "user_id=%40TLS%23x",
        &format!("user_id={}", "a".repeat(33)),
    ] {
        let r = get(&app, &format!("/demo/usersig?{bad}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], 6017);
    }
}

#[tokio::test]
async fn no_demo_without_the_demo_app_and_no_console_key_once_it_changed() {
    let (_db, app) = spawn_on(
        Backend::Sqlite,
        &[("APPS__0__SECRET_KEY", "a-key-of-our-own")],
    )
    .await;
    for path in ["/demo", "/demo/demo.js", "/demo/usersig?user_id=x"] {
        assert_eq!(get(&app, path).await.status(), 404, "{path}");
    }
    assert_eq!(
        get(&app, "/console").await.status(),
        200,
        "the console is for every app"
    );

    let (_db, app) = spawn_on(
        Backend::Sqlite,
        &[("APPS__0__ADMIN_API_KEY", "our-own-admin-key")],
    )
    .await;
    let v: Value = get(&app, "/demo/usersig?user_id=x")
        .await
        .json()
        .await
        .unwrap();
    assert!(v["user_sig"].is_string());
    assert!(
        v.get("console_key").is_none(),
        "a key of the operator's is never handed out"
    );
}

#[test]
fn the_javascript_client_passes_its_tests_against_this_binary() {
    let text = crate::helpers::node_suite("clients/js", "ws");
    assert!(text.contains("# pass 13"), "all thirteen ran:\n{text}");
}

#[test]
fn the_console_and_the_demo_pass_their_browser_tests() {
    let text = crate::helpers::node_suite("web", "playwright-core");
    assert!(text.contains("# pass 7"), "all seven ran:\n{text}");
}
