//! Reaping: what is due (a grace ended, a UserSig expired) in every group's index, and the instances of nodes
//! that fell silent.

use futures_util::future::join_all;

use super::codec::*;
use super::{RedisRegistry, BATCH};
use crate::model::Seq;
use crate::registry::{Reaped, RegResult};

impl RedisRegistry {
    pub(super) async fn reap_all(&self, now: i64, grace_ms: i64) -> RegResult<Vec<Reaped>> {
        let mut out = Vec::new();
        // Instances of nodes that fell silent become disconnected (their clients resume elsewhere).
        for node in self.silent_nodes(now).await? {
            out.extend(self.sweep(&node, now, grace_ms).await?);
        }
        // Every group with something due (the one on one Redis). A group that fails is tried again at the next
        // tick; what the others reaped is reported.
        let groups = match self.layout.is_cluster() {
            true => self.groups_due(now).await,
            false => self.layout.prefixes().iter().map(String::as_str).collect(),
        };
        let mut failed = None;
        for r in join_all(groups.iter().map(|g| self.reap_group(g, now, grace_ms))).await {
            match r {
                Ok(reaped) => out.extend(reaped),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "could not reap a group of users; tried again at the next tick");
                Ok(out)
            }
            None => Ok(out),
        }
    }

    /// The groups of a cluster whose index has a user due by `now`: a look at each index, one pipeline per
    /// master, so a tick costs each master one round trip rather than a script call per group. A master that
    /// does not answer leaves its groups for the next tick.
    async fn groups_due(&self, now: i64) -> Vec<&str> {
        let prefixes = self.layout.prefixes();
        let batches = self.conn.by_master(prefixes.iter().map(String::as_str));
        let looks = batches.iter().map(|at| async move {
            let mut pipe = redis::pipe();
            for &i in at {
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(format!("{}:due", prefixes[i]))
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1);
            }
            let due: redis::RedisResult<Vec<Vec<String>>> =
                pipe.query_async(&mut self.conn.clone()).await;
            (at, due)
        });
        let mut out = Vec::new();
        for (at, due) in join_all(looks).await {
            match due {
                Ok(due) => out.extend(
                    at.iter()
                        .zip(due)
                        .filter(|(_, d)| !d.is_empty())
                        .map(|(&i, _)| prefixes[i].as_str()),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for users due on a Redis Cluster master; tried again at the next tick")
                }
            }
        }
        out
    }

    /// Removes what is due in one group (by its index `G:due`), a batch of users at a time.
    async fn reap_group(&self, group: &str, now: i64, grace_ms: i64) -> RegResult<Vec<Reaped>> {
        let mut out = Vec::new();
        loop {
            let mut inv = self.scripts.reap.prepare_invoke();
            inv.key(format!("{group}:due"))
                .arg(group)
                .arg(now)
                .arg(grace_ms)
                .arg(BATCH);
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
}
