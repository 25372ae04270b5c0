//! The in-memory registry (one node): each user's instances, in the user's record of [`Users`] (shared with the
//! login-state cache and the daily-active mark). All work on a user happens under that record's map entry, with
//! no `.await` inside, which makes it linearizable per user.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::policy::{self, Slot};
use super::{Admitted, Attach, Reaped, RegResult, Registry, RemoveIf, Take};
use crate::model::{next_seq, ConnRef, Instance, InstanceKey, Kick, Seq};
use crate::model::{KickReason, Policy};
use crate::registry::users::Users;

/// Kick records kept per user at most (the newest; past it, the oldest go, down to half of it).
pub const MAX_KICKS_REMEMBERED: usize = 16;

/// A user's part of the registry.
#[derive(Default)]
pub struct UserEntry {
    instances: Vec<Instance>,
    /// (instance_id, why, forget at unix ms)
    kicked: Vec<(String, Kick, i64)>,
    /// The number of the user's last change.
    seq: Seq,
    /// (instance_id, the change that attached it to its connection: its login's or its last resume's)
    attachments: Vec<(String, Seq)>,
}

impl UserEntry {
    fn forget_old_kicks(&mut self, now: i64) {
        self.kicked.retain(|k| k.2 > now);
    }

    fn remember(&mut self, instance_id: String, kick: Kick, until: i64) {
        // Bounded per user: a user who logs in again and again must not pile up records for the whole grace.
        // Past the bound the oldest go, down to half of it, as in the Redis registry (where trimming rewrites
        // the records, so it is done once every few kicks).
        if self.kicked.len() >= MAX_KICKS_REMEMBERED {
            self.kicked
                .drain(..self.kicked.len() + 1 - MAX_KICKS_REMEMBERED / 2);
        }
        self.kicked.push((instance_id, kick, until));
    }

    /// Records that change `seq` attached instance `id`, forgetting the instances that are gone.
    fn attached(&mut self, id: String, seq: Seq) {
        let instances = &self.instances;
        self.attachments
            .retain(|(i, _)| *i != id && instances.iter().any(|x| x.instance_id == *i));
        self.attachments.push((id, seq));
    }

    fn attachment(&self, id: &str) -> Seq {
        let found = self.attachments.iter().find(|(i, _)| i == id);
        found.map_or(0, |a| a.1)
    }

    fn next_seq(&mut self, now_ms: i64) -> Seq {
        self.seq = next_seq(self.seq, now_ms);
        self.seq
    }

    fn position(&self, instance_id: &str) -> Option<usize> {
        self.instances
            .iter()
            .position(|i| i.instance_id == instance_id)
    }

    /// Nothing left to keep: no instances, no kick records, and no change numbered in this millisecond or later
    /// (a new entry's numbers start from the time, so they stay above this one's).
    fn is_spent(&self, now_ms: i64) -> bool {
        self.instances.is_empty() && self.kicked.is_empty() && (self.seq >> 10) < now_ms as u64
    }
}

pub struct MemoryRegistry {
    users: Arc<Users>,
    order: AtomicU64,
}

impl MemoryRegistry {
    pub fn new(users: Arc<Users>) -> Self {
        MemoryRegistry {
            users,
            order: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> i64 {
        self.users.clock().now_ms()
    }

    /// Runs `f` on a user's entry (created if missing). Spent entries are dropped by the reaper.
    fn with_user<R>(
        &self,
        sdkappid: u32,
        user_id: &str,
        f: impl FnOnce(&mut UserEntry, i64) -> R,
    ) -> R {
        let now = self.now_ms();
        self.users.with(sdkappid, user_id, |u| {
            let entry = u.sessions.get_or_insert_with(Default::default);
            entry.forget_old_kicks(now);
            f(entry, now)
        })
    }

    /// Runs `f` on a user's entry if there is one.
    fn with_existing<R>(
        &self,
        sdkappid: u32,
        user_id: &str,
        f: impl FnOnce(&mut UserEntry, i64) -> Option<R>,
    ) -> Option<R> {
        let now = self.now_ms();
        self.users
            .with_existing(sdkappid, user_id, |u| {
                let entry = u.sessions.as_deref_mut()?;
                entry.forget_old_kicks(now);
                f(entry, now)
            })
            .flatten()
    }

    /// Reads a user's entry if there is one.
    fn read<R>(&self, sdkappid: u32, user_id: &str, f: impl FnOnce(&UserEntry) -> R) -> Option<R> {
        self.users
            .read(sdkappid, user_id, |u| u.sessions.as_deref().map(f))
            .flatten()
    }

    /// Test helper: checks that the stored state satisfies `policy` for every user.
    pub fn check_invariants(&self, policy: &Policy) -> Result<(), String> {
        let mut found = Ok(());
        self.users.for_each(|_, u| {
            let Some(e) = u.sessions.as_deref() else {
                return;
            };
            if found.is_ok() {
                found = check_user(&e.instances, policy);
            }
        });
        found
    }
}

fn check_user(list: &[Instance], policy: &Policy) -> Result<(), String> {
    for p in crate::model::Platform::ALL {
        let n = list.iter().filter(|i| i.platform == p).count();
        if n > policy.limit(p) {
            return Err(format!("{n} instances on {p}"));
        }
    }
    for a in list {
        for b in list {
            if a.instance_id != b.instance_id
                && a.platform != b.platform
                && policy::class_of(policy.mode, a.platform)
                    == policy::class_of(policy.mode, b.platform)
            {
                return Err(format!(
                    "{}: {} and {} together",
                    a.user_id, a.platform, b.platform
                ));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn admit(
        &self,
        mut new: Instance,
        pol: &Policy,
        remember_ms: i64,
    ) -> RegResult<Admitted> {
        new.seq = self.order.fetch_add(1, Ordering::Relaxed) + 1;
        let (sdkappid, user_id) = (new.sdkappid, new.user_id.clone());
        Ok(self.with_user(sdkappid, &user_id, |e, now| {
            let slots: Vec<Slot> = e
                .instances
                .iter()
                .map(|i| Slot {
                    platform: i.platform,
                    device_id: i.device_id.as_deref(),
                    seq: i.seq,
                })
                .collect();
            let mut kicks = policy::admit(pol, &slots, new.platform, new.device_id.as_deref());
            // Remove from the back so indices stay valid.
            kicks.sort_by_key(|k| std::cmp::Reverse(k.0));
            let mut kicked: Vec<(Instance, KickReason)> = kicks
                .into_iter()
                .map(|(i, reason)| (e.instances.remove(i), reason))
                .collect();
            kicked.reverse();
            // Remembered oldest login first, as everywhere (and in the Redis registry), so trimming past the
            // bound forgets the same ones.
            for (inst, reason) in &kicked {
                let kick = Kick {
                    reason: *reason,
                    by: Some(new.platform),
                };
                e.remember(inst.instance_id.clone(), kick, now + remember_ms);
            }
            // Most users hold one instance: do not let the first push reserve room for four.
            e.instances.reserve_exact(1);
            let id = new.instance_id.clone();
            e.instances.push(new);
            let seq = e.next_seq(now);
            e.attached(id, seq);
            Admitted { kicked, seq }
        }))
    }

    async fn get(&self, key: &InstanceKey) -> RegResult<Option<Instance>> {
        Ok(self
            .read(key.sdkappid, &key.user_id, |e| {
                e.instances
                    .iter()
                    .find(|i| i.instance_id == key.instance_id)
                    .cloned()
            })
            .flatten())
    }

    async fn attach(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        now_secs: i64,
        take: Take,
    ) -> RegResult<Attach> {
        Ok(self
            .with_existing(key.sdkappid, &key.user_id, |e, now| {
                let pos = e.position(&key.instance_id)?;
                let inst = &mut e.instances[pos];
                if now_secs > inst.sig_expires_at {
                    return Some(Attach::Expired(inst.clone()));
                }
                // Already attached to this connection, and its node checks it: no change, but a lost number
                // of its attachment is restored, as in the Redis registry. (A resume attaches it anew.)
                if let (Some(true), Take::IfNewer(known)) = (inst.conn.map(|c| c == conn), take) {
                    let instance = inst.clone();
                    if e.attachment(&key.instance_id) < known {
                        e.attached(key.instance_id.clone(), known);
                    }
                    return Some(Attach::Attached {
                        instance,
                        previous: None,
                        seq: e.seq,
                        attachment: e.attachment(&key.instance_id),
                    });
                }
                let previous = inst.conn.filter(|c| *c != conn);
                // As in the Redis registry: a check leaves the instance on a connection that attached it later,
                // and otherwise restores its own attachment under its own number.
                let restored = match (take, previous) {
                    (Take::IfNewer(known), Some(other))
                        if e.attachment(&key.instance_id) >= known =>
                    {
                        return Some(Attach::Elsewhere(other));
                    }
                    (Take::IfNewer(known), _) => Some(known),
                    (Take::Always, _) => None,
                };
                let seq = e.next_seq(now);
                let attachment = restored.unwrap_or(seq);
                let inst = &mut e.instances[pos];
                inst.conn = Some(conn);
                inst.disconnected_at_ms = None;
                let instance = inst.clone();
                e.attached(key.instance_id.clone(), attachment);
                Some(Attach::Attached {
                    instance,
                    previous,
                    seq,
                    attachment,
                })
            })
            .unwrap_or(Attach::Gone))
    }

    async fn detach(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        now: i64,
    ) -> RegResult<Option<(Instance, Seq)>> {
        Ok(
            self.with_existing(key.sdkappid, &key.user_id, |e, clock_now| {
                let pos = e.position(&key.instance_id)?;
                let inst = &mut e.instances[pos];
                if inst.conn != Some(conn) {
                    return None;
                }
                inst.conn = None;
                inst.disconnected_at_ms = Some(now);
                let inst = inst.clone();
                Some((inst, e.next_seq(clock_now)))
            }),
        )
    }

    async fn remove(
        &self,
        key: &InstanceKey,
        cond: RemoveIf,
    ) -> RegResult<Option<(Instance, Seq)>> {
        Ok(self.with_existing(key.sdkappid, &key.user_id, |e, now| {
            let pos = e.instances.iter().position(|i| {
                i.instance_id == key.instance_id
                    && match cond {
                        RemoveIf::Always => true,
                        RemoveIf::SigExpiresAt(t) => i.sig_expires_at == t,
                        RemoveIf::NotElsewhere(c) => i.conn.is_none_or(|x| x == c),
                    }
            })?;
            let inst = e.instances.remove(pos);
            Some((inst, e.next_seq(now)))
        }))
    }

    async fn kick(
        &self,
        key: &InstanceKey,
        reason: KickReason,
        remember_ms: i64,
    ) -> RegResult<Option<(Instance, Seq)>> {
        Ok(self.with_existing(key.sdkappid, &key.user_id, |e, now| {
            let pos = e.position(&key.instance_id)?;
            let inst = e.instances.remove(pos);
            let kick = Kick { reason, by: None };
            e.remember(inst.instance_id.clone(), kick, now + remember_ms);
            Some((inst, e.next_seq(now)))
        }))
    }

    async fn remove_user(
        &self,
        sdkappid: u32,
        user_id: &str,
        reason: KickReason,
        remember_ms: i64,
    ) -> RegResult<(Vec<Instance>, Seq)> {
        Ok(self.with_user(sdkappid, user_id, |e, now| {
            let removed: Vec<Instance> = std::mem::take(&mut e.instances);
            let kick = Kick { reason, by: None };
            for i in &removed {
                e.remember(i.instance_id.clone(), kick, now + remember_ms);
            }
            (removed, e.next_seq(now))
        }))
    }

    async fn set_sig_expiry(&self, key: &InstanceKey, expires_at: i64) -> RegResult<bool> {
        Ok(self
            .with_existing(key.sdkappid, &key.user_id, |e, _| {
                let pos = e.position(&key.instance_id)?;
                e.instances[pos].sig_expires_at = expires_at;
                Some(())
            })
            .is_some())
    }

    async fn user_instances(&self, sdkappid: u32, user_id: &str) -> RegResult<Vec<Instance>> {
        Ok(self
            .read(sdkappid, user_id, |e| e.instances.clone())
            .unwrap_or_default())
    }

    async fn app_instances(&self, sdkappid: u32) -> RegResult<Vec<Instance>> {
        let mut all = Vec::new();
        self.users.for_each(|app, u| {
            if let (true, Some(e)) = (app == sdkappid, u.sessions.as_deref()) {
                all.extend(e.instances.iter().cloned());
            }
        });
        Ok(all)
    }

    async fn kicked(&self, key: &InstanceKey) -> RegResult<Option<Kick>> {
        let now = self.now_ms();
        Ok(self
            .read(key.sdkappid, &key.user_id, |e| {
                e.kicked
                    .iter()
                    .find(|k| k.0 == key.instance_id && k.2 > now)
                    .map(|k| k.1)
            })
            .flatten())
    }

    async fn reap(&self, now: i64, grace_ms: i64) -> RegResult<Vec<Reaped>> {
        let mut reaped = Vec::new();
        let clock_now = self.now_ms();
        self.users.retain_sessions(|e| {
            e.forget_old_kicks(now);
            let mut i = 0;
            while i < e.instances.len() {
                let inst = &e.instances[i];
                let disconnected = inst.conn.is_none();
                let grace_over =
                    disconnected && inst.disconnected_at_ms.is_some_and(|t| now >= t + grace_ms);
                // Expired means now > expires_at, in whole seconds.
                let expired = disconnected && now.div_euclid(1000) > inst.sig_expires_at;
                if expired {
                    let inst = e.instances.remove(i);
                    reaped.push(Reaped::Expired(inst, e.next_seq(clock_now)));
                } else if grace_over {
                    reaped.push(Reaped::GraceEnded(e.instances.remove(i)));
                } else {
                    i += 1;
                }
            }
            !e.is_spent(clock_now)
        });
        Ok(reaped)
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
