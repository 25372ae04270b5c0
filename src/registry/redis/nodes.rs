//! The cluster's nodes in Redis: finding the silent ones, and marking a silent node's instances disconnected
//! (or listing this node's), by a scan of the users that only a node's death costs.

use super::codec::*;
use super::connect::{err, ScanTarget};
use super::{RedisConn, RedisRegistry, BATCH, SWEEP_LOCK_MS};
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
        let lock = self.layout.global(&format!("sweep:{node}"));
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
        let pattern = self.layout.user_pattern(None);
        let mut out = Vec::new();
        let mut scan = self.scan_users(pattern);
        while let Some(keys) = scan.next().await? {
            // Only user keys (`NS:u:APP:USER`), by group: anything else under the prefix is not the
            // registry's, and one script call looks at one group's (one slot's) keys.
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for k in &keys {
                let Some((group, _)) = self.layout.split_user_key(k) else {
                    continue;
                };
                match groups.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, ks)) => ks.push(k),
                    None => groups.push((group, vec![k])),
                }
            }
            for (group, keys) in groups {
                let mut inv = self.scripts.node_scan.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                inv.key(format!("{group}:due"));
                inv.arg(group).arg(node).arg(now).arg(grace_ms).arg(mode);
                let reply = self.run(&mut inv).await?;
                for row in items(&reply) {
                    let r = items(row);
                    let inst = stored(r).ok_or_else(malformed)?;
                    out.push((inst, r.get(4).and_then(int).unwrap_or(0) as Seq));
                }
            }
        }
        Ok(out)
    }

    /// The keys matching `pattern` on every server holding keys (each master of a cluster), a batch at a time.
    pub(super) fn scan_users(&self, pattern: String) -> UserScan<'_> {
        UserScan {
            conn: &self.conn,
            targets: self.conn.scan_targets(),
            pattern,
            at: 0,
            cursor: 0,
        }
    }
}

/// A `SCAN` over every server holding keys, in steps (see [`RedisRegistry::scan_users`]).
pub(super) struct UserScan<'a> {
    conn: &'a RedisConn,
    targets: Vec<ScanTarget>,
    pattern: String,
    at: usize,
    cursor: u64,
}

impl UserScan<'_> {
    /// The next batch of keys; `None` once every server has been scanned.
    pub(super) async fn next(&mut self) -> RegResult<Option<Vec<String>>> {
        let Some(target) = self.targets.get(self.at) else {
            return Ok(None);
        };
        let (next, keys) = self
            .conn
            .scan_step(target, self.cursor, &self.pattern, BATCH)
            .await?;
        self.cursor = next;
        if next == 0 {
            self.at += 1;
        }
        Ok(Some(keys))
    }
}
