//! What operators rely on, on the real binary: the Prometheus scrape, client addresses behind a trusted proxy,
//! live reload at SIGHUP (apps added, removed, re-keyed; an invalid file refused), key rotation, and logs that
//! carry connection and request ids.

use imlogin::client::{Client, ClientEvent, LoginParams};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{eventually, params, sig, Backend, TestDb, APP, KEY, OTHER_APP, OTHER_KEY};
use crate::server::{signal, start_binary, start_binary_with, Binary};

fn sqlite_env(dir: &tempfile::TempDir) -> (&'static str, String) {
    (
        "IMLOGIN__DATABASE__URL",
        format!("sqlite://{}/x.db", dir.path().display()),
    )
}

/// One scrape of `/metrics`, parsed with a Prometheus text parser.
pub async fn scrape(b: &Binary) -> prometheus_parse::Scrape {
    let r = reqwest::get(format!("http://{}/metrics", b.metrics_addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("a valid Prometheus text exposition")
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
pub fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

fn login_params(sdkappid: u32, key: &str, user: &str) -> LoginParams {
    let now = imlogin::runtime::clock::unix_now() as u64;
    LoginParams {
        sdkappid,
        user_id: user.to_owned(),
        user_sig: imlogin::usersig::tls::generate(sdkappid, key, user, 3600, now),
        platform: "web".to_owned(),
        device_id: None,
    }
}

async fn the_metrics_scrape_parses_and_follows_logins_and_kicks(backend: Backend) {
    let db = TestDb::new(backend).await;
    let b = start_binary(&db.binary_env());
    let ws = format!("ws://{}/v1/ws", b.addr);
    let app = APP.to_string();
    let first = Client::connect(&ws).await.unwrap();
    first.login(&params("metered", "web")).await.unwrap();
    let mut bad = params("metered", "web");
    bad.user_sig = sig("someone-else", None, 3600);
    let refused = Client::connect(&ws).await.unwrap();
    assert_eq!(refused.login(&bad).await.unwrap_err().code(), Some(70013));

    let s = scrape(&b).await;
    let web = [("sdkappid", app.as_str()), ("platform", "web")];
    assert_eq!(value(&s, "imlogin_sessions_online", &web), 1.0);
    let ok = [("sdkappid", app.as_str()), ("code", "0")];
    assert_eq!(value(&s, "imlogin_logins_total", &ok), 1.0);
    let mismatch = [("sdkappid", app.as_str()), ("code", "70013")];
    assert_eq!(value(&s, "imlogin_logins_total", &mismatch), 1.0);
    assert_eq!(value(&s, "imlogin_ws_connections", &[]), 2.0);
    assert_eq!(value(&s, "imlogin_login_duration_seconds_count", &[]), 2.0);
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&s, "process_open_fds", &[]) >= 4.0);
    for name in [
        "imlogin_database_errors",
        "imlogin_registry_errors",
        "imlogin_kick_waits_expired",
        "imlogin_webhook_queue",
        "imlogin_webhook_pending",
        "imlogin_webhook_deliveries",
        "imlogin_webhook_dead_letters",
        "imlogin_daily_active_queue",
        "imlogin_db_pool_connections",
        "imlogin_db_pool_idle",
        "process_cpu_seconds",
    ] {
        assert!(
            s.docs.contains_key(name),
            "{name} is described: {:?}",
            s.docs.keys()
        );
    }
    let accounts = [("area", "accounts")];
    assert_eq!(value(&s, "imlogin_database_errors_total", &accounts), 0.0);

    // A second web login takes the slot (dual: one web instance): a kick, and still one online.
    let second = Client::connect(&ws).await.unwrap();
    second.login(&params("metered", "web")).await.unwrap();
    eventually("the kick is counted", || async {
        let s = scrape(&b).await;
        let kicks = [("sdkappid", app.as_str()), ("reason", "multi_terminal")];
        value(&s, "imlogin_kicks_total", &kicks) == 1.0
            && value(&s, "imlogin_sessions_online", &web) == 1.0
    })
    .await;
    drop((first, second, refused));
    eventually("nothing online once every client left", || async {
        let s = scrape(&b).await;
        value(&s, "imlogin_sessions_online", &web) == 0.0
            && value(&s, "imlogin_ws_connections", &[]) == 0.0
    })
    .await;

    // Metrics are served on their own listener only.
    let main = reqwest::get(format!("http://{}/metrics", b.addr))
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
}

/// The metric names of docs/operations.md's table ("Metrics"), as a scrape names its samples.
fn documented_metrics() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let table = doc
        .split("## Metrics")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let names: Vec<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|l| {
            let first_column = l.split(" |").next().unwrap();
            first_column
                .split('`')
                .filter(|n| n.starts_with("imlogin_") || n.starts_with("process_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    // PROTOCOL §10's five are among them.
    for name in [
        "imlogin_sessions_online",
        "imlogin_logins_total",
        "imlogin_kicks_total",
        "imlogin_login_duration_seconds",
        "imlogin_ws_connections",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} documented: {names:?}"
        );
    }
    names
}

/// A scrape's samples of `name` whose labels include `labels`.
fn samples<'a>(
    s: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a prometheus_parse::Sample> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect()
}

/// An alert or a dashboard reads "no data" from a family without samples: on a fresh server every documented
/// family has them, with the label sets of every configured app at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_server_exposes_every_documented_metric() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[sqlite_env(&dir)]);
    let s = scrape(&b).await;
    for name in documented_metrics() {
        assert!(
            !samples(&s, &name, &[]).is_empty(),
            "{name} has samples on a fresh server"
        );
    }
    let app = APP.to_string();
    let of_app = |label: &'static str, value: &'static str| {
        [("sdkappid", app.clone()), (label, value.to_owned())]
    };
    let one = |name: &str, labels: [(&str, String); 2]| {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(samples(&s, name, &labels).len(), 1, "{name} {labels:?}");
    };
    for platform in [
        "android", "iphone", "ipad", "windows", "mac", "linux", "web",
    ] {
        one("imlogin_sessions_online", of_app("platform", platform));
    }
    for reason in [
        "multi_terminal",
        "same_device",
        "admin_kick",
        "account_deleted",
        "account_disabled",
        "app_removed",
    ] {
        one("imlogin_kicks_total", of_app("reason", reason));
    }
    one("imlogin_logins_total", of_app("code", "0"));
    for name in [
        "imlogin_logins_total",
        "imlogin_kicks_total",
        "imlogin_sessions_online",
    ] {
        assert_eq!(value(&s, name, &[]), 0.0, "{name} at zero");
    }
}

#[tokio::test]
async fn metrics_off_opens_no_listener() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[
        sqlite_env(&dir),
        ("IMLOGIN__SERVER__METRICS_ENABLED", "false".into()),
    ]);
    assert_eq!(b.metrics_addr, "");
    let r = reqwest::get(format!("http://{}/readyz", b.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A failed login over HTTP from `addr`, claiming to be `forwarded_for`; answers the code.
async fn failed_login(addr: &str, forwarded_for: &str, user: &str) -> u32 {
    let mut p = serde_json::to_value(params(user, "web")).unwrap();
    p["user_sig"] = json!("not-a-ticket");
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/login"))
        .header("X-Forwarded-For", forwarded_for)
        .json(&p)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    body["code"].as_u64().unwrap() as u32
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_forwarded_hop() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[
        sqlite_env(&dir),
        (
            "IMLOGIN__SERVER__TRUSTED_PROXIES",
            r#"["127.0.0.0/8", "10.0.0.0/8"]"#.into(),
        ),
        ("IMLOGIN__LIMITS__LOGIN_FAILURES_PER_MINUTE", "2".into()),
    ]);
    // The client chain: whatever the client put first, then the proxies append; 10.1.2.3 is trusted too.
    let via = |client: &str| format!("6.6.6.6, {client}, 10.1.2.3");
    // More than the limit (2) of failures from one client within a minute: the next answers 70050.
    for i in 0..3 {
        assert_eq!(
            failed_login(&b.addr, &via("203.0.113.7"), &format!("u{i}")).await,
            70003
        );
    }
    assert_eq!(
        failed_login(&b.addr, &via("203.0.113.7"), "u9").await,
        70050
    );
    // Another client behind the same proxy is not throttled by the first one's failures.
    assert_eq!(
        failed_login(&b.addr, &via("203.0.113.8"), "u10").await,
        70003
    );
}

#[tokio::test]
async fn a_forwarded_header_from_an_untrusted_peer_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[
        sqlite_env(&dir),
        ("IMLOGIN__LIMITS__LOGIN_FAILURES_PER_MINUTE", "2".into()),
    ]);
    // Each request claims another address; all come from 127.0.0.1, and that is who is throttled.
    for i in 0..3 {
        let spoofed = format!("198.51.100.{i}");
        assert_eq!(
            failed_login(&b.addr, &spoofed, &format!("u{i}")).await,
            70003
        );
    }
    assert_eq!(failed_login(&b.addr, "198.51.100.99", "u9").await, 70050);
}

/// The webhook's ClientIP and the connection's log span carry the forwarded address.
async fn the_forwarded_address_reaches_webhooks_and_logs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let r = crate::webhooks::Receiver::start(crate::webhooks::Mode::Ok).await;
    let mut env = db.binary_env();
    env.extend([
        (
            "IMLOGIN__SERVER__TRUSTED_PROXIES",
            r#"["127.0.0.1/32"]"#.into(),
        ),
        ("IMLOGIN__APPS__0__WEBHOOK__URL", r.url()),
        ("IMLOGIN__LOG__LEVEL", "debug".into()),
    ]);
    let b = start_binary(&env);
    let mut request = format!("ws://{}/v1/ws", b.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("X-Forwarded-For", "203.0.113.50".parse().unwrap());
    let c = Client::connect_with(request, None).await.unwrap();
    c.login(&params("forwarded", "web")).await.unwrap();
    eventually("the login's webhook arrives", || async {
        !r.delivered("forwarded").is_empty()
    })
    .await;
    let hit = r
        .hits()
        .into_iter()
        .find(|h| h.body["Info"]["To_Account"] == "forwarded")
        .unwrap();
    assert_eq!(hit.query["ClientIP"], "203.0.113.50");
    let login_line = json_lines(&b)
        .into_iter()
        .find(|v| v["message"] == "login")
        .expect("a debug line for the login");
    assert_eq!(
        login_line["span"]["client_ip"], "203.0.113.50",
        "{login_line}"
    );
    assert!(
        login_line["span"]["conn"].as_u64().is_some(),
        "{login_line}"
    );
}

fn json_lines(b: &Binary) -> Vec<Value> {
    b.log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn http_requests_carry_a_request_id_in_the_header_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[sqlite_env(&dir), ("IMLOGIN__LOG__LEVEL", "debug".into())]);
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/healthz", b.addr))
        .send()
        .await
        .unwrap();
    let given = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(given.len() >= 16, "{given}");
    let r = http
        .get(format!("http://{}/readyz", b.addr))
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    eventually("both requests are in the log with their ids", || async {
        let ids: Vec<String> = json_lines(&b)
            .iter()
            .filter_map(|v| v["span"]["request_id"].as_str().map(str::to_owned))
            .collect();
        ids.contains(&given) && ids.contains(&"trace-me-42".to_owned())
    })
    .await;
}

/// A config file with the apps given as (sdkappid, secret_key, previous_secret_key).
fn write_config(path: &std::path::Path, extra: &str, apps: &[(u32, &str, Option<&str>)]) {
    let mut text = format!("{extra}\n");
    for (id, key, previous) in apps {
        text.push_str(&format!(
            "[[apps]]\nsdkappid = {id}\nsecret_key = \"{key}\"\nadmins = [\"administrator\"]\n"
        ));
        if let Some(p) = previous {
            text.push_str(&format!("previous_secret_key = \"{p}\"\n"));
        }
        text.push_str("[apps.policy]\nmode = \"dual\"\n");
    }
    std::fs::write(path, text).unwrap();
}

async fn wait_for_log(b: &Binary, message: &str) -> Value {
    let mut found = None;
    eventually(&format!("the log says {message:?}"), || {
        found = json_lines(b)
            .into_iter()
            .rev()
            .find(|v| v["message"] == message);
        let seen = found.is_some();
        async move { seen }
    })
    .await;
    found.unwrap()
}

crate::both_configs!(
    the_metrics_scrape_parses_and_follows_logins_and_kicks,
    the_forwarded_address_reaches_webhooks_and_logs,
    webhook_deliveries_are_counted,
    sighup_applies_apps_added_removed_and_rekeyed_without_dropping_connections,
);

async fn sighup_applies_apps_added_removed_and_rekeyed_without_dropping_connections(
    backend: Backend,
) {
    const THIRD_APP: u32 = 1_400_000_002;
    const NEW_KEY: &str = "the-rotated-secret-key-of-the-demo-app";
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("imlogin.toml");
    write_config(&file, "", &[(APP, KEY, None), (OTHER_APP, OTHER_KEY, None)]);
    let b = start_binary_with(&["--config", file.to_str().unwrap()], &db.binary_env());
    let ws = format!("ws://{}/v1/ws", b.addr);
    let stays = Client::connect(&ws).await.unwrap();
    stays.login(&login_params(APP, KEY, "stays")).await.unwrap();
    let mut removed = Client::connect(&ws).await.unwrap();
    removed
        .login(&login_params(OTHER_APP, OTHER_KEY, "removed"))
        .await
        .unwrap();
    // A user of the app to remove whose connection dropped: disconnected, within the grace.
    let away = Client::connect(&ws).await.unwrap();
    let token = away
        .login(&login_params(OTHER_APP, OTHER_KEY, "away"))
        .await
        .unwrap()
        .session_token;
    drop(away);

    // Re-key APP keeping the old key as the previous one, remove OTHER_APP, add a third; a database change
    // cannot apply live.
    write_config(
        &file,
        "[database]\nmax_connections = 3",
        &[(APP, NEW_KEY, Some(KEY)), (THIRD_APP, "third-key", None)],
    );
    signal(&b.child, "HUP");
    let reloaded = wait_for_log(&b, "config reloaded").await;
    assert_eq!(reloaded["added"], format!("[{THIRD_APP}]"));
    assert_eq!(reloaded["removed"], format!("[{OTHER_APP}]"));
    assert_eq!(reloaded["changed"], format!("[{APP}]"));
    assert_eq!(
        reloaded["kicked"], 2,
        "the online and the disconnected instance"
    );
    let restart = wait_for_log(
        &b,
        "config reload: this section needs a restart; the running values are kept",
    )
    .await;
    assert_eq!(restart["section"], "database");

    match crate::helpers::event(&mut removed).await {
        ClientEvent::KickedOffline { code, reason, .. } => {
            assert_eq!((code, reason.as_str()), (70020, "app_removed"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stays.status().await.unwrap(),
        1,
        "APP's user is still logged in"
    );
    let login = |p: LoginParams| {
        let ws = ws.clone();
        async move {
            let c = Client::connect(&ws).await.unwrap();
            c.login(&p).await.map(|_| ()).map_err(|e| e.code())
        }
    };
    assert_eq!(login(login_params(APP, NEW_KEY, "new-key")).await, Ok(()));
    assert_eq!(login(login_params(APP, KEY, "previous-key")).await, Ok(()));
    assert_eq!(
        login(login_params(OTHER_APP, OTHER_KEY, "gone")).await,
        Err(Some(70020))
    );
    // The removed app's session tokens died with it, as its tickets did.
    let c = Client::connect(&ws).await.unwrap();
    assert_eq!(
        c.resume(&token).await.map(|_| ()).map_err(|e| e.code()),
        Err(Some(70020))
    );
    assert_eq!(
        login(login_params(THIRD_APP, "third-key", "new-app")).await,
        Ok(())
    );
    // The app added has its series from the reload on, as the configured ones have from the start.
    let third = THIRD_APP.to_string();
    let s = scrape(&b).await;
    for (name, label, value) in [
        ("imlogin_sessions_online", "platform", "ipad"),
        ("imlogin_kicks_total", "reason", "same_device"),
        ("imlogin_logins_total", "code", "0"),
    ] {
        let labels = [("sdkappid", third.as_str()), (label, value)];
        assert_eq!(
            samples(&s, name, &labels).len(),
            1,
            "{name} of the app added"
        );
    }

    // An invalid file is refused, naming the key; the running configuration stays.
    std::fs::write(
        &file,
        "[[apps]]\nsdkappid = 7\nsecret_key = \"k\"\n[apps.policy]\nweb_instances = \"x\"\n",
    )
    .unwrap();
    signal(&b.child, "HUP");
    let refused = wait_for_log(
        &b,
        "SIGHUP: the configuration was refused; the running one is kept",
    )
    .await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("apps[0].policy.web_instances"),
        "{refused}"
    );
    assert_eq!(
        login(login_params(THIRD_APP, "third-key", "still")).await,
        Ok(())
    );
    assert_eq!(stays.status().await.unwrap(), 1);
    // Dropping the previous key ends the rotation: tickets of the old key stop working.
    write_config(&file, "", &[(APP, NEW_KEY, None)]);
    signal(&b.child, "HUP");
    eventually("the rotation ends", || {
        let p = login_params(APP, KEY, "old-key");
        let login = &login;
        async move { login(p).await == Err(Some(70009)) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("imlogin.toml");
    std::fs::write(&file, "[log]\nlevel = \"info\"\nformat = \"json\"\n").unwrap();
    let b = start_binary_with(&["--config", file.to_str().unwrap()], &[sqlite_env(&dir)]);
    let answered = |b: &Binary| json_lines(b).iter().any(|v| v["message"] == "answered");
    reqwest::get(format!("http://{}/healthz", b.addr))
        .await
        .unwrap();
    assert!(!answered(&b), "no debug lines at info");
    std::fs::write(&file, "[log]\nlevel = \"debug\"\nformat = \"json\"\n").unwrap();
    signal(&b.child, "HUP");
    wait_for_log(&b, "config reloaded").await;
    reqwest::get(format!("http://{}/healthz", b.addr))
        .await
        .unwrap();
    eventually("debug lines after the reload", || async { answered(&b) }).await;
}

#[test]
fn check_config_shows_which_previous_keys_are_set_masked() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("check-config")
        .env(
            "IMLOGIN__APPS__0__PREVIOUS_SECRET_KEY",
            "the-old-secret-key-value",
        )
        .env("IMLOGIN__APPS__0__JWT__SECRET", "the-jwt-secret-value")
        .env(
            "IMLOGIN__APPS__0__JWT__PREVIOUS_SECRET",
            "the-old-jwt-secret-value",
        )
        .env("IMLOGIN__APPS__0__JWT__ALGORITHMS", r#"["HS256"]"#)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("previous_secret_key = \"***\""),
        "{printed}"
    );
    assert!(printed.contains("previous_secret = \"***\""), "{printed}");
    assert!(!printed.contains("secret-value") && !printed.contains("secret-key-value"));
}

async fn webhook_deliveries_are_counted(backend: Backend) {
    let db = TestDb::new(backend).await;
    let r = crate::webhooks::Receiver::start(crate::webhooks::Mode::Ok).await;
    let mut env = db.binary_env();
    env.extend([("IMLOGIN__APPS__0__WEBHOOK__URL", r.url())]);
    let b = start_binary(&env);
    let c = Client::connect(&format!("ws://{}/v1/ws", b.addr))
        .await
        .unwrap();
    c.login(&params("hooked", "web")).await.unwrap();
    eventually("the delivery is counted", || async {
        let s = scrape(&b).await;
        value(
            &s,
            "imlogin_webhook_deliveries_total",
            &[("outcome", "delivered")],
        ) >= 1.0
    })
    .await;
}

#[test]
fn check_config_refuses_an_empty_webhook_token() {
    // Were it accepted, every Sign would be a hash of the time alone.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("check-config")
        .env("IMLOGIN__APPS__0__WEBHOOK__URL", "http://127.0.0.1:9/hook")
        .env("IMLOGIN__APPS__0__WEBHOOK__TOKEN", "")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("apps[0].webhook.token"), "{err}");
}

#[test]
fn check_config_masks_a_webhook_urls_userinfo() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("check-config")
        .env(
            "IMLOGIN__APPS__0__WEBHOOK__URL",
            "https://hook-user:hook-pass-xyz@hooks.example.com:8443/im/callback?x=1",
        )
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        printed.contains(r#"url = "https://***@hooks.example.com:8443/im/callback?x=1""#),
        "{printed}"
    );
    assert!(
        !printed.contains("hook-pass-xyz") && !printed.contains("hook-user"),
        "{printed}"
    );
}

/// The one log line that names a webhook's URL (an event given up on) shows its userinfo masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_log_line_shows_the_webhook_url_masked() {
    let r = crate::webhooks::Receiver::start(crate::webhooks::Mode::Fail).await;
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[
        sqlite_env(&dir),
        (
            "IMLOGIN__APPS__0__WEBHOOK__URL",
            format!("http://hook-user:hook-pass-xyz@{}/hook", r.addr),
        ),
        ("IMLOGIN__APPS__0__WEBHOOK__MAX_ATTEMPTS", "1".to_owned()),
    ]);
    let login = reqwest::Client::new()
        .post(format!("http://{}/v1/login", b.addr))
        .json(&params("masked", "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    eventually("the event is dead-lettered", || async {
        b.log().contains("dead-lettered")
    })
    .await;
    let log = b.log();
    let line = log.lines().find(|l| l.contains("dead-lettered")).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        v["url"].as_str(),
        Some(format!("http://***@{}/hook", r.addr).as_str()),
        "{line}"
    );
    assert!(!log.contains("hook-pass-xyz"), "{log}");
}

/// PROTOCOL §10: an app using a public example key is warned about at start, naming the key.
#[tokio::test]
async fn the_start_warns_about_a_public_admin_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_binary(&[
        sqlite_env(&dir),
        (
            "IMLOGIN__SESSION__SECRET",
            "our-own-session-secret-value".into(),
        ),
        (
            "IMLOGIN__APPS__0__SECRET_KEY",
            "our-own-secret-key-value".into(),
        ),
    ]);
    let warned: Vec<Value> = json_lines(&b)
        .into_iter()
        .filter(|v| v["level"] == "WARN" && v["message"].as_str().unwrap_or("").contains("public"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["key"], "apps[0].admin_api_key", "{warned:?}");
    assert!(!b.log().contains("demo-admin-api-key-FOR-TRYING-ONLY"));
}

/// Two apps with one admin API key: the key would act for one of them only, so the server does not start.
#[tokio::test]
async fn the_server_does_not_start_with_one_admin_api_key_for_two_apps() {
    let dir = tempfile::tempdir().unwrap();
    let (db_key, db_url) = sqlite_env(&dir);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("serve")
        .env_remove("RUST_LOG")
        .env(db_key, db_url)
        .env("IMLOGIN__SERVER__LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__APPS__1__SDKAPPID", OTHER_APP.to_string())
        .env("IMLOGIN__APPS__1__SECRET_KEY", OTHER_KEY)
        .env("IMLOGIN__APPS__1__ADMINS", r#"["administrator"]"#)
        .env("IMLOGIN__APPS__1__ADMIN_API_KEY", crate::helpers::ADMIN_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed (and failed) if it serves instead.
    let status = crate::server::wait_exit(&mut child).await;
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("`apps[1].admin_api_key`: the same key as apps[0] (1400000000)"),
        "{err}"
    );
    assert!(!err.contains(crate::helpers::ADMIN_KEY), "{err}");
}
