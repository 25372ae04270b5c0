//! The cluster's nodes in Redis: finding the silent ones, and marking a silent node's instances disconnected
//! (or listing this node's), by a scan of the users that only a node's death costs.

use redis::aio::ConnectionManager;

use super::codec::*;
use super::connect::err;
use super::{RedisRegistry, BATCH, SWEEP_LOCK_MS};
use crate::model::{Instance, Seq};
use crate::registry::{Reaped, RegResult};

impl RedisRegistry {
    /// The nodes that have not heartbeat within the timeout (never this one).
    pub(super) async fn silent_nodes(&self, now: i64) -> RegResult<Vec<String>> {
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
    pub(super) async fn sweep(
        &self,
        node: &str,
        now: i64,
        grace_ms: i64,
    ) -> RegResult<Vec<Reaped>> {
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
    pub(super) async fn scan_node(
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
pub(super) async fn scan_step(
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
