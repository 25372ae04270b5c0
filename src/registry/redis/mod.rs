//! The cluster registry: every node's instances in one Redis, so the policy holds across nodes exactly as on one.
//!
//! Each user is one hash (`NS:u:APP:USER`: the instances, the kick records and the change number `s`), and
//! every change to a user is one Lua script on that key (`lua/`), so changes to one user are atomic and
//! ordered across nodes. Admission applies PROTOCOL §5 inside its script, in one round trip; the rules are
//! those of [`policy::admit`](crate::registry::policy::admit) (the memory backend's), passed as data (the class of each platform, the limit),
//! and a test runs random sequences through both backends and requires the same kicks.
//!
//! Values are kept short (numbers in hexadecimal, nodes numbered from 1) so a user's hash stays in Redis's compact
//! encoding. Users with disconnected instances are indexed by when the first is due (`NS:due`, kept lazily: a
//! login or a resume leaves the entry, and the reaper finds nothing due then), so reaping costs what is due, not
//! a scan, and the usual login writes no index. Nodes heartbeat into `NS:nodes`; the instances of a node silent
//! for `node_timeout` are marked disconnected by whichever node notices first (resumable elsewhere, removed after
//! the grace) — found by a scan of the users, which only a node's death costs. User keys expire after the last
//! UserSig they hold, so nothing is left behind by a node that dies mid-operation.
//!
//! On a Redis Cluster the same scripts run, each within one hash slot: users are spread over groups of keys
//! that share a slot ([`layout`]), each group with its own reaping index, and a batch of ends is split by group.

mod admit;
mod cluster;
mod codec;
mod connect;
mod detach;
pub mod layout;
mod nodes;
mod reap;
mod scripts;
mod slots;

pub use cluster::ClusterConn;
pub(crate) use connect::err;
pub use connect::{connect, connect_cluster, connection_info, node_number, RedisConn};
pub use layout::Layout;
pub(crate) use slots::node_url;

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::{Script, Value};

use super::memory::MAX_KICKS_REMEMBERED;

use super::{Admitted, Attach, Reaped, RegResult, Registry, RemoveIf, Take};
use crate::model::{ConnRef, Instance, InstanceKey, Kick, Seq};
use crate::model::{KickReason, Policy};
use crate::runtime::clock::Clock;
use codec::*;
use scripts::Scripts;

/// Users one reap step and one scan step look at.
const BATCH: usize = 500;
/// A user key outlives the last UserSig it holds by at least this much (beyond the grace and the kick records;
/// the scripts extend it a minute further, so that the next minute's changes need not).
const KEY_SLACK_MS: i64 = 60_000;
/// How long one node has to mark a silent node's instances disconnected before another may take over.
const SWEEP_LOCK_MS: i64 = 60_000;

pub struct RedisRegistry {
    conn: RedisConn,
    layout: Layout,
    node: u64,
    grace_ms: i64,
    node_timeout_ms: i64,
    clock: Clock,
    scripts: Scripts,
}

impl RedisRegistry {
    /// `layout` places the keys, under the namespace (deployments may share a Redis); `node` is this node.
    pub fn new(
        conn: RedisConn,
        layout: Layout,
        node: u64,
        grace: Duration,
        node_timeout: Duration,
        clock: Clock,
    ) -> RedisRegistry {
        RedisRegistry {
            conn,
            layout,
            node,
            grace_ms: grace.as_millis() as i64,
            node_timeout_ms: node_timeout.as_millis() as i64,
            clock,
            scripts: Scripts::new(),
        }
    }

    fn nodes_key(&self) -> String {
        self.layout.global("nodes")
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

    /// `EVALSHA` of `script` with `keys` keys and then the arguments, as `args` writes them, loading the script
    /// if Redis does not have it. The hot paths build their command this way: one buffer for every argument.
    async fn eval(
        &self,
        script: &Script,
        keys: usize,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> RegResult<Value> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys);
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

    /// The prefix of the user's group (the scripts' `ns`).
    fn group(&self, sdkappid: u32, user_id: &str) -> &str {
        self.layout.prefix(sdkappid, user_id)
    }

    /// The index of what is due in the user's group. Scripts that may write it declare it (a slot being moved
    /// to another master then refuses the whole call, rather than failing it halfway).
    fn due_key(&self, sdkappid: u32, user_id: &str) -> String {
        format!("{}:due", self.group(sdkappid, user_id))
    }

    fn user_key<'a>(&'a self, sdkappid: u32, user_id: &'a str) -> UserKey<'a> {
        UserKey(self.group(sdkappid, user_id), sdkappid, user_id)
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn admit(&self, new: Instance, pol: &Policy, remember_ms: i64) -> RegResult<Admitted> {
        self.admit_with(new, pol, remember_ms, None)
            .await?
            .ok_or_else(malformed)
    }

    async fn reassert(
        &self,
        inst: Instance,
        pol: &Policy,
        remember_ms: i64,
        known: Seq,
    ) -> RegResult<Option<Seq>> {
        let put = self.admit_with(inst, pol, remember_ms, Some(known)).await?;
        Ok(put.map(|a| a.seq))
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

    async fn attach(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        now_secs: i64,
        take: Take,
    ) -> RegResult<Attach> {
        let mut inv = self.scripts.attach.prepare_invoke();
        inv.key(self.user_key(key.sdkappid, &key.user_id))
            .arg(self.group(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg(hex(conn.node))
            .arg(hex(conn.conn))
            .arg(now_secs)
            .arg(self.clock.now_ms())
            .arg(match take {
                Take::Always => String::new(),
                Take::IfNewer(known) => format!("{known:x}"),
            });
        let reply = self.run(&mut inv).await?;
        let r = items(&reply);
        let value = || {
            let v = r.get(1).and_then(text)?;
            decode(key.sdkappid, &key.user_id, &key.instance_id, &v)
        };
        // The connection the instance was on (fields 2 and 3 of the reply), `None` if none.
        let on = || -> RegResult<Option<ConnRef>> {
            Ok(match r.get(2).and_then(text).unwrap_or_default().as_str() {
                "" => None,
                n => Some(ConnRef {
                    node: from_hex(n).ok_or_else(malformed)?,
                    conn: r
                        .get(3)
                        .and_then(text)
                        .and_then(|c| from_hex(&c))
                        .ok_or_else(malformed)?,
                }),
            })
        };
        Ok(match r.first().and_then(int) {
            Some(1) => Attach::Expired(value().ok_or_else(malformed)?),
            Some(3) => Attach::Elsewhere(on()?.ok_or_else(malformed)?),
            Some(2) => {
                let instance = value().ok_or_else(malformed)?;
                let previous = on()?.filter(|p| *p != conn);
                let number = |i: usize| r.get(i).and_then(int).map(|n| n as Seq);
                Attach::Attached {
                    instance,
                    previous,
                    seq: number(4).ok_or_else(malformed)?,
                    attachment: number(5).ok_or_else(malformed)?,
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
        self.detach_all(ended, now_ms).await
    }

    async fn remove(
        &self,
        key: &InstanceKey,
        cond: RemoveIf,
    ) -> RegResult<Option<(Instance, Seq)>> {
        let (sig, on) = match cond {
            RemoveIf::Always => (String::new(), None),
            RemoveIf::SigExpiresAt(t) => (hexi(t), None),
            RemoveIf::NotElsewhere(c) => (String::new(), Some(c)),
        };
        let mut inv = self.scripts.remove.prepare_invoke();
        inv.key(self.user_key(key.sdkappid, &key.user_id))
            .arg(self.group(key.sdkappid, &key.user_id))
            .arg(&key.instance_id)
            .arg(sig)
            .arg(self.clock.now_ms())
            .arg("")
            .arg(MAX_KICKS_REMEMBERED)
            .arg(on.map(|c| hex(c.node)).unwrap_or_default())
            .arg(on.map(|c| hex(c.conn)).unwrap_or_default());
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
        inv.key(self.user_key(key.sdkappid, &key.user_id))
            .arg(self.group(key.sdkappid, &key.user_id))
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
        inv.key(self.user_key(sdkappid, user_id))
            .arg(self.group(sdkappid, user_id))
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
        inv.key(self.user_key(key.sdkappid, &key.user_id))
            .key(self.due_key(key.sdkappid, &key.user_id))
            .arg(self.group(key.sdkappid, &key.user_id))
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
        // One read per user, all at once (the connection pipelines them; on a cluster each goes to its slot's
        // master, where one pipeline could not).
        let reads = user_ids.iter().map(|u| async move {
            let fields: redis::RedisResult<Vec<(String, String)>> = redis::cmd("HGETALL")
                .arg(self.user_key(sdkappid, u))
                .query_async(&mut self.conn.clone())
                .await;
            match fields {
                Ok(fields) => Ok(user_state(sdkappid, u, fields).instances),
                // A key of another kind where a user's would be (written by something else) holds no instances,
                // rather than failing every user read with it.
                Err(e) if e.code() == Some("WRONGTYPE") => {
                    tracing::warn!(
                        sdkappid,
                        "registry: a user's key that is not a hash is ignored"
                    );
                    Ok(Vec::new())
                }
                Err(e) => Err(err(e)),
            }
        });
        try_join_all(reads).await
    }

    async fn app_instances(&self, sdkappid: u32) -> RegResult<Vec<Instance>> {
        let pattern = self.layout.user_pattern(Some(sdkappid));
        let mut out = Vec::new();
        let mut scan = self.scan_users(pattern);
        while let Some(keys) = scan.next().await? {
            let users: Vec<String> = keys
                .iter()
                .filter_map(|k| self.layout.split_user_key(k))
                .filter_map(|(_, member)| member.split_once(':'))
                .filter(|(app, _)| app.parse() == Ok(sdkappid))
                .map(|(_, user)| user.to_owned())
                .collect();
            for list in self.users_instances(sdkappid, &users).await? {
                out.extend(list);
            }
        }
        Ok(out)
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
        self.reap_all(now, grace_ms).await
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
        self.conn.ping().await
    }
}
