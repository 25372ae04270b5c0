//! The in-memory registry (one node): each user's instances, in the user's record of [`Users`] (shared with the
//! login-state cache and the daily-active mark). All work on a user happens under that record's map entry, with
//! no `.await` inside, which makes it linearizable per user.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::policy::{self, Slot};
use super::{Admitted, Attach, Reaped, RegResult, Registry, RemoveIf};
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
            e.instances.push(new);
            Admitted {
                kicked,
                seq: e.next_seq(now),
            }
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

    async fn attach(&self, key: &InstanceKey, conn: ConnRef, now_secs: i64) -> RegResult<Attach> {
        Ok(self
            .with_existing(key.sdkappid, &key.user_id, |e, now| {
                let pos = e.position(&key.instance_id)?;
                let inst = &mut e.instances[pos];
                if now_secs > inst.sig_expires_at {
                    return Some(Attach::Expired(inst.clone()));
                }
                let previous = inst.conn.filter(|c| *c != conn);
                inst.conn = Some(conn);
                inst.disconnected_at_ms = None;
                let instance = inst.clone();
                Some(Attach::Attached {
                    instance,
                    previous,
                    seq: e.next_seq(now),
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
mod tests {
    use super::*;
    use crate::model::Mode;
    use crate::model::Platform;
    use crate::runtime::clock::Clock;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn instance(n: usize, p: Platform, device: Option<u8>, conn: Option<u64>) -> Instance {
        Instance {
            sdkappid: 1,
            user_id: "u".into(),
            platform: p,
            instance_id: format!("i{n}"),
            device_id: device.map(|d| format!("d{d}")),
            login_at_ms: n as i64,
            seq: 0,
            sig_expires_at: i64::MAX,
            conn: conn.map(|c| ConnRef { node: 1, conn: c }),
            disconnected_at_ms: None,
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Login(Platform, Option<u8>, bool),
        Logout(usize),
        Disconnect(usize),
        Resume(usize),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let p = (0..7usize).prop_map(|i| Platform::ALL[i]);
        prop_oneof![
            4 => (p, proptest::option::of(0..3u8), any::<bool>()).prop_map(|(p, d, c)| Op::Login(p, d, c)),
            1 => (0..40usize).prop_map(Op::Logout),
            1 => (0..40usize).prop_map(Op::Disconnect),
            1 => (0..40usize).prop_map(Op::Resume),
        ]
    }

    proptest! {
        #[test]
        fn random_login_logout_disconnect_resume_keep_the_invariants(
            mode in 0..4usize, web in 1..=10u8, per in 1..=3u8,
            ops in proptest::collection::vec(arb_op(), 1..80),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let pol = Policy { mode: [Mode::Single, Mode::Dual, Mode::Triple, Mode::Multi][mode], web_instances: web, instances_per_platform: per };
            let reg = MemoryRegistry::new(Users::new(Clock::system()));
            let mut kicked_ids: HashSet<String> = HashSet::new();
            let mut created = 0usize;
            rt.block_on(async {
                for op in ops {
                    match op {
                        Op::Login(p, d, connected) => {
                            created += 1;
                            let new = instance(created, p, d, connected.then_some(created as u64));
                            let id = new.instance_id.clone();
                            for (inst, reason) in reg.admit(new, &pol, 60_000).await.unwrap().kicked {
                                assert!(kicked_ids.insert(inst.instance_id.clone()), "kicked twice");
                                let kick = reg.kicked(&inst.key()).await.unwrap().unwrap();
                                assert_eq!((kick.reason, kick.by), (reason, Some(p)));
                            }
                            let now: Vec<String> = reg.user_instances(1, "u").await.unwrap().into_iter().map(|i| i.instance_id).collect();
                            assert!(now.contains(&id), "the newest login survives");
                        }
                        Op::Logout(n) | Op::Disconnect(n) | Op::Resume(n) => {
                            let list = reg.user_instances(1, "u").await.unwrap();
                            let Some(inst) = list.get(n % list.len().max(1)).cloned() else { continue };
                            match op {
                                Op::Logout(_) => { reg.remove(&inst.key(), RemoveIf::Always).await.unwrap(); }
                                Op::Disconnect(_) => {
                                    if let Some(c) = inst.conn { reg.detach(&inst.key(), c, 5).await.unwrap(); }
                                }
                                _ => { reg.attach(&inst.key(), ConnRef { node: 1, conn: 1000 + n as u64 }, 0).await.unwrap(); }
                            }
                        }
                    }
                    reg.check_invariants(&pol).unwrap();
                }
            });
        }
    }

    #[test]
    fn reap_removes_disconnected_instances_after_the_grace_or_at_expiry() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let reg = MemoryRegistry::new(Users::new(Clock::system()));
            let pol = Policy {
                mode: Mode::Multi,
                web_instances: 10,
                instances_per_platform: 3,
            };
            let conn = |c| ConnRef { node: 1, conn: c };
            let online = instance(1, Platform::Web, None, Some(1));
            let dropped = instance(2, Platform::Web, None, Some(2));
            let mut expiring = instance(3, Platform::Web, None, Some(3));
            expiring.sig_expires_at = 100;
            for i in [&online, &dropped, &expiring] {
                reg.admit(i.clone(), &pol, 1000).await.unwrap();
            }
            assert!(
                reg.detach(&dropped.key(), conn(9), 97_000)
                    .await
                    .unwrap()
                    .is_none(),
                "another connection's"
            );
            reg.detach(&dropped.key(), conn(2), 97_000)
                .await
                .unwrap()
                .unwrap();
            reg.detach(&expiring.key(), conn(3), 100_000)
                .await
                .unwrap()
                .unwrap();
            // 100.999 s: the ticket (expiring at 100) is not expired yet; the grace (97 s + 5 s) is not over.
            assert!(reg.reap(100_999, 5_000).await.unwrap().is_empty());
            let ids = |v: Vec<Reaped>| {
                v.into_iter()
                    .map(|r| match r {
                        Reaped::Expired(i, _) => format!("expired {}", i.instance_id),
                        Reaped::GraceEnded(i) => format!("grace {}", i.instance_id),
                        Reaped::Disconnected(i, _) => format!("orphaned {}", i.instance_id),
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                ids(reg.reap(101_000, 5_000).await.unwrap()),
                vec!["expired i3".to_string()],
            );
            assert_eq!(
                ids(reg.reap(102_000, 5_000).await.unwrap()),
                vec!["grace i2".to_string()],
            );
            // A resumed instance is not reaped.
            let again = instance(4, Platform::Web, None, Some(4));
            reg.admit(again.clone(), &pol, 1000).await.unwrap();
            reg.detach(&again.key(), conn(4), 200_000)
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(
                reg.attach(&again.key(), conn(5), 0).await.unwrap(),
                Attach::Attached { .. }
            ));
            assert!(reg.reap(300_000, 5_000).await.unwrap().is_empty());
            assert_eq!(reg.user_instances(1, "u").await.unwrap().len(), 2);
            // An instance whose UserSig has expired is not attached: it stays where it is.
            let mut late = instance(5, Platform::Web, None, Some(6));
            late.sig_expires_at = 400;
            reg.admit(late.clone(), &pol, 1000).await.unwrap();
            assert!(matches!(
                reg.attach(&late.key(), conn(7), 401).await.unwrap(),
                Attach::Expired(i) if i.conn == Some(conn(6))
            ));
            assert_eq!(
                reg.get(&late.key()).await.unwrap().unwrap().conn,
                Some(conn(6))
            );
            assert!(matches!(
                reg.attach(&late.key(), conn(7), 400).await.unwrap(),
                Attach::Attached { previous: Some(p), .. } if p == conn(6)
            ));
        });
    }

    #[tokio::test(start_paused = true)]
    async fn every_change_of_a_user_is_numbered_in_order_even_across_a_dropped_entry() {
        let reg = MemoryRegistry::new(Users::new(Clock::following_tokio(1_000_000)));
        let pol = Policy {
            mode: Mode::Multi,
            web_instances: 10,
            instances_per_platform: 3,
        };
        let a = instance(1, Platform::Web, None, Some(1));
        let mut seqs = vec![reg.admit(a.clone(), &pol, 0).await.unwrap().seq];
        let (_, s) = reg
            .detach(&a.key(), ConnRef { node: 1, conn: 1 }, 1_000_000)
            .await
            .unwrap()
            .unwrap();
        seqs.push(s);
        seqs.push(
            reg.remove(&a.key(), RemoveIf::Always)
                .await
                .unwrap()
                .unwrap()
                .1,
        );
        // The entry is spent, but not dropped within the same millisecond...
        assert!(reg.reap(1_000_000, 60_000).await.unwrap().is_empty());
        seqs.push(reg.admit(a.clone(), &pol, 0).await.unwrap().seq);
        seqs.push(
            reg.remove_user(1, "u", KickReason::AdminKick, 0)
                .await
                .unwrap()
                .1,
        );
        // ...and once it is, the next change still numbers higher: it starts from a later time.
        tokio::time::advance(std::time::Duration::from_millis(5)).await;
        reg.reap(1_000_005, 60_000).await.unwrap();
        assert!(reg.users.is_empty());
        seqs.push(reg.admit(a, &pol, 0).await.unwrap().seq);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(seqs[0], 1_000_000 << 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_record_outlives_its_instances_while_the_cache_or_the_mark_needs_it() {
        // Noon UTC on some day.
        let users = Users::new(Clock::following_tokio(
            1_700_000_000_000 / 86_400_000 * 86_400_000 + 43_200_000,
        ));
        let reg = MemoryRegistry::new(users.clone());
        let a = instance(1, Platform::Web, None, None);
        reg.admit(a.clone(), &Policy::default(), 0).await.unwrap();
        let state = crate::store::accounts::LoginState {
            disabled: false,
            revoked_at: 0,
        };
        users.remember_login(1, "u", state);
        users.mark_active(1, "u", users.clock().now_secs(), || true);
        assert_eq!(users.len(), 1, "one record for the three");

        reg.remove(&a.key(), RemoveIf::Always)
            .await
            .unwrap()
            .unwrap();
        tokio::time::advance(std::time::Duration::from_millis(5)).await;
        let now = users.clock().now_ms();
        assert!(reg.reap(now, 60_000).await.unwrap().is_empty());
        assert!(reg.user_instances(1, "u").await.unwrap().is_empty());
        assert_eq!(users.login_state(1, "u"), Some(state), "the cache keeps it");

        tokio::time::advance(crate::registry::users::LOGIN_TTL).await;
        users.sweep();
        assert_eq!(users.login_state(1, "u"), None);
        assert!(users.is_marked(1, "u"), "today's mark keeps it");
        assert_eq!(users.len(), 1);

        tokio::time::advance(std::time::Duration::from_secs(86_400)).await;
        users.sweep();
        assert_eq!(users.len(), 0, "nothing left: the record is dropped");
    }
}
