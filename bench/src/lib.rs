//! The load generator behind `imlogin-bench` (docs/benchmarks.md): login handshakes, idle sessions held open,
//! kick latency and mass resume, against imlogin or the bare baseline server, with latency percentiles, errors
//! by code, and the CPU time of the generator and the server.
//!
//! Clients here are deliberately cheap (one task per connection, 4 KiB read buffers, no JSON beyond what is
//! needed): the generator shares the machine's cores with the server.

pub mod baseline;
pub mod receivers;
pub mod suite;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use imlogin::runtime::clock::unix_now;
use imlogin::usersig::tls;

pub type Ws = WebSocketStream<TcpStream>;

/// Where to log in, and with what app.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub sdkappid: u32,
    pub key: String,
    /// Client source addresses, used in turn (each gives its own ~28k ephemeral ports).
    pub sources: Vec<IpAddr>,
}

/// Which WebSocket a client logs in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// `/v1/ws`, imlogin's own protocol.
    Native,
    /// `/tim/binfo`, in the frames of the cloud IM's Web SDK (binary frames holding JSON).
    WebSdk,
}

/// Opens a WebSocket to `/v1/ws` from `source`.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Ws> {
    connect_to(addr, source, "/v1/ws").await
}

/// Opens a WebSocket to `path` from `source`.
pub async fn connect_to(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
) -> anyhow::Result<Ws> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = source {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}{path}"),
        stream,
        Some(config),
    )
    .await?;
    Ok(ws)
}

/// A login frame with a prepared ticket.
pub fn login_frame(id: u64, sdkappid: u32, user: &str, sig: &str, platform: &str) -> String {
    serde_json::json!({"id": id, "op": "login", "sdkappid": sdkappid, "user_id": user, "user_sig": sig, "platform": platform})
        .to_string()
}

/// A `wslogin` as the Web SDK 2.27.6 sends it (every head field it sends), with a prepared ticket.
pub fn websdk_login_frame(seq: u64, sdkappid: u32, user: &str, sig: &str) -> Vec<u8> {
    serde_json::json!({
        "head": {"ver": "v4", "platform": 7, "websdkappid": 537048168, "websdkversion": "2.27.6",
            "status_instid": 0, "sdkappid": sdkappid, "contenttype": "json", "reqtime": unix_now(),
            "identifier": user, "usersig": sig, "sdkability": 192371, "tjgID": "",
            "servcmd": "im_open_status.wslogin", "seq": seq},
        "body": {"State": "Online", "is_web_uniapp": 0, "InstType": 0}
    })
    .to_string()
    .into_bytes()
}

/// Sends a Web SDK `wslogin` and waits for its answer: `Ok(ErrorCode)`.
pub async fn websdk_login(ws: &mut Ws, frame: Vec<u8>) -> anyhow::Result<u64> {
    ws.send(Message::Binary(frame.into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                let v: Value = serde_json::from_slice(&b)?;
                return Ok(v["body"]["ErrorCode"].as_u64().unwrap_or(u64::MAX));
            }
            Some(Ok(Message::Close(f))) => anyhow::bail!("closed: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("connection ended"),
        }
    }
}

/// Tickets for `users`, valid for a day (generated before any timing starts).
pub fn tickets(t: &Target, users: &[String]) -> Vec<String> {
    let now = unix_now() as u64;
    users
        .iter()
        .map(|u| tls::generate(t.sdkappid, &t.key, u, 86400, now))
        .collect()
}

/// The next text frame as JSON.
pub async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(f))) => anyhow::bail!("closed: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("connection ended"),
        }
    }
}

/// Sends a login and waits for its response: `Ok(code)`.
pub async fn login(ws: &mut Ws, frame: String) -> anyhow::Result<u64> {
    ws.send(Message::Text(frame.into())).await?;
    let v = next_json(ws).await?;
    Ok(v["code"].as_u64().unwrap_or(u64::MAX))
}

/// Closes as a client should: send Close, then let the server close the TCP connection first (so the
/// TIME_WAIT state lands on the server's side, not on the generator's ephemeral ports).
pub async fn finish(mut ws: Ws) {
    if ws.send(Message::Close(None)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// The source address for the `i`-th connection, if any are configured.
fn source(t: &Target, i: usize) -> Option<IpAddr> {
    (!t.sources.is_empty()).then(|| t.sources[i % t.sources.len()])
}

/// The first frame of a handshake, in the protocol of the gateway it is sent to.
enum Hello {
    Native(String),
    WebSdk(Vec<u8>),
}

/// One handshake: connect (from the `i`-th source) to the gateway `hello` is for, send it, read the answer, close;
/// records the latency from `start` or the error.
async fn handshake(t: &Target, i: usize, hello: Hello, start: Instant, s: &mut Samples) {
    let path = match hello {
        Hello::Native(_) => "/v1/ws".to_owned(),
        Hello::WebSdk(_) => format!("/tim/binfo?sdkappid={}&platform=7", t.sdkappid),
    };
    match connect_to(t.addr, source(t, i), &path).await {
        Ok(mut ws) => {
            let answer = match hello {
                Hello::Native(frame) => login(&mut ws, frame).await,
                Hello::WebSdk(frame) => websdk_login(&mut ws, frame).await,
            };
            match answer {
                Ok(0) => s.micros.push(start.elapsed().as_micros() as u64),
                Ok(code) => s.error(code.to_string()),
                Err(e) => s.error(format!("io: {e}")),
            }
            finish(ws).await;
        }
        Err(e) => s.error(format!("connect: {e}")),
    }
}

/// Waits for the workers and merges their samples.
async fn collect(tasks: Vec<tokio::task::JoinHandle<Samples>>) -> Samples {
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(s) = task.await {
            all.merge(s);
        }
    }
    all
}

/// Latencies in microseconds, and errors by code.
#[derive(Debug, Default)]
pub struct Samples {
    pub micros: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Samples {
    fn error(&mut self, what: impl Into<String>) {
        *self.errors.entry(what.into()).or_default() += 1;
    }

    fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Percentiles of a run, in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(micros: &mut [u64]) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Latency {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the command name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of a process in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Result of one `logins` run.
#[derive(Debug, Clone, Serialize)]
pub struct LoginsResult {
    pub logins: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Latency,
    pub errors: BTreeMap<String, u64>,
}

/// How the users of a `logins` run are chosen.
#[derive(Debug, Clone)]
pub enum Users {
    /// Cycle over this many known users (after a warm-up that logs each in once).
    Known(usize),
    /// A new user for every login (auto-register).
    New(String),
}

/// N login handshakes (connect, upgrade, login, response, close) at concurrency C; with `rate`, open-loop at that
/// many starts per second (latency counted from the scheduled start, so queueing shows).
pub async fn logins(
    t: &Target,
    users: &Users,
    n: usize,
    c: usize,
    rate: Option<f64>,
) -> LoginsResult {
    logins_via(t, Gateway::Native, users, n, c, rate).await
}

/// [`logins`] through `gateway`.
pub async fn logins_via(
    t: &Target,
    gateway: Gateway,
    users: &Users,
    n: usize,
    c: usize,
    rate: Option<f64>,
) -> LoginsResult {
    let names: Vec<String> = match users {
        Users::Known(u) => (0..*u).map(|i| format!("known-{i}")).collect(),
        Users::New(prefix) => (0..n).map(|i| format!("{prefix}-{i}")).collect(),
    };
    let sigs = Arc::new(tickets(t, &names));
    let names = Arc::new(names);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut tasks = Vec::new();
    // C workers take logins in turn; open loop, each waits for its login's scheduled start first (and its
    // latency counts from there, so a generator or server that falls behind shows it).
    for _ in 0..c {
        let (t, sigs, names, next) = (t.clone(), sigs.clone(), names.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let start = match interval {
                    Some(iv) => {
                        let at = started + iv.mul_f64(i as f64);
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                let u = i % names.len();
                let hello = match gateway {
                    Gateway::Native => {
                        Hello::Native(login_frame(1, t.sdkappid, &names[u], &sigs[u], "web"))
                    }
                    Gateway::WebSdk => {
                        Hello::WebSdk(websdk_login_frame(1, t.sdkappid, &names[u], &sigs[u]))
                    }
                };
                handshake(&t, i, hello, start, &mut s).await;
            }
            s
        }));
    }
    let mut all = collect(tasks).await;
    let seconds = started.elapsed().as_secs_f64();
    let ok = all.micros.len();
    LoginsResult {
        logins: ok,
        concurrency: c,
        seconds,
        per_second: ok as f64 / seconds,
        latency: Latency::of(&mut all.micros),
        errors: all.errors,
    }
}

/// Result of a `hold` run.
#[derive(Debug, Clone, Serialize)]
pub struct HoldResult {
    pub sessions: usize,
    pub rss_before: u64,
    pub rss_after: u64,
    pub bytes_per_session: f64,
    pub errors: BTreeMap<String, u64>,
}

/// Opens `k` logged-in sessions (one user each), keeps them with WebSocket pings, reads the server's RSS before and
/// after, then closes them.
pub async fn hold(t: &Target, server_pid: u32, k: usize, c: usize, prefix: &str) -> HoldResult {
    hold_then(t, server_pid, k, c, prefix, |_| async {}).await.0
}

/// [`hold`], keeping the sessions `linger` longer after the RSS reading (while other measures are taken).
pub async fn hold_lingering(
    t: &Target,
    server_pid: u32,
    k: usize,
    c: usize,
    prefix: &str,
    linger: Duration,
) -> HoldResult {
    hold_then(t, server_pid, k, c, prefix, |_| tokio::time::sleep(linger))
        .await
        .0
}

/// [`hold`], running `during` (given the held users' names) while the sessions are held, after the RSS reading.
pub async fn hold_then<F, Fut, R>(
    t: &Target,
    server_pid: u32,
    k: usize,
    c: usize,
    prefix: &str,
    during: F,
) -> (HoldResult, R)
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    let names: Vec<String> = (0..k).map(|i| format!("{prefix}-{i}")).collect();
    let sigs = tickets(t, &names);
    let held_names = names.clone();
    let rss_before = rss_bytes(server_pid);
    let frames: Vec<String> = names
        .iter()
        .zip(&sigs)
        .map(|(u, s)| login_frame(1, t.sdkappid, u, s, "web"))
        .collect();
    let frames = Arc::new(Mutex::new(
        frames.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(k.max(1));
    let mut tasks = Vec::new();
    for _ in 0..c.min(k.max(1)) {
        let (t, frames, stop, ready_tx) =
            (t.clone(), frames.clone(), stop.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some((i, frame)) = frames.lock().await.pop() else {
                    return;
                };
                let source = source(&t, i);
                let res = async {
                    let mut ws = connect(t.addr, source)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    match login(&mut ws, frame).await {
                        Ok(0) => Ok(ws),
                        Ok(code) => Err(code.to_string()),
                        Err(e) => Err(format!("io: {e}")),
                    }
                }
                .await;
                match res {
                    Ok(ws) => {
                        let _ = ready_tx.send(Ok(())).await;
                        tokio::spawn(keep(ws, stop.clone()));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e)).await;
                    }
                }
            }
        }));
    }
    drop(ready_tx);
    let mut errors = BTreeMap::new();
    let mut ok = 0usize;
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(()) => ok += 1,
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    // Let allocations settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_bytes(server_pid);
    let extra = during(held_names).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = HoldResult {
        sessions: ok,
        rss_before,
        rss_after,
        bytes_per_session: rss_after.saturating_sub(rss_before) as f64 / ok.max(1) as f64,
        errors,
    };
    (result, extra)
}

/// Keeps a session: a WebSocket ping every 30 s, answers the server, closes on `stop`.
async fn keep(mut ws: Ws, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => { let _ = ws.send(Message::Close(None)).await; return; }
            _ = tick.tick() => { if ws.send(Message::Ping(Vec::new().into())).await.is_err() { return; } }
            m = ws.next() => if !matches!(m, Some(Ok(_))) { return },
        }
    }
}

/// Result of a `kick` run.
#[derive(Debug, Clone, Serialize)]
pub struct KickResult {
    pub rounds: usize,
    pub latency: Latency,
    pub errors: BTreeMap<String, u64>,
}

/// `rounds` times: A logs in, B logs in as the same user and platform; the time from B's login being sent to A
/// reading its `kicked_offline`.
pub async fn kick(t: &Target, rounds: usize, prefix: &str) -> KickResult {
    kick_between(t, t, rounds, prefix).await
}

/// [`kick`] with the displaced instance on `a` and the login that displaces it on `b` (two nodes of a
/// cluster: the kick crosses the bus).
pub async fn kick_between(a: &Target, b: &Target, rounds: usize, prefix: &str) -> KickResult {
    let t = a;
    let names: Vec<String> = (0..rounds).map(|i| format!("{prefix}-{i}")).collect();
    let sigs = tickets(t, &names);
    let mut s = Samples::default();
    for (u, sig) in names.iter().zip(&sigs) {
        let res = async {
            let mut a = connect(a.addr, None).await?;
            let mut b = connect(b.addr, None).await?;
            anyhow::ensure!(
                login(&mut a, login_frame(1, t.sdkappid, u, sig, "android")).await? == 0,
                "login A"
            );
            let frame = login_frame(1, t.sdkappid, u, sig, "android");
            let start = Instant::now();
            b.send(Message::Text(frame.into())).await?;
            let ev = next_json(&mut a).await?;
            let took = start.elapsed();
            anyhow::ensure!(
                ev["event"] == "kicked_offline",
                "expected kicked_offline, got {ev}"
            );
            anyhow::ensure!(next_json(&mut b).await?["code"] == 0, "login B");
            finish(b).await;
            Ok(took)
        }
        .await;
        match res {
            Ok(d) => s.micros.push(d.as_micros() as u64),
            Err(e) => s.error(e.to_string()),
        }
    }
    KickResult {
        rounds: s.micros.len(),
        latency: Latency::of(&mut s.micros),
        errors: s.errors,
    }
}

/// Result of a `resume` run.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeResult {
    pub sessions: usize,
    pub resumed: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Latency,
    pub errors: BTreeMap<String, u64>,
}

/// Logs in `k` sessions, drops every connection at once (no logout), then reconnects them all at concurrency `c`
/// with `resume`; the time until all are back.
pub async fn resume(t: &Target, k: usize, c: usize, prefix: &str) -> ResumeResult {
    let names: Vec<String> = (0..k).map(|i| format!("{prefix}-{i}")).collect();
    let sigs = tickets(t, &names);
    let mut tokens = Vec::with_capacity(k);
    let mut conns = Vec::with_capacity(k);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for (i, (u, sig)) in names.iter().zip(&sigs).enumerate() {
        let source = source(t, i);
        let Ok(mut ws) = connect(t.addr, source).await else {
            continue;
        };
        if ws
            .send(Message::Text(
                login_frame(1, t.sdkappid, u, sig, "android").into(),
            ))
            .await
            .is_err()
        {
            continue;
        }
        match next_json(&mut ws).await {
            Ok(v) if v["code"] == 0 => {
                tokens.push(
                    v["data"]["session_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                conns.push(ws);
            }
            _ => *errors.entry("login".into()).or_default() += 1,
        }
    }
    // The network drops for everyone at once.
    drop(conns);
    let started = Instant::now();
    let tokens = Arc::new(Mutex::new(
        tokens.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (t, tokens) = (t.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            loop {
                let Some((i, token)) = tokens.lock().await.pop() else {
                    return s;
                };
                let frame = serde_json::json!({"id": 1, "op": "resume", "session_token": token})
                    .to_string();
                handshake(&t, i, Hello::Native(frame), Instant::now(), &mut s).await;
            }
        }));
    }
    let mut all = collect(tasks).await;
    for (k, v) in all.errors.clone() {
        *errors.entry(k).or_default() += v;
    }
    let seconds = started.elapsed().as_secs_f64();
    let resumed = all.micros.len();
    ResumeResult {
        sessions: k,
        resumed,
        seconds,
        per_second: resumed as f64 / seconds,
        latency: Latency::of(&mut all.micros),
        errors,
    }
}

/// Result of a webhook delivery run.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryResult {
    pub events: usize,
    pub seconds: f64,
    /// Events delivered per second, from the first login to the last delivery.
    pub per_second: f64,
    pub logins_per_second: f64,
    pub errors: BTreeMap<String, u64>,
}

/// `n` known-user logins (one webhook event each) as fast as they go, then waits until the receiver has them
/// all: the outbox's end-to-end delivery rate.
pub async fn webhook_delivery(
    t: &Target,
    receiver: &receivers::FastReceiver,
    users: usize,
    n: usize,
    c: usize,
) -> DeliveryResult {
    let before = receiver.received();
    let started = Instant::now();
    let logged = logins(t, &Users::Known(users), n, c, None).await;
    let want = before + logged.logins;
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.received() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = receiver.received() - before;
    let seconds = receiver
        .last_at()
        .saturating_duration_since(started)
        .as_secs_f64();
    let mut errors = logged.errors;
    if delivered < logged.logins {
        errors.insert("undelivered".into(), (logged.logins - delivered) as u64);
    }
    DeliveryResult {
        events: delivered,
        seconds,
        per_second: delivered as f64 / seconds.max(1e-9),
        logins_per_second: logged.per_second,
        errors,
    }
}

/// Result of an admin-query run.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub calls: usize,
    pub users_per_call: usize,
    pub per_second: f64,
    pub latency: Latency,
    pub errors: BTreeMap<String, u64>,
}

/// `calls` sequential `query_online_status` calls of `per_call` users picked from `users`, with details.
pub async fn query_online_status(
    t: &Target,
    users: &[String],
    per_call: usize,
    calls: usize,
) -> QueryResult {
    let http = reqwest::Client::new();
    let sig = tls::generate(
        t.sdkappid,
        &t.key,
        "administrator",
        86400,
        unix_now() as u64,
    );
    let mut s = Samples::default();
    let started = Instant::now();
    for i in 0..calls {
        let pick: Vec<&String> = (0..per_call)
            .map(|j| &users[(i * 7919 + j * 104_729) % users.len()])
            .collect();
        let body = serde_json::json!({"To_Account": pick, "IsNeedDetail": 1});
        let url = format!(
            "http://{}/v4/openim/query_online_status?sdkappid={}&identifier=administrator&usersig={sig}&random={i}&contenttype=json",
            t.addr, t.sdkappid
        );
        let start = Instant::now();
        match http.post(url).json(&body).send().await {
            Ok(r) => match r.json::<Value>().await {
                Ok(v) if v["ErrorCode"] == 0 => s.micros.push(start.elapsed().as_micros() as u64),
                Ok(v) => s.error(v["ErrorCode"].to_string()),
                Err(e) => s.error(format!("body: {e}")),
            },
            Err(e) => s.error(format!("request: {e}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    QueryResult {
        calls: s.micros.len(),
        users_per_call: per_call,
        per_second: s.micros.len() as f64 / seconds,
        latency: Latency::of(&mut s.micros),
        errors: s.errors,
    }
}

/// What a flood from one address achieved.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FloodResult {
    /// WebSockets the server accepted.
    pub accepted: u64,
    /// Upgrades refused (429: `limits.connections_per_ip`).
    pub refused: u64,
    /// Frames sent.
    pub frames: u64,
    /// Sockets the server closed with 1008 (frame rate, login timeout).
    pub closed_1008: u64,
}

/// Floods `t` from the one address `source` until `stop`: `tasks` loops, each opening a WebSocket, sending frames
/// as fast as the server takes them without ever logging in, and opening another once the server closes it.
pub async fn flood(
    t: &Target,
    source: IpAddr,
    tasks: usize,
    stop: tokio_util::sync::CancellationToken,
) -> FloodResult {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (addr, stop) = (t.addr, stop.clone());
        handles.push(tokio::spawn(async move {
            let mut r = FloodResult::default();
            while !stop.is_cancelled() {
                let mut ws = match connect_to(addr, Some(source), "/v1/ws").await {
                    Ok(ws) => ws,
                    Err(_) => {
                        r.refused += 1;
                        // Refused or out of ports: back off a little, as any flood must.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                r.accepted += 1;
                let ping = Message::Text(r#"{"id":1,"op":"ping"}"#.into());
                let closed = tokio::select! {
                    _ = stop.cancelled() => false,
                    closed = async {
                        loop {
                            if ws.send(ping.clone()).await.is_err() {
                                break false;
                            }
                            r.frames += 1;
                            // Take what the server sends without waiting for it.
                            while let Some(Some(m)) = futures_util::FutureExt::now_or_never(ws.next()) {
                                match m {
                                    Ok(Message::Close(Some(f))) => return u16::from(f.code) == 1008,
                                    Ok(_) => {}
                                    Err(_) => return false,
                                }
                            }
                        }
                    } => closed,
                };
                if closed {
                    r.closed_1008 += 1;
                }
            }
            r
        }));
    }
    let mut all = FloodResult::default();
    for h in handles {
        if let Ok(r) = h.await {
            all.accepted += r.accepted;
            all.refused += r.refused;
            all.frames += r.frames;
            all.closed_1008 += r.closed_1008;
        }
    }
    all
}
