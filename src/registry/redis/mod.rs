//! The cluster registry: every node's instances in one Redis, so the policy holds across nodes exactly as on one.
//!
//! Each user is one hash (`NS:u:APP:USER`: the instances, the kick records and the change number `s`), and
//! every change to a user is one Lua script on that key (`lua/`), so changes to one user are atomic and
//! ordered across nodes. Admission applies PROTOCOL §5 inside its script, in one round trip; the rules are
//! those of [`policy::admit`] (the memory backend's), passed as data (the class of each platform, the limit),
//! and a test runs random sequences through both backends and requires the same kicks.
//!
//! Values are kept short (numbers in hexadecimal, nodes numbered from 1) so a user's hash stays in Redis's compact
//! encoding. Users with disconnected instances are indexed by when the first is due (`NS:due`, kept lazily: a
//! login or a resume leaves the entry, and the reaper finds nothing due then), so reaping costs what is due, not
//! a scan, and the usual login writes no index. Nodes heartbeat into `NS:nodes`; the instances of a node silent
//! for `node_timeout` are marked disconnected by whichever node notices first (resumable elsewhere, removed after
//! the grace) — found by a scan of the users, which only a node's death costs. User keys expire after the last
//! UserSig they hold, so nothing is left behind by a node that dies mid-operation. Redis Cluster is not supported
//! (scripts touch keys they compute): use one primary (with replicas or Sentinel for failover).

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{IntoConnectionInfo, Script, Value};

use super::memory::MAX_KICKS_REMEMBERED;
use super::policy::{self};
use super::{Admitted, Attach, Reaped, RegResult, Registry, RegistryError, RemoveIf};
use crate::model::Platform;
use crate::model::{ConnRef, Instance, InstanceKey, Kick, Seq};
use crate::model::{KickReason, Policy};
use crate::runtime::clock::Clock;

/// Users one reap step and one scan step look at.
const BATCH: usize = 500;
/// A user key outlives the last UserSig it holds by at least this much (beyond the grace and the kick records;
/// the scripts extend it a minute further, so that the next minute's changes need not).
const KEY_SLACK_MS: i64 = 60_000;
/// How long one node has to mark a silent node's instances disconnected before another may take over.
const SWEEP_LOCK_MS: i64 = 60_000;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/prelude.lua"),
            include_str!($file)
        ))
    };
}

struct Scripts {
    admit: Script,
    attach: Script,
    detach_many: Script,
    remove: Script,
    remove_user: Script,
    set_sig: Script,
    reap: Script,
    node_scan: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            admit: script!("lua/admit.lua"),
            attach: script!("lua/attach.lua"),
            detach_many: script!("lua/detach_many.lua"),
            remove: script!("lua/remove.lua"),
            remove_user: script!("lua/remove_user.lua"),
            set_sig: script!("lua/set_sig.lua"),
            reap: script!("lua/reap.lua"),
            node_scan: script!("lua/node_scan.lua"),
        }
    }
}

/// Opens a connection to Redis that reconnects by itself; a request waits at most `timeout` (then the login
/// that made it answers 70169), and reconnecting never holds requests for long.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, RegistryError> {
    let client = redis::Client::open(connection_info(url)?).map_err(err)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(err)
}

/// Where Redis is (`url`), to be reached with Nagle's algorithm off (as Redis itself does on its side): a
/// request is small and waits for its answer, so holding it back until the previous one is acknowledged only
/// adds latency and leaves the CPU idle meanwhile.
pub fn connection_info(url: &str) -> Result<redis::ConnectionInfo, RegistryError> {
    let info = url.into_connection_info().map_err(err)?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    Ok(info.set_tcp_settings(tcp))
}

fn err(e: redis::RedisError) -> RegistryError {
    RegistryError(e.to_string())
}

/// A number in hexadecimal, as the scripts store them (short, and C-fast for Lua's `string.format`).
fn hex(n: u64) -> String {
    format!("{n:x}")
}

fn from_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// A time (never negative here) in hexadecimal.
fn hexi(n: i64) -> String {
    hex(n.max(0) as u64)
}

/// A number as a script argument in hexadecimal, written straight into the command (no string of its own).
struct Hex(u64);

impl redis::ToRedisArgs for Hex {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(format_args!("{:x}", self.0));
    }
}

/// A time (never negative here) in hexadecimal, as an argument.
fn hex_arg(n: i64) -> Hex {
    Hex(n.max(0) as u64)
}

/// The floor of a change number made at `now_ms` (see [`super::next_seq`]), as an argument: the scripts take it
/// formatted, so most changes format no number in Lua.
fn floor_arg(now_ms: i64) -> Hex {
    Hex(crate::model::next_seq(0, now_ms))
}

/// `APP:USER`, a user's member of the index of when users are due (`NS:due`), as an argument.
struct Member<'a>(&'a InstanceKey);

impl redis::ToRedisArgs for Member<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(format_args!("{}:{}", self.0.sdkappid, self.0.user_id));
    }
}

/// A user's key, `NS:u:APP:USER`, as an argument.
struct UserKey<'a>(&'a str, u32, &'a str);

impl redis::ToRedisArgs for UserKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(format_args!("{}:u:{}:{}", self.0, self.1, self.2));
    }
}

/// A node's number for this cluster (1, 2, …: short in every stored instance).
pub async fn node_number(conn: &ConnectionManager, ns: &str) -> Result<u64, RegistryError> {
    redis::cmd("INCR")
        .arg(format!("{ns}:node-ids"))
        .query_async(&mut conn.clone())
        .await
        .map_err(err)
}

/// A user's instances, as read.
struct UserState {
    instances: Vec<Instance>,
}

pub struct RedisRegistry {
    conn: ConnectionManager,
    ns: String,
    node: u64,
    grace_ms: i64,
    node_timeout_ms: i64,
    clock: Clock,
    scripts: Scripts,
}

impl RedisRegistry {
    /// `ns` prefixes every key (deployments may share a Redis); `node` is this node.
    pub fn new(
        conn: ConnectionManager,
        ns: &str,
        node: u64,
        grace: Duration,
        node_timeout: Duration,
        clock: Clock,
    ) -> RedisRegistry {
        RedisRegistry {
            conn,
            ns: ns.to_owned(),
            node,
            grace_ms: grace.as_millis() as i64,
            node_timeout_ms: node_timeout.as_millis() as i64,
            clock,
            scripts: Scripts::new(),
        }
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.ns)
    }

    async fn read_user(&self, sdkappid: u32, user_id: &str) -> RegResult<UserState> {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.user_key(sdkappid, user_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(user_state(sdkappid, user_id, fields))
    }

    /// The key must live until its last UserSig has expired, its kick records are forgotten and the grace of a
    /// disconnection at that moment has ended.
    fn keep_until(&self, sig_expires_at: i64, now: i64, remember_ms: i64) -> i64 {
        (sig_expires_at.saturating_mul(1000)).max(now + remember_ms) + self.grace_ms + KEY_SLACK_MS
    }

    async fn run(&self, inv: &mut redis::ScriptInvocation<'_>) -> RegResult<Value> {
        inv.invoke_async(&mut self.conn.clone()).await.map_err(err)
    }

    /// `EVALSHA` of `script` (no keys) with the arguments `args` writes, loading the script if Redis does not
    /// have it. The hot paths build their command this way: one buffer for every argument.
    async fn eval(&self, script: &Script, args: impl FnOnce(&mut redis::Cmd)) -> RegResult<Value> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(0);
        args(&mut cmd);
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(err)?;
                cmd.query_async(&mut conn).await.map_err(err)
            }
            r => r.map_err(err),
        }
    }

    fn user_key<'a>(&'a self, sdkappid: u32, user_id: &'a str) -> UserKey<'a> {
        UserKey(&self.ns, sdkappid, user_id)
    }

    /// The nodes that have not heartbeat within the timeout (never this one).
    async fn silent_nodes(&self, now: i64) -> RegResult<Vec<String>> {
        let nodes: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.nodes_key())
            .arg("-inf")
            .arg(now - self.node_timeout_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        let me = hex(self.node);
        Ok(nodes.into_iter().filter(|n| *n != me).collect())
    }

    /// Marks a silent node's instances disconnected, unless another node is already at it; then forgets the
    /// node.
    async fn sweep(&self, node: &str, now: i64, grace_ms: i64) -> RegResult<Vec<Reaped>> {
        let lock = format!("{}:sweep:{node}", self.ns);
        let taken: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(hex(self.node))
            .arg("NX")
            .arg("PX")
            .arg(SWEEP_LOCK_MS)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        if taken.is_none() {
            return Ok(Vec::new());
        }
        tracing::warn!(node = %node, "a node stopped heartbeating: its instances become disconnected, resumable elsewhere");
        let rows = self.scan_node(node, "orphan", now, grace_ms).await?;
        redis::pipe()
            .cmd("ZREM")
            .arg(self.nodes_key())
            .arg(node)
            .ignore()
            .cmd("DEL")
            .arg(&lock)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(i, seq)| Reaped::Disconnected(i, seq))
            .collect())
    }

    /// Every user's instances held by `node`: listed (`mode` "list") or marked disconnected ("orphan"). A scan
    /// of every user, in steps: only a node's death or a lost connection to Redis costs it.
    async fn scan_node(
        &self,
        node: &str,
        mode: &str,
        now: i64,
        grace_ms: i64,
    ) -> RegResult<Vec<(Instance, Seq)>> {
        let mut conn = self.conn.clone();
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, mut keys) =
                scan_step(&mut conn, cursor, &format!("{}:u:*", self.ns)).await?;
            // Only user keys (`NS:u:APP:USER`): anything else under the prefix is not the registry's.
            let prefix = format!("{}:u:", self.ns);
            keys.retain(|k| {
                k.strip_prefix(&prefix)
                    .and_then(|m| m.split_once(':'))
                    .is_some_and(|(app, _)| app.parse::<u32>().is_ok())
            });
            if !keys.is_empty() {
                let mut inv = self.scripts.node_scan.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                inv.arg(&self.ns).arg(node).arg(now).arg(grace_ms).arg(mode);
                let reply = self.run(&mut inv).await?;
                for row in items(&reply) {
                    let r = items(row);
                    let inst = stored(r).ok_or_else(malformed)?;
                    out.push((inst, r.get(4).and_then(int).unwrap_or(0) as Seq));
                }
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

/// One step of `SCAN` over the keys matching `pattern`: the next cursor (0 at the end) and a batch of keys.
async fn scan_step(
    conn: &mut ConnectionManager,
    cursor: u64,
    pattern: &str,
) -> RegResult<(u64, Vec<String>)> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(BATCH)
        .query_async(conn)
        .await
        .map_err(err)
}

/// The stored form of an instance, split where its login order goes (the admit script numbers it).
fn encode_parts(i: &Instance) -> (String, String) {
    let (node, conn) = match i.conn {
        Some(c) => (hex(c.node), hex(c.conn)),
        None => (String::new(), String::new()),
    };
    let disc = match (i.conn, i.disconnected_at_ms) {
        (None, Some(t)) => hexi(t),
        _ => String::new(),
    };
    (
        format!("{}|{}|", i.platform.index(), hexi(i.login_at_ms)),
        format!(
            "|{}|{node}|{conn}|{disc}|{}|{}",
            hexi(i.sig_expires_at),
            i.ip,
            i.device_id.as_deref().unwrap_or("")
        ),
    )
}

/// An instance from its stored form.
fn decode(sdkappid: u32, user_id: &str, instance_id: &str, v: &str) -> Option<Instance> {
    let mut f = v.splitn(9, '|');
    let mut next = || f.next();
    let platform = *Platform::ALL.get(next()?.parse::<usize>().ok()?)?;
    let login_at_ms = from_hex(next()?)? as i64;
    let seq = from_hex(next()?)?;
    let sig_expires_at = from_hex(next()?)? as i64;
    let (node, conn) = (next()?, next()?);
    let conn = match node {
        "" => None,
        n => Some(ConnRef {
            node: from_hex(n)?,
            conn: from_hex(conn)?,
        }),
    };
    let disconnected_at_ms = match next()? {
        "" => None,
        t => Some(from_hex(t)? as i64),
    };
    let ip: IpAddr = next()?.parse().ok()?;
    let device_id = match next()? {
        "" => None,
        d => Some(d.to_owned()),
    };
    Some(Instance {
        sdkappid,
        user_id: user_id.to_owned(),
        platform,
        instance_id: instance_id.to_owned(),
        device_id,
        login_at_ms,
        seq,
        sig_expires_at,
        conn,
        disconnected_at_ms,
        ip,
    })
}

fn user_state(sdkappid: u32, user_id: &str, fields: Vec<(String, String)>) -> UserState {
    let mut instances = Vec::new();
    for (field, value) in fields {
        if let Some(id) = field.strip_prefix("i:") {
            match decode(sdkappid, user_id, id, &value) {
                Some(i) => instances.push(i),
                None => tracing::warn!(
                    sdkappid,
                    "registry: an instance that does not parse is ignored"
                ),
            }
        }
    }
    instances.sort_by_key(|i| i.seq);
    UserState { instances }
}

/// Why instance `id` was kicked, and until when that is remembered, from a user's kick records (`k`:
/// `ID,reason,until[,by];` each, the newest last). `by`, the kicker's platform, is only in records of policy
/// kicks, and not in those an earlier version wrote: a record without it (or with one this version does not
/// know) reads as a kick by no known platform; an earlier version reading a record with it ignores the field.
fn find_kick(records: &str, id: &str) -> Option<(Kick, i64)> {
    records.split(';').rev().find_map(|r| {
        let mut f = r.split(',');
        if f.next()? != id {
            return None;
        }
        let reason = KickReason::from_index(f.next()?.parse().ok()?)?;
        let until = from_hex(f.next()?)? as i64;
        let by = f
            .next()
            .and_then(|p| p.parse::<usize>().ok())
            .and_then(|p| Platform::ALL.get(p).copied());
        Some((Kick { reason, by }, until))
    })
}

/// `reason,until;` as the scripts store a kick by the server (after the instance's id; no kicker's platform).
fn kick_record(reason: KickReason, until_ms: i64) -> String {
    format!("{},{};", reason.index(), hexi(until_ms))
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        _ => &[],
    }
}

fn malformed() -> RegistryError {
    RegistryError("unexpected reply from a registry script".into())
}

/// An instance from a script's row `{app, user, id, value, …}`.
fn stored(r: &[Value]) -> Option<Instance> {
    let app = u32::try_from(int(r.first()?)?).ok()?;
    decode(app, &text(r.get(1)?)?, &text(r.get(2)?)?, &text(r.get(3)?)?)
}

/// `{0}` or `{1, value, s}` from the remove and detach scripts.
fn changed(key: &InstanceKey, v: &Value) -> RegResult<Option<(Instance, Seq)>> {
    let r = items(v);
    if r.first().and_then(int) != Some(1) {
        return Ok(None);
    }
    let value = r.get(1).and_then(text).ok_or_else(malformed)?;
    let seq = r.get(2).and_then(seq_of).ok_or_else(malformed)?;
    let inst =
        decode(key.sdkappid, &key.user_id, &key.instance_id, &value).ok_or_else(malformed)?;
    Ok(Some((inst, seq)))
}

/// A change number as a script returns it: a Lua number, or hexadecimal text (the scripts that pass it on as
/// they got it, formatted).
fn seq_of(v: &Value) -> Option<Seq> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        v => hex_int(v),
    }
}

/// A number a script returns in hexadecimal.
fn hex_int(v: &Value) -> Option<u64> {
    match v {
        Value::BulkString(b) => from_hex(std::str::from_utf8(b).ok()?),
        _ => None,
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn admit(&self, new: Instance, pol: &Policy, remember_ms: i64) -> RegResult<Admitted> {
        let (sdkappid, user_id) = (new.sdkappid, new.user_id.as_str());
        let (head, tail) = encode_parts(&new);
        let now = self.clock.now_ms();
        let due = match new.conn {
            Some(_) => String::new(),
            None => {
                let t = new.disconnected_at_ms.unwrap_or(now);
                (t + self.grace_ms)
                    .min((new.sig_expires_at + 1) * 1000)
                    .to_string()
            }
        };
        let classes = Platform::ALL.map(|p| b'0' + policy::class_of(pol.mode, p));
        let reply = self
            .eval(&self.scripts.admit, |c| {
                c.arg(&self.ns)
                    .arg(floor_arg(now))
                    .arg(MAX_KICKS_REMEMBERED)
                    .arg(self.user_key(sdkappid, user_id))
                    .arg(sdkappid)
                    .arg(user_id)
                    .arg(&new.instance_id)
                    .arg(new.platform.index())
                    .arg(new.device_id.as_deref().unwrap_or(""))
                    .arg(&head)
                    .arg(&tail)
                    .arg(due)
                    .arg(pol.limit(new.platform))
                    .arg(&classes[..])
                    .arg(self.keep_until(new.sig_expires_at, now, remember_ms))
                    .arg(hex_arg(now + remember_ms));
            })
            .await?;
        let r = items(&reply);
        let seq = r.first().and_then(hex_int).ok_or_else(malformed)?;
        let mut kicked = Vec::new();
        for k in r.get(1).map(items).unwrap_or_default().chunks(3) {
            let parsed = (|| {
                let id = text(k.first()?)?;
                let reason = KickReason::from_index(int(k.get(1)?)? as usize)?;
                Some((decode(sdkappid, user_id, &id, &text(k.get(2)?)?)?, reason))
            })();
            kicked.push(parsed.ok_or_else(malformed)?);
        }
        Ok(Admitted { kicked, seq })
    }

    async fn get(&self, key: &InstanceKey) -> RegResult<Option<Instance>> {
        let v: Option<String> = redis::cmd("HGET")
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(format!("i:{}", key.instance_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(v.and_then(|v| decode(key.sdkappid, &key.user_id, &key.instance_id, &v)))
    }

    async fn attach(&self, key: &InstanceKey, conn: ConnRef, now_secs: i64) -> RegResult<Attach> {
        let mut inv = self.scripts.attach.prepare_invoke();
        inv.arg(&self.ns)
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg(hex(conn.node))
            .arg(hex(conn.conn))
            .arg(now_secs)
            .arg(self.clock.now_ms());
        let reply = self.run(&mut inv).await?;
        let r = items(&reply);
        let value = || {
            let v = r.get(1).and_then(text)?;
            decode(key.sdkappid, &key.user_id, &key.instance_id, &v)
        };
        Ok(match r.first().and_then(int) {
            Some(1) => Attach::Expired(value().ok_or_else(malformed)?),
            Some(2) => {
                let instance = value().ok_or_else(malformed)?;
                let node = r.get(2).and_then(text).unwrap_or_default();
                let previous = match node.as_str() {
                    "" => None,
                    n => Some(ConnRef {
                        node: from_hex(n).ok_or_else(malformed)?,
                        conn: r
                            .get(3)
                            .and_then(text)
                            .and_then(|c| from_hex(&c))
                            .ok_or_else(malformed)?,
                    }),
                }
                .filter(|p| *p != conn);
                let seq = r.get(4).and_then(int).ok_or_else(malformed)? as Seq;
                Attach::Attached {
                    instance,
                    previous,
                    seq,
                }
            }
            _ => Attach::Gone,
        })
    }

    async fn detach(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        now_ms: i64,
    ) -> RegResult<Option<(Instance, Seq)>> {
        let mut one = self.detach_many(&[(key.clone(), conn)], now_ms).await?;
        one.pop().ok_or_else(malformed)
    }

    async fn detach_many(
        &self,
        ended: &[(InstanceKey, ConnRef)],
        now_ms: i64,
    ) -> RegResult<Vec<Option<(Instance, Seq)>>> {
        let reply = self
            .eval(&self.scripts.detach_many, |c| {
                c.arg(&self.ns)
                    .arg(hex_arg(now_ms))
                    .arg(floor_arg(now_ms))
                    .arg(now_ms + self.grace_ms);
                for (key, conn) in ended {
                    c.arg(self.user_key(key.sdkappid, &key.user_id))
                        .arg(&key.instance_id)
                        .arg(Hex(conn.node))
                        .arg(Hex(conn.conn))
                        .arg(Member(key));
                }
            })
            .await?;
        let rows = items(&reply);
        if rows.len() != ended.len() {
            return Err(malformed());
        }
        ended
            .iter()
            .zip(rows)
            .map(|((key, _), row)| changed(key, row))
            .collect()
    }

    async fn remove(
        &self,
        key: &InstanceKey,
        cond: RemoveIf,
    ) -> RegResult<Option<(Instance, Seq)>> {
        let sig = match cond {
            RemoveIf::Always => String::new(),
            RemoveIf::SigExpiresAt(t) => hexi(t),
        };
        let mut inv = self.scripts.remove.prepare_invoke();
        inv.arg(&self.ns)
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg(sig)
            .arg(self.clock.now_ms())
            .arg("")
            .arg(MAX_KICKS_REMEMBERED);
        changed(key, &self.run(&mut inv).await?)
    }

    async fn kick(
        &self,
        key: &InstanceKey,
        reason: KickReason,
        remember_ms: i64,
    ) -> RegResult<Option<(Instance, Seq)>> {
        let now = self.clock.now_ms();
        let mut inv = self.scripts.remove.prepare_invoke();
        inv.arg(&self.ns)
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg("")
            .arg(now)
            .arg(kick_record(reason, now + remember_ms))
            .arg(MAX_KICKS_REMEMBERED);
        changed(key, &self.run(&mut inv).await?)
    }

    async fn remove_user(
        &self,
        sdkappid: u32,
        user_id: &str,
        reason: KickReason,
        remember_ms: i64,
    ) -> RegResult<(Vec<Instance>, Seq)> {
        let now = self.clock.now_ms();
        let mut inv = self.scripts.remove_user.prepare_invoke();
        inv.arg(&self.ns)
            .arg(self.user_key(sdkappid, user_id))
            .arg(now)
            .arg(kick_record(reason, now + remember_ms))
            .arg(self.keep_until(0, now, remember_ms))
            .arg(MAX_KICKS_REMEMBERED);
        let reply = self.run(&mut inv).await?;
        let r = items(&reply);
        let seq = r.first().and_then(int).ok_or_else(malformed)? as Seq;
        let pairs = r.get(1).map(items).unwrap_or_default();
        let mut removed: Vec<Instance> = pairs
            .chunks(2)
            .filter_map(|p| {
                let id = text(p.first()?)?;
                decode(sdkappid, user_id, &id, &text(p.get(1)?)?)
            })
            .collect();
        removed.sort_by_key(|i| i.seq);
        Ok((removed, seq))
    }

    async fn set_sig_expiry(&self, key: &InstanceKey, expires_at: i64) -> RegResult<bool> {
        let now = self.clock.now_ms();
        let mut inv = self.scripts.set_sig.prepare_invoke();
        inv.arg(&self.ns)
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg(hexi(expires_at))
            .arg(Member(key))
            .arg(self.grace_ms)
            .arg(self.keep_until(expires_at, now, 0));
        Ok(int(&self.run(&mut inv).await?) == Some(1))
    }

    async fn user_instances(&self, sdkappid: u32, user_id: &str) -> RegResult<Vec<Instance>> {
        Ok(self.read_user(sdkappid, user_id).await?.instances)
    }

    async fn users_instances(
        &self,
        sdkappid: u32,
        user_ids: &[String],
    ) -> RegResult<Vec<Vec<Instance>>> {
        // An empty pipeline is an error of the client's, not Redis's answer: a scan step that found none of an
        // app's users (on a Redis shared with others, most do) reads nothing.
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in user_ids {
            pipe.cmd("HGETALL").arg(self.user_key(sdkappid, u));
        }
        // Each answer on its own: a key of another kind where a user's would be (written by something else)
        // holds no instances, rather than failing every user read with it.
        let all: Vec<redis::RedisResult<Vec<(String, String)>>> = pipe
            .ignore_errors()
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(all
            .into_iter()
            .zip(user_ids)
            .map(|(fields, u)| match fields {
                Ok(fields) => user_state(sdkappid, u, fields).instances,
                Err(e) => {
                    tracing::warn!(sdkappid, error = %e, "registry: a user's key that is not a hash is ignored");
                    Vec::new()
                }
            })
            .collect())
    }

    async fn app_instances(&self, sdkappid: u32) -> RegResult<Vec<Instance>> {
        let prefix = format!("{}:u:{sdkappid}:", self.ns);
        let mut conn = self.conn.clone();
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, keys) = scan_step(&mut conn, cursor, &format!("{prefix}*")).await?;
            let users: Vec<String> = keys
                .iter()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
                .collect();
            for list in self.users_instances(sdkappid, &users).await? {
                out.extend(list);
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn kicked(&self, key: &InstanceKey) -> RegResult<Option<Kick>> {
        let v: Option<String> = redis::cmd("HGET")
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg("k")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        let now = self.clock.now_ms();
        Ok(v.as_deref()
            .and_then(|k| find_kick(k, &key.instance_id))
            .filter(|(_, until)| *until > now)
            .map(|(kick, _)| kick))
    }

    async fn reap(&self, now: i64, grace_ms: i64) -> RegResult<Vec<Reaped>> {
        let mut out = Vec::new();
        // Instances of nodes that fell silent become disconnected (their clients resume elsewhere).
        for node in self.silent_nodes(now).await? {
            out.extend(self.sweep(&node, now, grace_ms).await?);
        }
        loop {
            let mut inv = self.scripts.reap.prepare_invoke();
            inv.arg(&self.ns).arg(now).arg(grace_ms).arg(BATCH);
            let reply = self.run(&mut inv).await?;
            let r = items(&reply);
            let looked_at = r.first().and_then(int).ok_or_else(malformed)?;
            for row in r.get(1).map(items).unwrap_or_default() {
                let r = items(row);
                let inst = stored(r).ok_or_else(malformed)?;
                out.push(match r.get(4).and_then(int) {
                    Some(1) => {
                        Reaped::Expired(inst, r.get(5).and_then(int).ok_or_else(malformed)? as Seq)
                    }
                    _ => Reaped::GraceEnded(inst),
                });
            }
            if looked_at < BATCH as i64 {
                return Ok(out);
            }
        }
    }

    async fn heartbeat(&self) -> RegResult<bool> {
        let added: i64 = redis::cmd("ZADD")
            .arg(self.nodes_key())
            .arg(self.clock.now_ms())
            .arg(hex(self.node))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(added == 1)
    }

    async fn leave(&self) -> RegResult<()> {
        redis::cmd("ZREM")
            .arg(self.nodes_key())
            .arg(hex(self.node))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(err)
    }

    async fn node_instances(&self) -> RegResult<Vec<Instance>> {
        let rows = self.scan_node(&hex(self.node), "list", 0, 0).await?;
        Ok(rows.into_iter().map(|(i, _)| i).collect())
    }

    async fn ping(&self) -> RegResult<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(err)
    }
}
