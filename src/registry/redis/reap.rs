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
        // Every group's index at once (one on one Redis). A group that fails is tried again at the next tick;
        // what the others reaped is reported.
        let groups = self.layout.prefixes().iter();
        let mut failed = None;
        for r in join_all(groups.map(|g| self.reap_group(g, now, grace_ms))).await {
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
