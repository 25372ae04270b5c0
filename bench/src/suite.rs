//! The whole benchmark in one command: starts the baseline and imlogin (on SQLite and on PostgreSQL) as child
//! processes, runs every scenario against them in turn (medians of `repeats` runs), prints one JSON line per
//! scenario and a table with the ratios against the baseline.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use sqlx::Connection;

use crate::receivers::{DeadReceiver, FastReceiver};
use crate::{
    cpu_seconds, hold, hold_then, kick, kick_between, logins, logins_via, query_online_status,
    resume, webhook_delivery, Gateway, Target, Users,
};

pub const KEY: &str = "bench-secret-key-0123456789abcdef";
pub const APP: u32 = 1_400_000_000;

/// What the suite runs (the `imlogin-bench suite` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteOptions {
    /// PostgreSQL server for the new-user runs (a fresh database is created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    /// Servers on core 0, the generator on core 1.
    #[arg(long)]
    pub pin: bool,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value_t = 20_000)]
    pub logins: usize,
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 2000)]
    pub known_users: usize,
    #[arg(long, default_value_t = 10_000)]
    pub new_logins: usize,
    #[arg(long, default_value_t = 19_000)]
    pub hold_sessions: usize,
    /// Client source addresses 127.0.0.1..=N: each has its own ephemeral ports, so a port is reused (and
    /// may meet its old connection's TIME_WAIT, costing a 1 s SYN retry) less often.
    #[arg(long, default_value_t = 16)]
    pub sources: usize,
    #[arg(long, default_value_t = 1000)]
    pub kick_rounds: usize,
    #[arg(long, default_value_t = 5000)]
    pub resume_sessions: usize,
    /// Scenario groups to run: `core` (logins, kicks, resume, memory, admin queries), `webhooks`, `metrics`
    /// (known-user logins with metrics on and off), `cluster` (the Redis registry: logins, kicks across nodes,
    /// three nodes holding sessions), `websdk` (known-user logins through `/v1/ws` and through the Web SDK
    /// gateway, alternating, on one server: server CPU per login), `abuse` (other clients' login latency
    /// during a flood from one address, against the same without it).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "core,webhooks,metrics,cluster,websdk,abuse"
    )]
    pub groups: Vec<String>,
    /// Redis for the cluster group (a namespace of its own is used and removed).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Seed nodes of a Redis Cluster (comma-separated `redis://` URLs): the cluster group runs on it instead of
    /// `--redis` (scripts/bench-redis-cluster.sh starts one and passes them).
    #[arg(long, value_delimiter = ',')]
    pub redis_cluster_nodes: Vec<String>,
    /// Sessions each of the three nodes holds in the cluster group.
    #[arg(long, default_value_t = 19_000)]
    pub cluster_hold_sessions: usize,
    /// The cluster group runs its known-user logins only (to compare Redis topologies side by side).
    #[arg(long)]
    pub cluster_logins_only: bool,
    /// Events of each webhook delivery run.
    #[arg(long, default_value_t = 20_000)]
    pub webhook_events: usize,
}

/// A server under test, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: Option<tempfile_dir::Dir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop (no dev-dependency in the library).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("a directory")
        .to_path_buf()
}

fn command(pin: bool, program: PathBuf) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg("0").arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_baseline(pin: bool) -> anyhow::Result<Server> {
    let mut child = command(pin, exe_dir().join("imlogin-bench"))
        .args(["baseline", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| anyhow::anyhow!("baseline said {line:?}"))?
        .parse()?;
    Ok(Server {
        child,
        addr,
        _dir: None,
    })
}

fn start_imlogin(pin: bool, database_url: Option<String>) -> anyhow::Result<Server> {
    start_imlogin_with(pin, database_url, &[])
}

/// imlogin with extra environment (`IMLOGIN__…` settings).
fn start_imlogin_with(
    pin: bool,
    database_url: Option<String>,
    env: &[(&str, String)],
) -> anyhow::Result<Server> {
    let dir = std::env::temp_dir().join(format!(
        "imlogin-bench-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    let url = database_url.unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display()));
    let mut child = command(pin, exe_dir().join("imlogin"))
        .arg("serve")
        .env("IMLOGIN__SERVER__LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .env("IMLOGIN__DATABASE__URL", url)
        .env("IMLOGIN__LOG__FORMAT", "json")
        .env("IMLOGIN__LOG__LEVEL", "warn,imlogin::app=info")
        .env("IMLOGIN__LIMITS__LOGIN_FAILURES_PER_MINUTE", "1000000")
        // The generator holds up to 19,000 sessions from 16 addresses (~1,200 each): more than the default.
        .env("IMLOGIN__LIMITS__CONNECTIONS_PER_IP", "0")
        .env("IMLOGIN__LIMITS__NEW_CONNECTIONS_PER_IP_PER_SECOND", "0")
        .env(
            "IMLOGIN__SESSION__SECRET",
            "bench-session-secret-0123456789",
        )
        .env("IMLOGIN__APPS__0__SECRET_KEY", KEY)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("imlogin exited before listening"))??;
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "imlogin listening" {
            break v["addr"].as_str().unwrap_or_default().parse()?;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Server {
        child,
        addr,
        _dir: Some(tempfile_dir::Dir(dir)),
    })
}

fn target(server: &Server, sources: usize) -> Target {
    Target {
        addr: server.addr,
        sdkappid: APP,
        key: KEY.to_owned(),
        sources: (1..=sources as u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `f` `repeats` times against `server` (after a short pause, so one scenario's closing connections do not
/// load the next); returns the run with the median of `metric`, and the CPU seconds the generator and the server
/// used over all runs.
async fn measured<F, Fut>(
    server: &Server,
    repeats: usize,
    metric: fn(&Value) -> f64,
    mut f: F,
) -> (Value, f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (me, pid) = (std::process::id(), server.child.id());
    let (gen0, srv0) = (cpu_seconds(me), cpu_seconds(pid));
    let mut runs = Vec::new();
    for r in 0..repeats {
        runs.push(f(r).await);
    }
    let m = median(runs.iter().map(metric).collect());
    let chosen = runs
        .into_iter()
        .find(|r| metric(r) == m)
        .unwrap_or_default();
    (chosen, cpu_seconds(me) - gen0, cpu_seconds(pid) - srv0)
}

fn throughput(v: &Value) -> f64 {
    v["per_second"].as_f64().unwrap_or(0.0)
}

fn p99(v: &Value) -> f64 {
    v["latency"]["p99_ms"].as_f64().unwrap_or(0.0)
}

fn emit(
    lines: &mut Vec<Value>,
    scenario: &str,
    server: &str,
    mut v: Value,
    gen_cpu: f64,
    srv_cpu: f64,
) {
    v["scenario"] = json!(scenario);
    v["server"] = json!(server);
    v["generator_cpu_s"] = json!((gen_cpu * 100.0).round() / 100.0);
    v["server_cpu_s"] = json!((srv_cpu * 100.0).round() / 100.0);
    println!("{v}");
    lines.push(v);
}

async fn fresh_postgres(admin: &str) -> anyhow::Result<(String, String)> {
    let name = format!(
        "imlogin_bench_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    Ok((format!("{base}/{name}"), name))
}

async fn drop_postgres(admin: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

/// `n` logins of known users (cycling over `o.known_users`), closed loop or at `rate`.
async fn known_logins(t: &Target, o: &SuiteOptions, n: usize, rate: Option<f64>) -> Value {
    json!(logins(t, &Users::Known(o.known_users), n, o.concurrency, rate).await)
}

/// Runs every scenario; returns the JSON lines (also printed as they come).
pub async fn run(o: &SuiteOptions) -> anyhow::Result<Vec<Value>> {
    if o.pin {
        // The generator takes core 1; the servers are started on core 0.
        Command::new("taskset")
            .args(["-a", "-cp", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()?;
    }
    let mut out = Vec::new();
    let mut baseline_rate = 0.0;
    if o.groups.iter().any(|g| g == "core") {
        baseline_rate = core(o, &mut out).await?;
    }
    if o.groups.iter().any(|g| g == "webhooks") {
        webhooks(o, &mut out).await?;
    }
    if o.groups.iter().any(|g| g == "metrics") {
        metrics(o, &mut out).await?;
    }
    if o.groups.iter().any(|g| g == "websdk") {
        websdk(o, &mut out).await?;
    }
    if o.groups.iter().any(|g| g == "abuse") {
        abuse(o, &mut out).await?;
    }
    if o.groups.iter().any(|g| g == "cluster") {
        if baseline_rate == 0.0 {
            baseline_rate = baseline_logins(o, &mut out).await?;
        }
        cluster(o, &mut out).await?;
    }
    eprintln!("{}", table(&out, baseline_rate));
    Ok(out)
}

/// Logins, kicks, resume, idle memory and admin queries, against the baseline where it applies; returns the
/// baseline's known-login rate.
async fn core(o: &SuiteOptions, out: &mut Vec<Value>) -> anyhow::Result<f64> {
    let reps = o.repeats;

    // Known-user logins: baseline, then imlogin (SQLite; a known user's login reads no database).
    let base = start_baseline(o.pin)?;
    let bt = target(&base, o.sources);
    let baseline_rate = baseline_logins_on(&base, o, out).await;

    let im = start_imlogin(o.pin, None)?;
    let it = target(&im, o.sources);
    // Warm-up: every known user logs in once (registers, fills the cache).
    known_logins(&it, o, o.known_users, None).await;
    let (v, g, s) = measured(&im, reps, throughput, |_| {
        known_logins(&it, o, o.logins, None)
    })
    .await;
    let imlogin_rate = v["per_second"].as_f64().unwrap_or(0.0);
    emit(out, "logins_known", "imlogin", v, g, s);

    // Latency at 80 % of imlogin's maximum rate, open loop, for 5 s.
    let rate = imlogin_rate * 0.8;
    let n = (rate * 5.0) as usize;
    for (name, t, srv) in [("baseline", &bt, &base), ("imlogin", &it, &im)] {
        let (v, g, s) = measured(srv, reps, p99, |_| known_logins(t, o, n, Some(rate))).await;
        emit(out, "logins_at_80pct", name, v, g, s);
    }

    // New users on SQLite (imlogin above was started on a fresh SQLite file).
    let (v, g, s) =
        measured(&im, reps, throughput, |r| {
            let prefix = format!("new-sqlite-{r}");
            let it = &it;
            async move {
                json!(logins(it, &Users::New(prefix), o.new_logins, o.concurrency, None).await)
            }
        })
        .await;
    emit(out, "logins_new_sqlite", "imlogin", v, g, s);

    // Kick latency and mass resume.
    let (v, g, s) = measured(&im, 1, throughput, |_| async {
        json!({"per_second": 0, "kick": kick(&it, o.kick_rounds, "kick").await})
    })
    .await;
    emit(out, "kick", "imlogin", v["kick"].clone(), g, s);
    let (v, g, s) = measured(&im, 1, throughput, |_| async {
        json!(resume(&it, o.resume_sessions, o.concurrency, "resume").await)
    })
    .await;
    emit(out, "resume", "imlogin", v, g, s);
    drop(im);

    // New users on PostgreSQL.
    let (url, name) = fresh_postgres(&o.postgres).await?;
    let pg = start_imlogin(o.pin, Some(url))?;
    let pt = target(&pg, o.sources);
    let (v, g, s) =
        measured(&pg, reps, throughput, |r| {
            let prefix = format!("new-pg-{r}");
            let pt = &pt;
            async move {
                json!(logins(pt, &Users::New(prefix), o.new_logins, o.concurrency, None).await)
            }
        })
        .await;
    emit(out, "logins_new_postgres", "imlogin", v, g, s);
    drop(pg);
    drop_postgres(&o.postgres, &name).await;

    // Idle sessions held open: baseline, then imlogin.
    let bh = target(&base, o.sources);
    let (v, g, s) = measured(&base, 1, throughput, |_| async {
        json!(hold(&bh, base.child.id(), o.hold_sessions, o.concurrency, "hold").await)
    })
    .await;
    emit(out, "hold", "baseline", v, g, s);
    drop(base);
    let im = start_imlogin(o.pin, None)?;
    let ih = target(&im, o.sources);
    // While the sessions are held: the admin's online-status query of 500 of them at a time.
    let (v, g, s) = measured(&im, 1, throughput, |_| async {
        let (held, query) = hold_then(
            &ih,
            im.child.id(),
            o.hold_sessions,
            o.concurrency,
            "hold",
            |names| {
                let ih = &ih;
                async move { query_online_status(ih, &names, 500, 300).await }
            },
        )
        .await;
        json!({"hold": held, "query": query})
    })
    .await;
    emit(out, "hold", "imlogin", v["hold"].clone(), g, s);
    emit(
        out,
        "query_online_status_500",
        "imlogin",
        v["query"].clone(),
        0.0,
        0.0,
    );
    drop(im);

    // The same on PostgreSQL (the production store): no page caches of an embedded database in the process.
    let (url, name) = fresh_postgres(&o.postgres).await?;
    let pg = start_imlogin(o.pin, Some(url))?;
    let ph = target(&pg, o.sources);
    let (v, g, s) = measured(&pg, 1, throughput, |_| async {
        json!(hold(&ph, pg.child.id(), o.hold_sessions, o.concurrency, "hold").await)
    })
    .await;
    emit(out, "hold_postgres", "imlogin", v, g, s);
    drop(pg);
    drop_postgres(&o.postgres, &name).await;
    Ok(baseline_rate)
}

/// The baseline's known-user login rate (started for this only).
async fn baseline_logins(o: &SuiteOptions, out: &mut Vec<Value>) -> anyhow::Result<f64> {
    let base = start_baseline(o.pin)?;
    Ok(baseline_logins_on(&base, o, out).await)
}

async fn baseline_logins_on(base: &Server, o: &SuiteOptions, out: &mut Vec<Value>) -> f64 {
    let bt = target(base, o.sources);
    let (v, g, s) = measured(base, o.repeats, throughput, |_| {
        known_logins(&bt, o, o.logins, None)
    })
    .await;
    let rate = v["per_second"].as_f64().unwrap_or(0.0);
    emit(out, "logins_known", "baseline", v, g, s);
    rate
}

/// Known-user logins on `t` taking turns with the same logins on a baseline, run by run: `repeats` pairs, each
/// pair's ratio, and their median. This machine's speed drifts by ±15 % over minutes, and the two runs of a pair
/// are seconds apart, so the median of pairs says more than a ratio of medians measured minutes apart.
async fn paired_with_baseline(
    o: &SuiteOptions,
    node: &Server,
    redis: &BenchRedis,
    out: &mut Vec<Value>,
) -> anyhow::Result<()> {
    let t = &target(node, o.sources);
    let base = start_baseline(o.pin)?;
    let bt = target(&base, o.sources);
    known_logins(&bt, o, o.known_users, None).await;
    let (mut ratios, mut rates, mut baseline_rates) = (Vec::new(), Vec::new(), Vec::new());
    // CPU seconds of each process over the runs of each side: generator, server, Redis masters, replicas.
    let (mut base_cpu, mut node_cpu) = ([0.0; 4], [0.0; 4]);
    let me = std::process::id();
    let sample = |server: u32| async move {
        let (m, r) = redis.cpu_seconds().await;
        [cpu_seconds(me), cpu_seconds(server), m, r]
    };
    let (base_pid, node_pid) = (base.child.id(), node.child.id());
    for _ in 0..o.repeats {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let before = sample(base_pid).await;
        let b = throughput(&known_logins(&bt, o, o.logins, None).await);
        let after = sample(base_pid).await;
        (0..4).for_each(|i| base_cpu[i] += after[i] - before[i]);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let before = sample(node_pid).await;
        let r = throughput(&known_logins(t, o, o.logins, None).await);
        let after = sample(node_pid).await;
        (0..4).for_each(|i| node_cpu[i] += after[i] - before[i]);
        ratios.push(r / b.max(f64::MIN_POSITIVE));
        rates.push(r);
        baseline_rates.push(b);
    }
    let per_login = |c: [f64; 4]| {
        let us = |s: f64| (s * 1e6 / (o.repeats * o.logins).max(1) as f64).round();
        json!({"generator": us(c[0]), "server": us(c[1]), "redis_masters": us(c[2]), "redis_replicas": us(c[3])})
    };
    let v = redis.tagged(json!({
        "scenario": "logins_known_redis_paired",
        "server": "imlogin",
        "pairs": o.repeats,
        "per_second": median(rates.clone()),
        "baseline_per_second": median(baseline_rates.clone()),
        "ratio": median(ratios.clone()),
        "ratios": ratios,
        "rates": rates,
        "baseline_rates": baseline_rates,
        // Where each login's CPU went (µs; the machine's cores are shared by all of them).
        "cpu_us_per_login": per_login(node_cpu),
        "baseline_cpu_us_per_login": per_login(base_cpu),
    }));
    println!("{v}");
    out.push(v);
    Ok(())
}

/// The environment of a cluster node: the Redis registry in namespace `ns`, on one Redis or a Redis Cluster.
fn cluster_env(o: &SuiteOptions, ns: &str) -> Vec<(&'static str, String)> {
    let redis = if o.redis_cluster_nodes.is_empty() {
        ("IMLOGIN__REGISTRY__REDIS_URL", o.redis.clone())
    } else {
        let quoted: Vec<String> = o
            .redis_cluster_nodes
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect();
        (
            "IMLOGIN__REGISTRY__REDIS_CLUSTER_NODES",
            format!("[{}]", quoted.join(",")),
        )
    };
    vec![
        ("IMLOGIN__REGISTRY__BACKEND", "redis".into()),
        redis,
        ("IMLOGIN__REGISTRY__NAMESPACE", ns.into()),
    ]
}

/// The Redis the cluster group runs on, as the benchmark reads it: one server, or each node of a Redis Cluster
/// (of which the masters hold the keys).
struct BenchRedis {
    nodes: Vec<redis::aio::ConnectionManager>,
    cluster: bool,
    /// Which Redis a figure is of: one server, or a Redis Cluster and its masters and replicas.
    shape: Value,
}

impl BenchRedis {
    async fn open(o: &SuiteOptions) -> anyhow::Result<BenchRedis> {
        let cluster = !o.redis_cluster_nodes.is_empty();
        let urls = if cluster {
            o.redis_cluster_nodes.clone()
        } else {
            vec![o.redis.clone()]
        };
        let mut nodes = Vec::new();
        for u in urls {
            nodes.push(
                redis::Client::open(u.as_str())?
                    .get_connection_manager()
                    .await?,
            );
        }
        let mut redis = BenchRedis {
            nodes,
            cluster,
            shape: Value::Null,
        };
        let masters = redis.masters().await.len();
        redis.shape = json!({
            "redis": if cluster { "cluster" } else { "one" },
            "redis_masters": masters,
            "redis_replicas": redis.nodes.len() - masters,
        });
        Ok(redis)
    }

    /// `v` with the shape of this Redis.
    fn tagged(&self, mut v: Value) -> Value {
        for (k, x) in self.shape.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        v
    }

    fn layout(&self, ns: &str) -> imlogin::registry::redis::Layout {
        match self.cluster {
            true => imlogin::registry::redis::Layout::cluster(ns).expect("a plain namespace"),
            false => imlogin::registry::redis::Layout::single(ns),
        }
    }

    /// The nodes holding keys now (every node of one Redis; the masters of a cluster).
    async fn masters(&self) -> Vec<redis::aio::ConnectionManager> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let role: Vec<redis::Value> = redis::cmd("ROLE")
                .query_async(&mut n.clone())
                .await
                .unwrap_or_default();
            if !self.cluster
                || matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
            {
                out.push(n.clone());
            }
        }
        out
    }

    /// CPU seconds Redis has used (`INFO cpu`), summed over the masters and over the replicas.
    async fn cpu_seconds(&self) -> (f64, f64) {
        let (mut masters, mut replicas) = (0.0, 0.0);
        for n in &self.nodes {
            let info: String = redis::cmd("INFO")
                .arg("cpu")
                .query_async(&mut n.clone())
                .await
                .unwrap_or_default();
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let used = field("used_cpu_sys:") + field("used_cpu_user:");
            let role: Vec<redis::Value> = redis::cmd("ROLE")
                .query_async(&mut n.clone())
                .await
                .unwrap_or_default();
            match role.first() {
                Some(redis::Value::BulkString(r)) if r == b"slave" => replicas += used,
                _ => masters += used,
            }
        }
        (masters, replicas)
    }

    /// `used_memory`, summed over the masters.
    async fn memory(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for mut m in self.masters().await {
            let info: String = redis::cmd("INFO").arg("memory").query_async(&mut m).await?;
            total += info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| anyhow::anyhow!("no used_memory in INFO"))?;
        }
        Ok(total)
    }

    /// Users the registry holds in namespace `ns` (each held session is one user).
    async fn online(&self, ns: &str) -> anyhow::Result<u64> {
        let pattern = self.layout(ns).user_pattern(None);
        let mut n = 0;
        for mut m in self.masters().await {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(5000)
                    .query_async(&mut m)
                    .await?;
                n += keys.len() as u64;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(n)
    }

    /// Removes the namespace's keys, one `DEL` each (a cluster's keys of one call must share a slot).
    async fn drop_namespace(&self, ns: &str) {
        for mut m in self.masters().await {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{ns}:*"))
                .query_async(&mut m)
                .await
                .unwrap_or_default();
            for chunk in keys.chunks(1000) {
                let mut pipe = redis::pipe();
                for k in chunk {
                    pipe.cmd("DEL").arg(k).ignore();
                }
                let _ = pipe.query_async::<()>(&mut m).await;
            }
        }
    }
}

/// The cluster: known-user logins on the Redis registry (one node, against the baseline), kick latency across
/// two nodes, and three nodes holding sessions (each node's RSS and Redis's memory per session).
async fn cluster(o: &SuiteOptions, out: &mut Vec<Value>) -> anyhow::Result<()> {
    let redis = BenchRedis::open(o).await?;
    let ns = format!("bench{:08x}", rand::random::<u32>());
    let env = cluster_env(o, &ns);
    let (url, db) = fresh_postgres(&o.postgres).await?;

    let first = start_imlogin_with(o.pin, Some(url.clone()), &env)?;
    let ft = target(&first, o.sources);
    known_logins(&ft, o, o.known_users, None).await;
    let (v, g, s) = measured(&first, o.repeats, throughput, |_| {
        known_logins(&ft, o, o.logins, None)
    })
    .await;
    emit(out, "logins_known_redis", "imlogin", redis.tagged(v), g, s);
    paired_with_baseline(o, &first, &redis, out).await?;
    if o.cluster_logins_only {
        drop(first);
        redis.drop_namespace(&ns).await;
    } else {
        kicks_and_holds(o, &redis, &url, (first, &ns), out).await?;
    }
    drop_postgres(&o.postgres, &db).await;
    Ok(())
}

/// The cluster group's kicks across two nodes (from `first`, a node on the Redis registry in namespace `ns`) and
/// three nodes holding sessions.
async fn kicks_and_holds(
    o: &SuiteOptions,
    redis: &BenchRedis,
    url: &str,
    (first, ns): (Server, &str),
    out: &mut Vec<Value>,
) -> anyhow::Result<()> {
    let env = cluster_env(o, ns);
    let ft = target(&first, o.sources);
    let second = start_imlogin_with(o.pin, Some(url.to_owned()), &env)?;
    let st = target(&second, o.sources);
    let (v, g, s) = measured(&second, 1, throughput, |_| async {
        json!({"per_second": 0, "kick": kick_between(&ft, &st, o.kick_rounds, "xkick").await})
    })
    .await;
    emit(
        out,
        "kick_cross_node",
        "imlogin",
        redis.tagged(v["kick"].clone()),
        g,
        s,
    );
    drop((first, second));
    redis.drop_namespace(ns).await;

    // Three nodes, each held by a generator process of its own (one process may hold 20,000 files).
    let ns = format!("bench{:08x}", rand::random::<u32>());
    let env = cluster_env(o, &ns);
    let nodes: Vec<Server> = (0..3)
        .map(|_| start_imlogin_with(o.pin, Some(url.to_owned()), &env))
        .collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let redis_before = redis.memory().await?;
    let k = o.cluster_hold_sessions;
    let sources: Vec<String> = (1..=o.sources).map(|i| format!("127.0.0.{i}")).collect();
    let children: Vec<Child> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            command(false, exe_dir().join("imlogin-bench"))
                .args(["hold", "--addr", &n.addr.to_string()])
                .args(["--key", KEY, "--sdkappid", &APP.to_string()])
                .args(["--pid", &n.child.id().to_string()])
                .args([
                    "--sessions",
                    &k.to_string(),
                    "--prefix",
                    &format!("node{i}"),
                ])
                .args(["--concurrency", &o.concurrency.to_string()])
                .args(["--sources", &sources.join(","), "--linger-secs", "20"])
                .stdout(Stdio::piped())
                .spawn()
                .map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<_>>()?;
    // Redis is read once every node holds its sessions (or after a generous wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    while redis.online(&ns).await? < (3 * k) as u64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let online = redis.online(&ns).await?;
    let redis_after = redis.memory().await?;
    let mut held = Vec::new();
    for child in children {
        let output = child.wait_with_output()?;
        held.push(serde_json::from_slice::<Value>(&output.stdout).unwrap_or_default());
    }
    let per_node: Vec<f64> = held
        .iter()
        .map(|h| h["bytes_per_session"].as_f64().unwrap_or(0.0))
        .collect();
    let sessions: u64 = held
        .iter()
        .map(|h| h["sessions"].as_u64().unwrap_or(0))
        .sum();
    let v = json!({
        "sessions": sessions,
        "online_in_redis": online,
        "bytes_per_session": per_node.iter().sum::<f64>() / per_node.len().max(1) as f64,
        "bytes_per_session_by_node": per_node,
        "redis_bytes_per_session": redis_after.saturating_sub(redis_before) as f64 / online.max(1) as f64,
        "nodes": held,
    });
    emit(out, "hold_cluster", "imlogin", redis.tagged(v), 0.0, 0.0);
    drop(nodes);
    redis.drop_namespace(&ns).await;
    Ok(())
}

/// Webhooks: known-user logins with a receiver that never answers against the same without webhooks, and the
/// outbox's delivery rate to a fast receiver on SQLite and PostgreSQL.
async fn webhooks(o: &SuiteOptions, out: &mut Vec<Value>) -> anyhow::Result<()> {
    let reps = o.repeats;
    let plain = start_imlogin(o.pin, None)?;
    let pt = target(&plain, o.sources);
    known_logins(&pt, o, o.known_users, None).await;
    let (v, g, s) = measured(&plain, reps, throughput, |_| {
        known_logins(&pt, o, o.logins, None)
    })
    .await;
    emit(out, "logins_known_webhooks_off", "imlogin", v, g, s);
    drop(plain);

    let dead = DeadReceiver::start().await?;
    let hooked = start_imlogin_with(
        o.pin,
        None,
        &[("IMLOGIN__APPS__0__WEBHOOK__URL", dead.url())],
    )?;
    let ht = target(&hooked, o.sources);
    known_logins(&ht, o, o.known_users, None).await;
    let (v, g, s) = measured(&hooked, reps, throughput, |_| {
        known_logins(&ht, o, o.logins, None)
    })
    .await;
    emit(
        out,
        "logins_known_webhooks_dead_receiver",
        "imlogin",
        v,
        g,
        s,
    );
    drop(hooked);
    drop(dead);

    let fast = FastReceiver::start().await?;
    for store in ["sqlite", "postgres"] {
        let pg = if store == "postgres" {
            Some(fresh_postgres(&o.postgres).await?)
        } else {
            None
        };
        let url = pg.as_ref().map(|(u, _)| u.clone());
        let im = start_imlogin_with(
            o.pin,
            url,
            &[("IMLOGIN__APPS__0__WEBHOOK__URL", fast.url())],
        )?;
        let it = target(&im, o.sources);
        // Warm-up: register and cache the users; their events are delivered before the measure starts.
        let before = fast.received();
        known_logins(&it, o, o.known_users, None).await;
        while fast.received() < before + o.known_users {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let (v, g, s) = measured(&im, reps, throughput, |_| {
            webhook_delivery_json(&it, &fast, o.known_users, o.webhook_events, o.concurrency)
        })
        .await;
        emit(
            out,
            &format!("webhook_delivery_{store}"),
            "imlogin",
            v,
            g,
            s,
        );
        drop(im);
        if let Some((_, name)) = pg {
            drop_postgres(&o.postgres, &name).await;
        }
    }
    Ok(())
}

/// Known-user logins with metrics on and off. Both servers run side by side and the runs alternate (on, off,
/// off, on, …), so a drift of the machine over the minutes of the runs weighs on both alike; medians of each.
async fn metrics(o: &SuiteOptions, out: &mut Vec<Value>) -> anyhow::Result<()> {
    let off_env = [("IMLOGIN__SERVER__METRICS_ENABLED", "false".to_owned())];
    let servers = [
        ("logins_known_metrics_on", start_imlogin(o.pin, None)?),
        (
            "logins_known_metrics_off",
            start_imlogin_with(o.pin, None, &off_env)?,
        ),
    ];
    let targets: Vec<Target> = servers.iter().map(|(_, s)| target(s, o.sources)).collect();
    for t in &targets {
        known_logins(t, o, o.known_users, None).await;
    }
    let mut runs: [Vec<(Value, f64, f64)>; 2] = Default::default();
    for r in 0..o.repeats {
        // Which goes first alternates too.
        for i in [r % 2, 1 - r % 2] {
            let server = &servers[i].1;
            let r = measured(server, 1, throughput, |_| {
                known_logins(&targets[i], o, o.logins, None)
            })
            .await;
            runs[i].push(r);
        }
    }
    for (i, (scenario, _)) in servers.iter().enumerate() {
        let m = median(runs[i].iter().map(|r| throughput(&r.0)).collect());
        let (gen, srv) = runs[i]
            .iter()
            .fold((0.0, 0.0), |(g, s), r| (g + r.1, s + r.2));
        let chosen = runs[i]
            .iter()
            .find(|r| throughput(&r.0) == m)
            .map(|r| r.0.clone())
            .unwrap_or_default();
        emit(out, scenario, "imlogin", chosen, gen, srv);
    }
    Ok(())
}

/// Known-user logins through `/v1/ws` and through `/tim/binfo` on one server, alternating (which goes first too):
/// the server's CPU per login on each.
async fn websdk(o: &SuiteOptions, out: &mut Vec<Value>) -> anyhow::Result<()> {
    let server = start_imlogin(o.pin, None)?;
    let t = target(&server, o.sources);
    let gateways = [
        ("logins_known_native", Gateway::Native),
        ("logins_known_websdk", Gateway::WebSdk),
    ];
    let users = Users::Known(o.known_users);
    known_logins(&t, o, o.known_users, None).await;
    let mut runs: [Vec<(Value, f64, f64)>; 2] = Default::default();
    for r in 0..o.repeats {
        for i in [r % 2, 1 - r % 2] {
            let gateway = gateways[i].1;
            let run = measured(&server, 1, throughput, |_| async {
                json!(logins_via(&t, gateway, &users, o.logins, o.concurrency, None).await)
            })
            .await;
            runs[i].push(run);
        }
    }
    for (i, (scenario, _)) in gateways.iter().enumerate() {
        let m = median(runs[i].iter().map(|r| throughput(&r.0)).collect());
        let (gen, srv) = runs[i]
            .iter()
            .fold((0.0, 0.0), |(g, s), r| (g + r.1, s + r.2));
        let logins: f64 = runs[i]
            .iter()
            .map(|r| r.0["logins"].as_f64().unwrap_or(0.0))
            .sum();
        let mut chosen = runs[i]
            .iter()
            .find(|r| throughput(&r.0) == m)
            .map(|r| r.0.clone())
            .unwrap_or_default();
        chosen["server_cpu_us_per_login"] = json!((srv * 1e6 / logins.max(1.0)).round());
        emit(out, scenario, "imlogin", chosen, gen, srv);
    }
    Ok(())
}

/// Known-user logins at a fixed rate (open loop, 5 s) from 100 addresses, quiet and during a flood from one
/// other address (a separate process at the lowest CPU priority: 1,500 sockets that never log in and send frames
/// as fast as they can), on a server with the default `[limits]`; alternating, median p99 of each.
///
/// A third run floods a second imlogin instead (the control): the same flood on the same two cores, handled by
/// another process. Flooded against the control is what the server's own handling of the flood costs the other
/// clients; against quiet it also counts the attacker's CPU and kernel work, which here shares the cores.
async fn abuse(o: &SuiteOptions, out: &mut Vec<Value>) -> anyhow::Result<()> {
    const RATE: f64 = 4000.0;
    // The limits imlogin ships with (the other scenarios lift the per-address ones; this one puts them back).
    // The other clients come from 100 addresses.
    let defaults = imlogin::config::Settings::load_with_env(None, std::iter::empty())?.limits;
    let limits = [
        (
            "IMLOGIN__LIMITS__CONNECTIONS_PER_IP",
            defaults.connections_per_ip.to_string(),
        ),
        (
            "IMLOGIN__LIMITS__NEW_CONNECTIONS_PER_IP_PER_SECOND",
            defaults.new_connections_per_ip_per_second.to_string(),
        ),
    ];
    let server = start_imlogin_with(o.pin, None, &limits)?;
    let decoy = start_imlogin_with(o.pin, None, &limits)?;
    let t = target(&server, 100);
    let users = Users::Known(o.known_users);
    known_logins(&t, o, o.known_users, None).await;
    let n = (RATE * 5.0) as usize;
    let (mut quiet, mut flooded, mut control) = (Vec::new(), Vec::new(), Vec::new());
    // Each flood comes from an address of its own: a flood from the address of the one before it was seen to get
    // a fraction of the sockets (what the previous one left behind for that address, in the kernel's TIME_WAIT
    // or the server's per-address state, is not the same for every run).
    let mut floods = 0..;
    for _ in 0..o.repeats {
        let run = measured(&server, 1, p99, |_| async {
            json!(logins_via(&t, Gateway::Native, &users, n, o.concurrency, Some(RATE)).await)
        })
        .await;
        quiet.push(run);
        for (flooded_server, runs) in [(&server, &mut flooded), (&decoy, &mut control)] {
            let source = format!("127.0.2.{}", 1 + floods.next().unwrap_or(0) % 250);
            // At the lowest CPU priority: an attacker's CPU is its own, not the server's or the generator's,
            // and here the three share two cores. What the flood sends still has to be handled by the server.
            let flood = Command::new("chrt")
                .args(["--idle", "0"])
                .arg(exe_dir().join("imlogin-bench"))
                .args(["flood", "--addr", &flooded_server.addr.to_string()])
                .args(["--source", &source, "--tasks", "1500", "--secs", "9"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            // Let it ramp up before measuring under it.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let mut run = measured(&server, 1, p99, |_| async {
                json!(logins_via(&t, Gateway::Native, &users, n, o.concurrency, Some(RATE)).await)
            })
            .await;
            let output = tokio::task::spawn_blocking(move || flood.wait_with_output()).await??;
            run.0["flood"] = serde_json::from_slice(&output.stdout).unwrap_or_default();
            runs.push(run);
        }
    }
    drop(decoy);
    for (scenario, runs) in [
        ("logins_at_4000_quiet", quiet),
        ("logins_at_4000_flooded", flooded),
        ("logins_at_4000_flood_elsewhere", control),
    ] {
        let m = median(runs.iter().map(|r| p99(&r.0)).collect());
        let (gen, srv) = runs.iter().fold((0.0, 0.0), |(g, s), r| (g + r.1, s + r.2));
        let chosen = runs
            .into_iter()
            .find(|r| p99(&r.0) == m)
            .map(|r| r.0)
            .unwrap_or_default();
        emit(out, scenario, "imlogin", chosen, gen, srv);
    }
    Ok(())
}

async fn webhook_delivery_json(
    t: &Target,
    fast: &FastReceiver,
    users: usize,
    n: usize,
    c: usize,
) -> Value {
    json!(webhook_delivery(t, fast, users, n, c).await)
}

fn find<'a>(lines: &'a [Value], scenario: &str, server: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["scenario"] == scenario && l["server"] == server)
}

/// The human table: each scenario with its absolute figures and the ratio the targets are stated in.
pub fn table(lines: &[Value], baseline_rate: f64) -> String {
    let mut t = String::from("scenario              server    throughput/s     p50 ms   p99 ms   max ms   ratio vs baseline\n");
    for l in lines {
        let lat = if l.get("latency").is_some() {
            &l["latency"]
        } else {
            l
        };
        let ratio = match (l["scenario"].as_str(), l["server"].as_str()) {
            (Some("hold" | "hold_postgres"), Some("imlogin")) => find(lines, "hold", "baseline")
                .map(|b| {
                    format!(
                        "{:.2}x bytes/session",
                        l["bytes_per_session"].as_f64().unwrap_or(0.0)
                            / b["bytes_per_session"].as_f64().unwrap_or(1.0)
                    )
                })
                .unwrap_or_default(),
            (Some("logins_known_webhooks_dead_receiver"), Some("imlogin")) => {
                find(lines, "logins_known_webhooks_off", "imlogin")
                    .map(|off| {
                        format!(
                            "{:.2}x webhooks off",
                            l["per_second"].as_f64().unwrap_or(0.0)
                                / off["per_second"].as_f64().unwrap_or(1.0)
                        )
                    })
                    .unwrap_or_default()
            }
            (Some("logins_known_metrics_on"), Some("imlogin")) => {
                find(lines, "logins_known_metrics_off", "imlogin")
                    .map(|off| {
                        format!(
                            "{:.2}x metrics off",
                            l["per_second"].as_f64().unwrap_or(0.0)
                                / off["per_second"].as_f64().unwrap_or(1.0)
                        )
                    })
                    .unwrap_or_default()
            }
            (Some("logins_known_metrics_off"), _) => String::new(),
            (Some("logins_known_websdk"), _) => find(lines, "logins_known_native", "imlogin")
                .map(|n| {
                    format!(
                        "{:.0} µs CPU/login, {:.2}x native",
                        l["server_cpu_us_per_login"].as_f64().unwrap_or(0.0),
                        l["server_cpu_us_per_login"].as_f64().unwrap_or(0.0)
                            / n["server_cpu_us_per_login"].as_f64().unwrap_or(1.0)
                    )
                })
                .unwrap_or_default(),
            (Some("logins_at_4000_flooded"), _) => {
                let ratio_to = |scenario| {
                    find(lines, scenario, "imlogin")
                        .map(|q| p99(l) / p99(q).max(f64::MIN_POSITIVE))
                        .unwrap_or_default()
                };
                format!(
                    "p99 {:.2}x quiet, {:.2}x the flood elsewhere",
                    ratio_to("logins_at_4000_quiet"),
                    ratio_to("logins_at_4000_flood_elsewhere")
                )
            }
            (Some("logins_at_4000_flood_elsewhere"), _) => {
                find(lines, "logins_at_4000_quiet", "imlogin")
                    .map(|q| format!("p99 {:.2}x quiet", p99(l) / p99(q).max(f64::MIN_POSITIVE)))
                    .unwrap_or_default()
            }
            (Some("logins_known_native"), _) => format!(
                "{:.0} µs CPU/login",
                l["server_cpu_us_per_login"].as_f64().unwrap_or(0.0)
            ),
            (Some("logins_known_redis_paired"), _) => {
                let c = &l["cpu_us_per_login"];
                let b = &l["baseline_cpu_us_per_login"];
                let us = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
                format!(
                    "{:.2}x paired (median of {} pairs); CPU per login: node {} µs, Redis masters {} µs, \
                     replicas {} µs, generator {} µs (baseline: server {} µs, generator {} µs)",
                    l["ratio"].as_f64().unwrap_or(0.0),
                    l["pairs"].as_u64().unwrap_or(0),
                    us(c, "server"),
                    us(c, "redis_masters"),
                    us(c, "redis_replicas"),
                    us(c, "generator"),
                    us(b, "server"),
                    us(b, "generator"),
                )
            }
            (Some("hold_cluster"), _) => format!(
                "{:.0} B/session in Redis",
                l["redis_bytes_per_session"].as_f64().unwrap_or(0.0)
            ),
            (Some(s), Some("imlogin")) if s.starts_with("logins") && s != "logins_at_80pct" => {
                format!(
                    "{:.2}x handshakes/s",
                    l["per_second"].as_f64().unwrap_or(0.0) / baseline_rate.max(1.0)
                )
            }
            _ => String::new(),
        };
        let thr = if l["scenario"]
            .as_str()
            .is_some_and(|s| s.starts_with("hold"))
        {
            format!(
                "{:.0} B/sess",
                l["bytes_per_session"].as_f64().unwrap_or(0.0)
            )
        } else {
            format!("{:.0}", l["per_second"].as_f64().unwrap_or(0.0))
        };
        t.push_str(&format!(
            "{:<21} {:<9} {:>12} {:>10.2} {:>8.2} {:>8.2}   {}\n",
            l["scenario"].as_str().unwrap_or(""),
            l["server"].as_str().unwrap_or(""),
            thr,
            lat["p50_ms"].as_f64().unwrap_or(0.0),
            lat["p99_ms"].as_f64().unwrap_or(0.0),
            lat["max_ms"].as_f64().unwrap_or(0.0),
            ratio
        ));
    }
    t
}

/// `imlogin-bench soak`: mixed load for `minutes` against one imlogin (SQLite, a webhook receiver), holding
/// 2,000 idle sessions throughout; every minute a JSON line with the server's RSS, open files and that minute's
/// login latency. The first two minutes are warm-up; the summary line compares the last minute with the second.
pub async fn soak(minutes: u64) -> anyhow::Result<()> {
    let fast = FastReceiver::start().await?;
    let server = start_imlogin_with(
        false,
        None,
        &[("IMLOGIN__APPS__0__WEBHOOK__URL", fast.url())],
    )?;
    let t = target(&server, 16);
    let pid = server.child.id();
    let known = Users::Known(2000);
    logins_via(&t, Gateway::Native, &known, 2000, 50, None).await;
    let started = std::time::Instant::now();
    let (t, known, fast) = (&t, &known, &fast);
    let (_, lines) = hold_then(t, pid, 2000, 100, "soak-held", |held| async move {
        let mut lines: Vec<Value> = Vec::new();
        for minute in 1..=minutes {
            // One minute of: 200 known-user logins/s, 3 new users/s, kicks, resumes, admin queries; webhooks for
            // every change.
            let new_users = Users::New(format!("soak-new-{minute}"));
            let (logins, new, kicks, resumes, queries) = tokio::join!(
                logins_via(t, Gateway::Native, known, 12_000, 50, Some(200.0)),
                logins_via(t, Gateway::Native, &new_users, 180, 5, Some(3.0)),
                kick(t, 300, "soak-kick"),
                resume(t, 300, 20, "soak-resume"),
                query_online_status(t, &held, 100, 60),
            );
            let line = json!({
                "minute": minute,
                "elapsed_s": started.elapsed().as_secs(),
                "rss_bytes": crate::rss_bytes(pid),
                "open_files": std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0),
                "logins": logins.logins,
                "login_p50_ms": logins.latency.p50_ms,
                "login_p99_ms": logins.latency.p99_ms,
                "login_errors": logins.errors,
                "new_users": new.logins,
                "new_errors": new.errors,
                "kick_p99_ms": kicks.latency.p99_ms,
                "kick_errors": kicks.errors,
                "resumed": resumes.resumed,
                "query_p99_ms": queries.latency.p99_ms,
                "webhook_events_received": fast.received(),
            });
            println!("{line}");
            lines.push(line);
        }
        lines
    })
    .await;
    if let (Some(warm), Some(last)) = (lines.get(1), lines.last()) {
        let growth = |k: &str| {
            last[k].as_f64().unwrap_or(0.0) / warm[k].as_f64().unwrap_or(1.0).max(1.0) - 1.0
        };
        println!(
            "{}",
            json!({"summary": true, "minutes": minutes, "rss_growth_after_warmup": growth("rss_bytes"),
                "open_files_growth_after_warmup": growth("open_files")})
        );
    }
    Ok(())
}
