//! The cluster registry: every node's instances in one Redis, so the policy holds across nodes exactly as on one.
//!
//! Each user is one hash (`NS:u:APP:USER`: the instances, the kick records and the change number `s`), so every
//! change to a user is one Lua script on one key and the scripts are the only writers. Admission keeps the
//! policy in Rust ([`policy::admit`], the same code as the memory backend): the node reads the user, decides, and
//! a script applies the decision only if the user's change number is still the one read (an optimistic
//! transaction, retried on conflict), so two nodes admitting the same user at once cannot both win.
//!
//! Indexes make the background work cost what is due, not a scan: connected instances are in their node's set
//! (`NS:n:NODE`, for when that node dies), disconnected ones in one sorted set by when they are due
//! (`NS:reap`). Nodes heartbeat into `NS:nodes`; a node that falls silent for `node_timeout` has its instances
//! marked disconnected by whichever node notices first (resumable elsewhere, removed after the grace). User keys
//! expire on their own after the last UserSig they hold, so nothing is left behind by a node that dies
//! mid-operation. Redis Cluster is not supported (the scripts touch keys they compute): use one primary.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::memory::MAX_KICKS_REMEMBERED;
use super::policy::{self, KickReason, Policy, Slot};
use super::{
    Admitted, Attach, ConnRef, Instance, InstanceKey, Reaped, RegResult, Registry, RegistryError,
    RemoveIf, Seq,
};
use crate::clock::Clock;
use crate::platform::Platform;

/// How often an admission is retried when another node changed the user in between.
const ADMIT_ATTEMPTS: usize = 32;
/// Instances one reap or orphan script handles at most.
const BATCH: usize = 500;
/// A user key outlives the last UserSig it holds by this much (beyond the grace and the kick records).
const KEY_SLACK_MS: i64 = 60_000;

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
    detach: Script,
    remove: Script,
    remove_user: Script,
    set_sig: Script,
    reap: Script,
    orphans: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            admit: script!("lua/admit.lua"),
            attach: script!("lua/attach.lua"),
            detach: script!("lua/detach.lua"),
            remove: script!("lua/remove.lua"),
            remove_user: script!("lua/remove_user.lua"),
            set_sig: script!("lua/set_sig.lua"),
            reap: script!("lua/reap.lua"),
            orphans: script!("lua/orphans.lua"),
        }
    }
}

/// Opens a connection to Redis that reconnects by itself; a request waits at most `timeout` (then the login
/// that made it answers 70169), and reconnecting never holds requests for long.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, RegistryError> {
    let client = redis::Client::open(url).map_err(err)?;
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

fn err(e: redis::RedisError) -> RegistryError {
    RegistryError(e.to_string())
}

fn hex(node: u64) -> String {
    format!("{node:016x}")
}

/// The user's state as read: its change number (as stored, "0" if none), instances and kick records.
struct UserState {
    seq: String,
    instances: Vec<Instance>,
    /// (instance id, reason, until ms)
    kicks: Vec<(String, KickReason, i64)>,
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

    fn user_key(&self, sdkappid: u32, user_id: &str) -> String {
        format!("{}:u:{sdkappid}:{user_id}", self.ns)
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
}

/// The stored form of an instance, split where its login order goes (the admit script numbers it).
fn encode_parts(i: &Instance) -> (String, String) {
    let (node, conn) = match i.conn {
        Some(c) => (hex(c.node), c.conn.to_string()),
        None => (String::new(), String::new()),
    };
    let disc = match (i.conn, i.disconnected_at_ms) {
        (None, Some(t)) => t.to_string(),
        _ => String::new(),
    };
    (
        format!("{}|{}|", i.platform.index(), i.login_at_ms),
        format!(
            "|{}|{node}|{conn}|{disc}|{}|{}",
            i.sig_expires_at,
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
    let login_at_ms = next()?.parse().ok()?;
    let seq = next()?.parse().ok()?;
    let sig_expires_at = next()?.parse().ok()?;
    let (node, conn) = (next()?, next()?);
    let conn = match node {
        "" => None,
        n => Some(ConnRef {
            node: u64::from_str_radix(n, 16).ok()?,
            conn: conn.parse().ok()?,
        }),
    };
    let disconnected_at_ms = match next()? {
        "" => None,
        t => Some(t.parse().ok()?),
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
    let mut state = UserState {
        seq: "0".into(),
        instances: Vec::new(),
        kicks: Vec::new(),
    };
    for (field, value) in fields {
        if field == "s" {
            state.seq = value;
        } else if let Some(id) = field.strip_prefix("i:") {
            match decode(sdkappid, user_id, id, &value) {
                Some(i) => state.instances.push(i),
                None => tracing::warn!(
                    sdkappid,
                    "registry: an instance that does not parse is ignored"
                ),
            }
        } else if let Some(id) = field.strip_prefix("k:") {
            if let Some((reason, until)) = parse_kick(&value) {
                state.kicks.push((id.to_owned(), reason, until));
            }
        }
    }
    state.instances.sort_by_key(|i| i.seq);
    state
}

fn parse_kick(v: &str) -> Option<(KickReason, i64)> {
    let (reason, until) = v.split_once('|')?;
    Some((
        KickReason::from_index(reason.parse().ok()?)?,
        until.parse().ok()?,
    ))
}

fn member(sdkappid: u32, instance_id: &str, user_id: &str) -> String {
    format!("{sdkappid}:{instance_id}:{user_id}")
}

fn member_of(key: &InstanceKey) -> String {
    member(key.sdkappid, &key.instance_id, &key.user_id)
}

fn node_of(i: &Instance) -> String {
    i.conn.map(|c| hex(c.node)).unwrap_or_default()
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
fn removed(key: &InstanceKey, v: &Value) -> RegResult<Option<(Instance, Seq)>> {
    let r = items(v);
    if r.first().and_then(int) != Some(1) {
        return Ok(None);
    }
    let value = r.get(1).and_then(text).ok_or_else(malformed)?;
    let seq = r.get(2).and_then(int).ok_or_else(malformed)? as Seq;
    let inst =
        decode(key.sdkappid, &key.user_id, &key.instance_id, &value).ok_or_else(malformed)?;
    Ok(Some((inst, seq)))
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn admit(&self, new: Instance, pol: &Policy, remember_ms: i64) -> RegResult<Admitted> {
        let (sdkappid, user_id) = (new.sdkappid, new.user_id.as_str());
        let key = self.user_key(sdkappid, user_id);
        let (head, tail) = encode_parts(&new);
        let new_member = member(sdkappid, &new.instance_id, user_id);
        for _ in 0..ADMIT_ATTEMPTS {
            let state = self.read_user(sdkappid, user_id).await?;
            let slots: Vec<Slot> = state
                .instances
                .iter()
                .map(|i| Slot {
                    platform: i.platform,
                    device_id: i.device_id.as_deref(),
                    seq: i.seq,
                })
                .collect();
            let decided = policy::admit(pol, &slots, new.platform, new.device_id.as_deref());
            let kicked: Vec<(Instance, KickReason)> = decided
                .into_iter()
                .map(|(i, reason)| (state.instances[i].clone(), reason))
                .collect();
            let now = self.clock.now_ms();
            // Kick records past their time, and the oldest beyond the bound once these are added.
            let mut kept: Vec<&(String, KickReason, i64)> =
                state.kicks.iter().filter(|k| k.2 > now).collect();
            kept.sort_by_key(|k| k.2);
            let excess = (kept.len() + kicked.len()).saturating_sub(MAX_KICKS_REMEMBERED);
            let forget: Vec<&str> = state
                .kicks
                .iter()
                .filter(|k| k.2 <= now)
                .chain(kept.iter().take(excess).copied())
                .map(|k| k.0.as_str())
                .collect();
            let due = match new.conn {
                Some(_) => String::new(),
                None => {
                    let t = new.disconnected_at_ms.unwrap_or(now);
                    (t + self.grace_ms)
                        .min((new.sig_expires_at + 1) * 1000)
                        .to_string()
                }
            };
            let mut inv = self.scripts.admit.prepare_invoke();
            inv.arg(&self.ns)
                .arg(&key)
                .arg(&state.seq)
                .arg(now)
                .arg(now + remember_ms)
                .arg(&new.instance_id)
                .arg(&head)
                .arg(&tail)
                .arg(&new_member)
                .arg(node_of(&new))
                .arg(due)
                .arg(self.keep_until(new.sig_expires_at, now, remember_ms))
                .arg(kicked.len());
            for (k, reason) in &kicked {
                inv.arg(&k.instance_id)
                    .arg(reason.index())
                    .arg(node_of(k))
                    .arg(member(sdkappid, &k.instance_id, user_id));
            }
            for id in forget {
                inv.arg(id);
            }
            let reply = self.run(&mut inv).await?;
            let r = items(&reply);
            if r.first().and_then(int) == Some(1) {
                let seq = r.get(1).and_then(int).ok_or_else(malformed)? as Seq;
                return Ok(Admitted { kicked, seq });
            }
        }
        Err(RegistryError(
            "too many concurrent changes to one user; try again".into(),
        ))
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
            .arg(conn.conn)
            .arg(now_secs)
            .arg(self.clock.now_ms())
            .arg(member_of(key));
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
                        node: u64::from_str_radix(n, 16).map_err(|_| malformed())?,
                        conn: r.get(3).and_then(int).ok_or_else(malformed)? as u64,
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
        let mut inv = self.scripts.detach.prepare_invoke();
        inv.arg(&self.ns)
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg(hex(conn.node))
            .arg(conn.conn)
            .arg(now_ms)
            .arg(self.grace_ms)
            .arg(member_of(key));
        removed(key, &self.run(&mut inv).await?)
    }

    async fn remove(
        &self,
        key: &InstanceKey,
        cond: RemoveIf,
    ) -> RegResult<Option<(Instance, Seq)>> {
        let sig = match cond {
            RemoveIf::Always => String::new(),
            RemoveIf::SigExpiresAt(t) => t.to_string(),
        };
        let mut inv = self.scripts.remove.prepare_invoke();
        inv.arg(&self.ns)
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg(sig)
            .arg(self.clock.now_ms())
            .arg(member_of(key))
            .arg("");
        removed(key, &self.run(&mut inv).await?)
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
            .arg(member_of(key))
            .arg(format!("{}|{}", reason.index(), now + remember_ms));
        removed(key, &self.run(&mut inv).await?)
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
            .arg(sdkappid)
            .arg(user_id)
            .arg(now)
            .arg(format!("{}|{}", reason.index(), now + remember_ms));
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
            .arg(expires_at)
            .arg(member_of(key))
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
        let mut pipe = redis::pipe();
        for u in user_ids {
            pipe.cmd("HGETALL").arg(self.user_key(sdkappid, u));
        }
        let all: Vec<Vec<(String, String)>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(all
            .into_iter()
            .zip(user_ids)
            .map(|(fields, u)| user_state(sdkappid, u, fields).instances)
            .collect())
    }

    async fn app_instances(&self, sdkappid: u32) -> RegResult<Vec<Instance>> {
        let prefix = format!("{}:u:{sdkappid}:", self.ns);
        let mut conn = self.conn.clone();
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
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

    async fn kicked(&self, key: &InstanceKey) -> RegResult<Option<KickReason>> {
        let v: Option<String> = redis::cmd("HGET")
            .arg(self.user_key(key.sdkappid, &key.user_id))
            .arg(format!("k:{}", key.instance_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        let now = self.clock.now_ms();
        Ok(v.as_deref()
            .and_then(parse_kick)
            .filter(|(_, until)| *until > now)
            .map(|(reason, _)| reason))
    }

    async fn reap(&self, now: i64, grace_ms: i64) -> RegResult<Vec<Reaped>> {
        let mut out = Vec::new();
        // Instances of nodes that fell silent become disconnected (their clients resume elsewhere).
        for node in self.silent_nodes(now).await? {
            loop {
                let mut inv = self.scripts.orphans.prepare_invoke();
                inv.arg(&self.ns)
                    .arg(&node)
                    .arg(now)
                    .arg(grace_ms)
                    .arg(BATCH);
                let reply = self.run(&mut inv).await?;
                let rows = items(&reply);
                for row in rows {
                    let r = items(row);
                    let inst = stored(r).ok_or_else(malformed)?;
                    let seq = r.get(4).and_then(int).ok_or_else(malformed)? as Seq;
                    out.push(Reaped::Disconnected(inst, seq));
                }
                if rows.is_empty() {
                    break;
                }
            }
            tracing::warn!(node = %node, "a node stopped heartbeating: its instances are disconnected, resumable elsewhere");
        }
        loop {
            let mut inv = self.scripts.reap.prepare_invoke();
            inv.arg(&self.ns).arg(now).arg(grace_ms).arg(BATCH);
            let reply = self.run(&mut inv).await?;
            let rows = items(&reply);
            for row in rows {
                let r = items(row);
                let inst = stored(r).ok_or_else(malformed)?;
                out.push(match r.get(4).and_then(int) {
                    Some(1) => {
                        Reaped::Expired(inst, r.get(5).and_then(int).ok_or_else(malformed)? as Seq)
                    }
                    _ => Reaped::GraceEnded(inst),
                });
            }
            if rows.len() < BATCH {
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
        redis::pipe()
            .cmd("ZREM")
            .arg(self.nodes_key())
            .arg(hex(self.node))
            .ignore()
            .cmd("DEL")
            .arg(format!("{}:n:{}", self.ns, hex(self.node)))
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(err)
    }

    async fn node_instances(&self) -> RegResult<Vec<Instance>> {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:n:{}", self.ns, hex(self.node)))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        let mut out = Vec::new();
        for m in members {
            let mut parts = m.splitn(3, ':');
            let (Some(app), Some(id), Some(user)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(sdkappid) = app.parse() else { continue };
            let key = InstanceKey {
                sdkappid,
                user_id: user.to_owned(),
                instance_id: id.to_owned(),
            };
            out.extend(self.get(&key).await?);
        }
        Ok(out)
    }

    async fn ping(&self) -> RegResult<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(err)
    }
}
