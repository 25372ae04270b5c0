//! Docker cannot run here: the compose file is validated and resolved by Debian's docker-compose (`config`
//! needs no engine), its imlogin environment is run as the real binary against local PostgreSQL, behind the
//! real nginx with deploy/nginx.conf, and Prometheus' alert rules and the Grafana dashboard are checked against
//! what the binary exports.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use imlogin::client::{Client, LoginParams};
use serde_yaml::Value;

use crate::helpers::{Backend, TestDb};
use crate::server::{sigterm, start_binary, Binary};

fn root(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// `docker-compose config` of the repository's compose file: validated, anchors merged, `${…}` resolved (from
/// `env_file` if given, else the defaults in the file).
fn compose_config(env_file: Option<&str>) -> Value {
    let mut cmd = Command::new("docker-compose");
    cmd.arg("--project-directory").arg(root(""));
    cmd.arg("-f").arg(root("docker-compose.yml"));
    if let Some(f) = env_file {
        cmd.arg("--env-file").arg(root(f));
    }
    // Nothing from the environment of the test run may leak into the resolution.
    for (k, _) in std::env::vars() {
        if k.starts_with("IMLOGIN") || k.starts_with("POSTGRES") || k.starts_with("GRAFANA") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["--profile", "monitoring", "config"])
        .output()
        .expect("docker-compose is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "docker-compose config refused the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).unwrap()
}

/// The resolved environment of a service.
fn environment(c: &Value, service: &str) -> BTreeMap<String, String> {
    c["services"][service]["environment"]
        .as_mapping()
        .expect("environment as a map")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// The imlogin services of the compose file (every node).
fn nodes(c: &Value) -> Vec<String> {
    c["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["image"] == "imlogin:local")
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn compose_validates_with_the_defaults_and_with_the_env_example() {
    for env_file in [None, Some(".env.example")] {
        let c = compose_config(env_file);
        assert!(!nodes(&c).is_empty());
    }
    let c = compose_config(Some(".env.example"));
    let env = environment(&c, &nodes(&c)[0]);
    assert_eq!(
        env["IMLOGIN__SESSION__SECRET"],
        "change-me-at-least-16-bytes-session-secret"
    );
}

#[test]
fn compose_environment_passes_check_config() {
    let c = compose_config(None);
    for node in nodes(&c) {
        let env = environment(&c, &node);
        assert!(env["IMLOGIN__DATABASE__URL"].starts_with("postgres://"));
        let out = Command::new(env!("CARGO_BIN_EXE_imlogin"))
            .arg("check-config")
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{node}: compose env rejected: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains("listen = \"0.0.0.0:8080\""), "{printed}");
    }
}

/// The secrets the compose file falls back to, and those of `.env.example`, are public: `check-config` warns about
/// each by its key (the server's start does the same).
#[test]
fn check_config_warns_about_the_secrets_the_compose_file_and_its_env_example_publish() {
    for env_file in [None, Some(".env.example")] {
        let c = compose_config(env_file);
        let env = environment(&c, &nodes(&c)[0]);
        let out = Command::new(env!("CARGO_BIN_EXE_imlogin"))
            .arg("check-config")
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        for key in [
            "session.secret",
            "apps[0].secret_key",
            "apps[0].admin_api_key",
        ] {
            assert!(
                err.contains(&format!("warning: `{key}` is the public example value")),
                "{env_file:?}: {key} not warned about: {err}"
            );
        }
    }
}

#[test]
fn compose_publishes_only_the_proxy_and_checks_every_service_health() {
    let c = compose_config(None);
    let services = c["services"].as_mapping().unwrap();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        let published = serde_yaml::to_string(&s["ports"]).unwrap();
        match name {
            "proxy" => assert!(published.contains("target: 80"), "{published}"),
            // Monitoring UIs only on the host's loopback.
            "prometheus" | "grafana" => {
                assert!(published.starts_with("- 127.0.0.1:"), "{name}: {published}")
            }
            // imlogin's listeners (and its metrics) stay on the internal network.
            _ => assert_eq!(s["ports"], Value::Null, "{name} publishes {published}"),
        }
        if !["prometheus", "grafana"].contains(&name) {
            let test = serde_yaml::to_string(&s["healthcheck"]["test"]).unwrap();
            assert!(test.len() > 10, "{name} has a healthcheck");
        }
    }
    for node in nodes(&c) {
        let env = environment(&c, &node);
        let metrics_port = env["IMLOGIN__SERVER__METRICS_LISTEN"]
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let scrape = std::fs::read_to_string(root("deploy/prometheus/prometheus.yml")).unwrap();
        assert!(
            scrape.contains(&format!("\"{node}:{metrics_port}\"")),
            "Prometheus scrapes {node}"
        );
        let nginx = std::fs::read_to_string(root("deploy/nginx.conf")).unwrap();
        assert!(
            nginx.contains(&format!("server {node}:8080")),
            "the proxy forwards to {node}"
        );
        // The proxy is the one trusted forwarder, at its fixed address.
        let proxy_ip = c["services"]["proxy"]["networks"]["imlogin"]["ipv4_address"]
            .as_str()
            .unwrap();
        assert_eq!(
            env["IMLOGIN__SERVER__TRUSTED_PROXIES"],
            format!("[\"{proxy_ip}/32\"]")
        );
        for dependency in ["postgres", "redis"] {
            assert_eq!(
                c["services"][node.as_str()]["depends_on"][dependency]["condition"],
                "service_healthy",
                "{node} waits for {dependency}"
            );
        }
        assert_eq!(
            env["IMLOGIN__REGISTRY__BACKEND"], "redis",
            "{node} is a cluster node"
        );
    }
    // Data outlives the containers.
    let mounts = serde_yaml::to_string(&c["services"]["postgres"]["volumes"]).unwrap();
    assert!(mounts.contains("pgdata"), "{mounts}");
    assert!(c["volumes"].get("pgdata").is_some(), "named volume pgdata");
}

/// nginx running deploy/nginx.conf, with the upstream pointed at local nodes; stopped on drop.
struct Nginx {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(nodes: &[(&str, &str)]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::helpers::free_port();
        let mut conf = std::fs::read_to_string(root("deploy/nginx.conf")).unwrap();
        for (name, addr) in nodes {
            conf = conf.replace(&format!("server {name}:8080"), &format!("server {addr}"));
        }
        conf = conf.replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        // This machine's hard limit is below the container's (the directive would only log an alert).
        conf = conf.replace("worker_rlimit_nofile 65536;", "");
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let binary = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| Command::new(b).arg("-v").output().is_ok())
            .expect("nginx is installed (scripts/test.sh installs it)");
        let globals = format!(
            "daemon off; pid {}/nginx.pid; error_log stderr;",
            dir.path().display()
        );
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .args(["-g", &globals])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers too (SIGKILL would leave them running).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            crate::server::signal(&self.child, "TERM");
            let _ = self.child.wait();
        }
    }
}

/// The compose deployment on this machine: every node with the compose file's environment (the database,
/// Redis and listeners pointed at local ones, a Redis namespace of its own, the proxy's address trusted),
/// behind nginx with deploy/nginx.conf. Nodes are numbered by Redis in the order they start (1, 2, …).
async fn compose_deployment(db: &TestDb) -> (Vec<Binary>, Nginx, BTreeMap<String, String>) {
    let c = compose_config(None);
    let ns = format!("t{:016x}", rand::random::<u64>());
    let mut binaries = Vec::new();
    let mut env = BTreeMap::new();
    for node in nodes(&c) {
        env = environment(&c, &node);
        env.insert("IMLOGIN__DATABASE__URL".into(), db.url());
        env.insert("IMLOGIN__SERVER__LISTEN".into(), "127.0.0.1:0".into());
        env.insert(
            "IMLOGIN__SERVER__METRICS_LISTEN".into(),
            "127.0.0.1:0".into(),
        );
        env.insert(
            "IMLOGIN__REGISTRY__REDIS_URL".into(),
            "redis://127.0.0.1:6379".into(),
        );
        env.insert("IMLOGIN__REGISTRY__NAMESPACE".into(), ns.clone());
        env.insert(
            "IMLOGIN__SERVER__TRUSTED_PROXIES".into(),
            r#"["127.0.0.1/32"]"#.into(),
        );
        let envs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        binaries.push((node, start_binary(&envs)));
    }
    let upstreams: Vec<(&str, &str)> = binaries
        .iter()
        .map(|(name, b)| (name.as_str(), b.addr.as_str()))
        .collect();
    let nginx = Nginx::start(&upstreams);
    (binaries.into_iter().map(|(_, b)| b).collect(), nginx, env)
}

/// A WebSocket client at 127.0.0.2 that reaches imlogin through the proxy (at 127.0.0.1).
async fn through(nginx: &Nginx) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(nginx.addr.parse().unwrap()).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/v1/ws", nginx.addr), stream)
        .await
        .expect("the proxy passes the WebSocket upgrade");
    Client::from_websocket(ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_serves_through_its_proxy_and_survives_a_rolling_restart() {
    let db = TestDb::new(Backend::Postgres).await;
    let (mut nodes, nginx, env) = compose_deployment(&db).await;
    assert_eq!(nodes.len(), 2, "two nodes");
    let app: u32 = env["IMLOGIN__APPS__0__SDKAPPID"].parse().unwrap();
    let key = &env["IMLOGIN__APPS__0__SECRET_KEY"];
    let login = |user: &str| LoginParams {
        sdkappid: app,
        user_id: user.into(),
        user_sig: imlogin::usersig::tls::generate(
            app,
            key,
            user,
            3600,
            imlogin::runtime::clock::unix_now() as u64,
        ),
        platform: "web".into(),
        device_id: None,
    };
    let mut client = through(&nginx).await;
    let session = client.login(&login("through-the-proxy")).await.unwrap();
    assert_eq!(client.status().await.unwrap(), 1);

    let admin = |path: String| {
        reqwest::Client::new()
            .get(format!("http://{}/admin/v1/apps/{app}{path}", nginx.addr))
            .bearer_auth(&env["IMLOGIN__APPS__0__ADMIN_API_KEY"])
            .send()
    };
    let r = admin("/users/through-the-proxy".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(
        request_id.len(),
        32,
        "nginx's request id, carried to imlogin: {request_id}"
    );
    let user: serde_json::Value = r.json().await.unwrap();
    assert_eq!(user["instances"][0]["client_ip"], "127.0.0.2", "{user}");

    // The node that holds the session, from the registry.
    let conn = imlogin::registry::redis::connect("redis://127.0.0.1:6379", Duration::from_secs(2))
        .await
        .unwrap();
    let registry = imlogin::registry::redis::RedisRegistry::new(
        conn,
        imlogin::registry::redis::Layout::single(&env["IMLOGIN__REGISTRY__NAMESPACE"]),
        0,
        Duration::from_secs(60),
        Duration::from_secs(10),
        imlogin::runtime::clock::Clock::system(),
    );
    use imlogin::registry::Registry;
    let held = registry
        .user_instances(app, "through-the-proxy")
        .await
        .unwrap();
    let holder = held[0].conn.unwrap().node as usize - 1;

    // A rolling restart of that node: it closes with 1012, the proxy passes it on, and the client resumes on
    // the other node through the same proxy.
    sigterm(&nodes[holder].child);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match client.next_event().await {
                Some(imlogin::client::ClientEvent::Closed { code, .. }) => break code,
                Some(_) => continue,
                None => break None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1012));
    crate::server::wait_exit(&mut nodes[holder].child).await;
    let back = through(&nginx).await;
    let resumed = back.resume(&session.session_token).await.unwrap();
    assert!(resumed.resumed);
    let held = registry
        .user_instances(app, "through-the-proxy")
        .await
        .unwrap();
    assert_eq!(
        held[0].conn.unwrap().node as usize - 1,
        1 - holder,
        "resumed on the other node"
    );
}

/// Every metric the alert rules and the dashboard query is one the binary exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_query_only_exported_metrics() {
    let db = TestDb::new(Backend::Sqlite).await;
    let b = start_binary(&[("IMLOGIN__DATABASE__URL", db.url())]);
    // A login and a kick, so the series labelled by app exist.
    let ws = format!("ws://{}/v1/ws", b.addr);
    let (first, second) = (
        Client::connect(&ws).await.unwrap(),
        Client::connect(&ws).await.unwrap(),
    );
    first
        .login(&crate::helpers::params("alerted", "web"))
        .await
        .unwrap();
    second
        .login(&crate::helpers::params("alerted", "web"))
        .await
        .unwrap();
    let text = reqwest::get(format!("http://{}/metrics", b.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .flat_map(|l| {
            let mut parts = l.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            match kind {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                _ => vec![name.to_owned()],
            }
        })
        .collect();
    let alerts = std::fs::read_to_string(root("deploy/prometheus/alerts.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(root("deploy/grafana/dashboards/imlogin.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let rules: Value = serde_yaml::from_str(&alerts).unwrap();
    let mut exprs: Vec<String> = rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 5);
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    let names = regex_lite_names(&exprs);
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            exported.contains(&name),
            "{name} is queried but not exported: {exported:?}"
        );
    }
}

/// The metric names (imlogin_…, process_…) in PromQL expressions.
fn regex_lite_names(exprs: &[String]) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find(|c: char| c.is_ascii_alphabetic()) {
            rest = &rest[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if word.starts_with("imlogin_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
            rest = &rest[end..];
        }
    }
    names
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_healthcheck() {
    let d = std::fs::read_to_string(root("Dockerfile")).unwrap();
    assert_eq!(
        d.lines().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "build and runtime stages"
    );
    assert!(
        d.contains("Cargo.lock ./") && d.contains("--locked"),
        "a locked build"
    );
    assert!(
        d.contains("--mount=type=cache,target=/usr/local/cargo/registry")
            && d.contains("--mount=type=cache,target=/src/target"),
        "dependencies cached between builds"
    );
    let user = d
        .lines()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(d.contains("STOPSIGNAL SIGTERM"));
    assert!(d.contains("HEALTHCHECK") && d.contains("/healthz"));
    // Cargo reads every workspace member's manifest: each must be in the build context.
    let manifest = std::fs::read_to_string(root("Cargo.toml")).unwrap();
    let members: toml::Value = toml::from_str(&manifest).unwrap();
    for member in members["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        assert!(
            d.contains(&format!("COPY {member} {member}")),
            "the build copies the workspace member {member}/"
        );
    }
    assert!(
        !d.contains("fn main() {}"),
        "no stub binaries: the build compiles the real sources"
    );
    // Everything the sources include at compile time (the console's built files too).
    for dir in ["config", "migrations", "src", "web"] {
        assert!(
            d.contains(&format!("COPY {dir} {dir}")),
            "the build copies {dir}/"
        );
    }
}
