//! The in-memory registry (one node): a map from user to that user's instances. All work on a user happens
//! under that user's map entry, with no `.await` inside, which makes it linearizable per user.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use dashmap::DashMap;

use super::policy::{self, KickReason, Policy, Slot};
use super::{now_ms, Attached, ConnRef, Instance, InstanceKey, RegResult, Registry, RemoveIf};

#[derive(Default)]
struct UserEntry {
    instances: Vec<Instance>,
    /// (instance_id, reason, forget at unix ms)
    kicked: Vec<(String, KickReason, i64)>,
}

impl UserEntry {
    fn forget_old_kicks(&mut self, now: i64) {
        self.kicked.retain(|k| k.2 > now);
    }

    fn remember(&mut self, instance_id: String, reason: KickReason, until: i64) {
        self.kicked.push((instance_id, reason, until));
    }

    fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.kicked.is_empty()
    }
}

#[derive(Default)]
pub struct MemoryRegistry {
    users: DashMap<(u32, String), UserEntry>,
    seq: AtomicU64,
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on a user's entry and drops the entry when it ends up empty.
    fn with_user<R>(&self, sdkappid: u32, user_id: &str, f: impl FnOnce(&mut UserEntry) -> R) -> R {
        let key = (sdkappid, user_id.to_owned());
        let mut entry = self.users.entry(key.clone()).or_default();
        entry.forget_old_kicks(now_ms());
        let out = f(&mut entry);
        let empty = entry.is_empty();
        drop(entry);
        if empty {
            self.users.remove_if(&key, |_, e| e.is_empty());
        }
        out
    }

    /// Test helper: checks that the stored state satisfies `policy` for every user.
    pub fn check_invariants(&self, policy: &Policy) -> Result<(), String> {
        for e in self.users.iter() {
            let list = &e.value().instances;
            for p in crate::platform::Platform::ALL {
                let n = list.iter().filter(|i| i.platform == p).count();
                if n > policy.limit(p) {
                    return Err(format!("{:?}: {n} instances on {p}", e.key()));
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
                            "{:?}: {} and {} together",
                            e.key(),
                            a.platform,
                            b.platform
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn admit(
        &self,
        mut new: Instance,
        pol: &Policy,
        remember_ms: i64,
    ) -> RegResult<Vec<(Instance, KickReason)>> {
        new.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let until = now_ms() + remember_ms;
        Ok(self.with_user(new.sdkappid, &new.user_id.clone(), |e| {
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
            kicks.sort_by(|a, b| b.0.cmp(&a.0));
            let mut removed: Vec<(Instance, KickReason)> = kicks
                .into_iter()
                .map(|(i, reason)| {
                    let inst = e.instances.remove(i);
                    e.remember(inst.instance_id.clone(), reason, until);
                    (inst, reason)
                })
                .collect();
            removed.reverse();
            e.instances.push(new);
            removed
        }))
    }

    async fn get(&self, key: &InstanceKey) -> RegResult<Option<Instance>> {
        Ok(self
            .users
            .get(&(key.sdkappid, key.user_id.clone()))
            .and_then(|e| {
                e.instances
                    .iter()
                    .find(|i| i.instance_id == key.instance_id)
                    .cloned()
            }))
    }

    async fn attach(&self, key: &InstanceKey, conn: ConnRef) -> RegResult<Option<Attached>> {
        Ok(self.with_user(key.sdkappid, &key.user_id, |e| {
            let inst = e
                .instances
                .iter_mut()
                .find(|i| i.instance_id == key.instance_id)?;
            let previous = inst.conn.filter(|c| *c != conn);
            inst.conn = Some(conn);
            inst.disconnected_at_ms = None;
            Some(Attached {
                instance: inst.clone(),
                previous,
            })
        }))
    }

    async fn detach(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        now: i64,
    ) -> RegResult<Option<Instance>> {
        Ok(self.with_user(key.sdkappid, &key.user_id, |e| {
            let inst = e
                .instances
                .iter_mut()
                .find(|i| i.instance_id == key.instance_id && i.conn == Some(conn))?;
            inst.conn = None;
            inst.disconnected_at_ms = Some(now);
            Some(inst.clone())
        }))
    }

    async fn remove(&self, key: &InstanceKey, cond: RemoveIf) -> RegResult<Option<Instance>> {
        Ok(self.with_user(key.sdkappid, &key.user_id, |e| {
            let pos = e.instances.iter().position(|i| {
                i.instance_id == key.instance_id
                    && match cond {
                        RemoveIf::Always => true,
                        RemoveIf::DisconnectedSince(t) => {
                            i.conn.is_none() && i.disconnected_at_ms == Some(t)
                        }
                        RemoveIf::SigExpiresAt(t) => i.sig_expires_at == t,
                    }
            })?;
            Some(e.instances.remove(pos))
        }))
    }

    async fn remove_user(
        &self,
        sdkappid: u32,
        user_id: &str,
        reason: KickReason,
        remember_ms: i64,
    ) -> RegResult<Vec<Instance>> {
        let until = now_ms() + remember_ms;
        Ok(self.with_user(sdkappid, user_id, |e| {
            let removed: Vec<Instance> = std::mem::take(&mut e.instances);
            for i in &removed {
                e.remember(i.instance_id.clone(), reason, until);
            }
            removed
        }))
    }

    async fn set_sig_expiry(&self, key: &InstanceKey, expires_at: i64) -> RegResult<bool> {
        Ok(self.with_user(key.sdkappid, &key.user_id, |e| {
            match e
                .instances
                .iter_mut()
                .find(|i| i.instance_id == key.instance_id)
            {
                Some(i) => {
                    i.sig_expires_at = expires_at;
                    true
                }
                None => false,
            }
        }))
    }

    async fn user_instances(&self, sdkappid: u32, user_id: &str) -> RegResult<Vec<Instance>> {
        Ok(self
            .users
            .get(&(sdkappid, user_id.to_owned()))
            .map(|e| e.instances.clone())
            .unwrap_or_default())
    }

    async fn app_instances(&self, sdkappid: u32) -> RegResult<Vec<Instance>> {
        Ok(self
            .users
            .iter()
            .filter(|e| e.key().0 == sdkappid)
            .flat_map(|e| e.value().instances.clone())
            .collect())
    }

    async fn kicked(&self, key: &InstanceKey) -> RegResult<Option<KickReason>> {
        let now = now_ms();
        Ok(self
            .users
            .get(&(key.sdkappid, key.user_id.clone()))
            .and_then(|e| {
                e.kicked
                    .iter()
                    .find(|k| k.0 == key.instance_id && k.2 > now)
                    .map(|k| k.1)
            }))
    }

    fn sweep(&self) {
        let now = now_ms();
        self.users.retain(|_, e| {
            e.forget_old_kicks(now);
            !e.is_empty()
        });
    }
}
