//! Connection ends, in as few script calls as the layout allows: one for all of them on one Redis; on a Redis
//! Cluster one per master, the script allowed keys of several slots of that master (Redis >= 7). A batch whose
//! slots moved meanwhile (a failover, a resharding) fails before writing anything, and goes again one group of
//! users (one slot) per call.

use futures_util::future::try_join_all;

use super::codec::*;
use super::RedisRegistry;
use crate::model::{ConnRef, Instance, InstanceKey, Seq};
use crate::registry::RegResult;

type Changed = Option<(Instance, Seq)>;

impl RedisRegistry {
    pub(super) async fn detach_all(
        &self,
        ended: &[(InstanceKey, ConnRef)],
        now_ms: i64,
    ) -> RegResult<Vec<Changed>> {
        let batches = self.conn.by_master(
            ended
                .iter()
                .map(|(k, _)| self.group(k.sdkappid, &k.user_id)),
        );
        let calls = batches
            .iter()
            .map(|at| self.detach_batch(ended, at, now_ms));
        let results = try_join_all(calls).await?;
        Ok(gather(ended.len(), &batches, results))
    }

    /// The instances `at` of `ended`, all on one master: what each call changed, in the order of `at`.
    async fn detach_batch(
        &self,
        ended: &[(InstanceKey, ConnRef)],
        at: &[usize],
        now_ms: i64,
    ) -> RegResult<Vec<Changed>> {
        // Positions in `at` by group (by slot).
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (pos, &i) in at.iter().enumerate() {
            let g = self.group(ended[i].0.sdkappid, &ended[i].0.user_id);
            match groups.iter_mut().find(|(p, _)| *p == g) {
                Some((_, v)) => v.push(pos),
                None => groups.push((g, vec![pos])),
            }
        }
        if groups.len() > 1 {
            match self.detach_call(ended, at, now_ms, true).await {
                Err(e) if e.0.contains("non local key") => {}
                r => return r,
            }
        }
        let each = groups.iter().map(|(_, pos)| {
            let idx: Vec<usize> = pos.iter().map(|&p| at[p]).collect();
            async move { self.detach_call(ended, &idx, now_ms, false).await }
        });
        let results = try_join_all(each).await?;
        let positions: Vec<Vec<usize>> = groups.into_iter().map(|(_, pos)| pos).collect();
        Ok(gather(at.len(), &positions, results))
    }

    /// One call for the instances `at` of `ended`: all their keys declared (one slot), or, `across` the slots of
    /// one master, only the first (which routes the call there).
    async fn detach_call(
        &self,
        ended: &[(InstanceKey, ConnRef)],
        at: &[usize],
        now_ms: i64,
        across: bool,
    ) -> RegResult<Vec<Changed>> {
        // All in one group (one slot): its user keys and its index are declared. Across groups: only the
        // first key, which routes the call.
        let (script, declared) = match across {
            true => (&self.scripts.detach_across, 1),
            false => (&self.scripts.detach_many, at.len() + 1),
        };
        let reply = self
            .eval(script, declared, |c| {
                for &i in &at[..declared.min(at.len())] {
                    let k = &ended[i].0;
                    c.arg(self.user_key(k.sdkappid, &k.user_id));
                }
                if !across {
                    let k = &ended[at[0]].0;
                    c.arg(self.due_key(k.sdkappid, &k.user_id));
                }
                c.arg(hex_arg(now_ms))
                    .arg(floor_arg(now_ms))
                    .arg(now_ms + self.grace_ms);
                for &i in at {
                    let (k, conn) = &ended[i];
                    c.arg(self.user_key(k.sdkappid, &k.user_id))
                        .arg(self.group(k.sdkappid, &k.user_id))
                        .arg(&k.instance_id)
                        .arg(Hex(conn.node))
                        .arg(Hex(conn.conn))
                        .arg(Member(k));
                }
            })
            .await?;
        let rows = items(&reply);
        if rows.len() != at.len() {
            return Err(malformed());
        }
        at.iter()
            .zip(rows)
            .map(|(&i, row)| changed(&ended[i].0, row))
            .collect()
    }
}

/// The rows of each batch put back at the batch's positions, in a vector of `len`.
fn gather(len: usize, batches: &[Vec<usize>], results: Vec<Vec<Changed>>) -> Vec<Changed> {
    let mut out = vec![None; len];
    for (positions, rows) in batches.iter().zip(results) {
        for (&p, row) in positions.iter().zip(rows) {
            out[p] = row;
        }
    }
    out
}
