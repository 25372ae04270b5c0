//! What the multi-terminal policy (PROTOCOL §5) decides: pure functions, no I/O.

use crate::model::{KickReason, Mode, Platform, Policy};

/// The platform classes of a mode: platforms in one class may not be online together.
pub fn class_of(mode: Mode, p: Platform) -> u8 {
    use Platform::*;
    match mode {
        Mode::Single => 0,
        Mode::Dual => u8::from(p == Web),
        Mode::Triple => match p {
            Android | Iphone | Ipad => 0,
            Windows | Mac | Linux => 1,
            Web => 2,
        },
        Mode::Multi => p as u8,
    }
}

impl Policy {
    /// How many instances platform `p` may hold.
    pub fn limit(&self, p: Platform) -> usize {
        usize::from(if p == Platform::Web {
            self.web_instances
        } else {
            self.instances_per_platform
        })
    }
}

/// What the policy needs to know of an existing instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot<'a> {
    pub platform: Platform,
    pub device_id: Option<&'a str>,
    /// Login order: smaller logged in earlier.
    pub seq: u64,
}

/// Applies PROTOCOL §5 to a user's current instances and a new login on `platform` (from `device_id`): returns
/// the indices into `existing` to kick, each once, with its reason. The new login always survives.
pub fn admit(
    policy: &Policy,
    existing: &[Slot<'_>],
    platform: Platform,
    device_id: Option<&str>,
) -> Vec<(usize, KickReason)> {
    let mut kicked: Vec<(usize, KickReason)> = Vec::new();
    let is_kicked = |kicked: &[(usize, KickReason)], i: usize| kicked.iter().any(|(k, _)| *k == i);
    // 1. The same device on the same platform is replaced.
    if let Some(dev) = device_id {
        for (i, s) in existing.iter().enumerate() {
            if s.platform == platform && s.device_id == Some(dev) {
                kicked.push((i, KickReason::SameDevice));
            }
        }
    }
    // 2. Other platforms of the same class leave.
    let class = class_of(policy.mode, platform);
    for (i, s) in existing.iter().enumerate() {
        if s.platform != platform
            && class_of(policy.mode, s.platform) == class
            && !is_kicked(&kicked, i)
        {
            kicked.push((i, KickReason::MultiTerminal));
        }
    }
    // 3. The oldest on this platform leave until the new login fits the limit.
    let mut on_platform: Vec<usize> = (0..existing.len())
        .filter(|&i| existing[i].platform == platform && !is_kicked(&kicked, i))
        .collect();
    on_platform.sort_by_key(|&i| existing[i].seq);
    let keep = policy.limit(platform).saturating_sub(1);
    let excess = on_platform.len().saturating_sub(keep);
    kicked.extend(
        on_platform
            .into_iter()
            .take(excess)
            .map(|i| (i, KickReason::MultiTerminal)),
    );
    kicked
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Platform::*;

    fn policy(mode: Mode, web: u8, per: u8) -> Policy {
        Policy {
            mode,
            web_instances: web,
            instances_per_platform: per,
        }
    }

    fn slots(list: &[(Platform, Option<&'static str>)]) -> Vec<Slot<'static>> {
        list.iter()
            .enumerate()
            .map(|(i, (p, d))| Slot {
                platform: *p,
                device_id: *d,
                seq: i as u64,
            })
            .collect()
    }

    fn run(
        pol: Policy,
        existing: &[(Platform, Option<&'static str>)],
        p: Platform,
        d: Option<&str>,
    ) -> Vec<(usize, KickReason)> {
        let mut k = admit(&pol, &slots(existing), p, d);
        k.sort();
        k
    }

    const MT: KickReason = KickReason::MultiTerminal;

    #[test]
    fn single_mode_keeps_one_platform() {
        let p = policy(Mode::Single, 1, 1);
        assert_eq!(
            run(p, &[(Android, None), (Web, None)], Windows, None),
            vec![(0, MT), (1, MT)]
        );
        assert_eq!(run(p, &[(Android, None)], Android, None), vec![(0, MT)]);
        assert_eq!(run(p, &[], Web, None), vec![]);
    }

    #[test]
    fn dual_mode_web_is_apart() {
        let p = policy(Mode::Dual, 1, 1);
        assert_eq!(
            run(p, &[(Android, None), (Web, None)], Iphone, None),
            vec![(0, MT)]
        );
        assert_eq!(
            run(p, &[(Android, None), (Web, None)], Web, None),
            vec![(1, MT)]
        );
        assert_eq!(run(p, &[(Linux, None)], Web, None), vec![]);
        assert_eq!(
            run(p, &[(Linux, None), (Mac, None)], Android, None),
            vec![(0, MT), (1, MT)]
        );
    }

    #[test]
    fn triple_mode_mobile_desktop_web() {
        let p = policy(Mode::Triple, 1, 1);
        let all = [(Android, None), (Windows, None), (Web, None)];
        assert_eq!(run(p, &all, Ipad, None), vec![(0, MT)]);
        assert_eq!(run(p, &all, Mac, None), vec![(1, MT)]);
        assert_eq!(run(p, &all, Linux, None), vec![(1, MT)]);
        assert_eq!(run(p, &all, Web, None), vec![(2, MT)]);
        assert_eq!(
            run(p, &[(Iphone, None), (Ipad, None)], Android, None),
            vec![(0, MT), (1, MT)]
        );
    }

    #[test]
    fn multi_mode_each_platform_alone() {
        let p = policy(Mode::Multi, 1, 1);
        let all: Vec<(Platform, Option<&str>)> = Platform::ALL.iter().map(|p| (*p, None)).collect();
        for (i, plat) in Platform::ALL.iter().enumerate() {
            assert_eq!(run(p, &all, *plat, None), vec![(i, MT)], "{plat}");
        }
        assert_eq!(run(p, &[(Android, None)], Iphone, None), vec![]);
    }

    #[test]
    fn per_platform_limits_kick_the_oldest() {
        for per in 1..=3u8 {
            let p = policy(Mode::Multi, 1, per);
            let existing = [(Android, None), (Android, None), (Android, None)];
            // With `per` allowed, a new login keeps the newest per-1 of the existing.
            let expected: Vec<(usize, KickReason)> =
                (0..(3 - (per as usize - 1))).map(|i| (i, MT)).collect();
            assert_eq!(run(p, &existing, Android, None), expected, "per = {per}");
        }
        for web in 1..=10u8 {
            let p = policy(Mode::Dual, web, 1);
            let existing: Vec<(Platform, Option<&str>)> = (0..10).map(|_| (Web, None)).collect();
            let kicked = run(p, &existing, Web, None);
            assert_eq!(kicked.len(), 10 - (web as usize - 1), "web = {web}");
            assert!(
                kicked
                    .iter()
                    .enumerate()
                    .all(|(n, (i, r))| *i == n && *r == MT),
                "oldest first"
            );
        }
    }

    #[test]
    fn oldest_is_by_login_order_not_position() {
        let p = policy(Mode::Multi, 2, 2);
        let existing = [
            Slot {
                platform: Web,
                device_id: None,
                seq: 9,
            },
            Slot {
                platform: Web,
                device_id: None,
                seq: 3,
            },
        ];
        assert_eq!(admit(&p, &existing, Web, None), vec![(1, MT)]);
    }

    #[test]
    fn same_device_replaces_that_device_only() {
        let p = policy(Mode::Multi, 1, 3);
        let existing = [
            (Android, Some("d1")),
            (Android, Some("d2")),
            (Iphone, Some("d1")),
        ];
        assert_eq!(
            run(p, &existing, Android, Some("d1")),
            vec![(0, KickReason::SameDevice)]
        );
        assert_eq!(run(p, &existing, Android, Some("d3")), vec![]);
        // Same device, but with the limit also reached: the device goes first, so nothing else is needed.
        let full = [
            (Android, Some("d1")),
            (Android, Some("d2")),
            (Android, Some("d3")),
        ];
        assert_eq!(
            run(p, &full, Android, Some("d3")),
            vec![(2, KickReason::SameDevice)]
        );
        // In dual mode the same device_id on another platform of the class is a multi_terminal kick.
        let dual = policy(Mode::Dual, 1, 1);
        assert_eq!(
            run(dual, &[(Iphone, Some("d1"))], Android, Some("d1")),
            vec![(0, MT)]
        );
    }

    #[test]
    fn reasons_and_codes() {
        assert_eq!(KickReason::MultiTerminal.code().number(), 6208);
        assert_eq!(KickReason::SameDevice.code().number(), 6208);
        assert_eq!(KickReason::AdminKick.code().number(), 6208);
        assert_eq!(KickReason::AdminKickRevoked.code().number(), 70052);
        assert_eq!(KickReason::AccountDeleted.code().number(), 70107);
        assert_eq!(KickReason::AccountDisabled.code().number(), 70051);
        assert_eq!(KickReason::AdminKickRevoked.as_str(), "admin_kick");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Login(Platform, Option<u8>),
        Logout(usize),
    }

    fn arb_platform() -> impl Strategy<Value = Platform> {
        (0..7usize).prop_map(|i| Platform::ALL[i])
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (arb_platform(), proptest::option::of(0..3u8)).prop_map(|(p, d)| Op::Login(p, d)),
            1 => (0..8usize).prop_map(Op::Logout),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (0..4usize, 1..=10u8, 1..=3u8).prop_map(|(m, web, per)| {
            policy(
                [Mode::Single, Mode::Dual, Mode::Triple, Mode::Multi][m],
                web,
                per,
            )
        })
    }

    /// The state the policy promises after every login.
    fn check_invariants(pol: &Policy, state: &[(u64, Platform, Option<String>)]) {
        for p in Platform::ALL {
            let n = state.iter().filter(|s| s.1 == p).count();
            assert!(n <= pol.limit(p), "{p}: {n} instances over the limit");
        }
        for a in state {
            for b in state {
                if a.0 != b.0 && class_of(pol.mode, a.1) == class_of(pol.mode, b.1) {
                    assert_eq!(a.1, b.1, "two platforms of one class are online together");
                }
                if a.0 != b.0 && a.1 == b.1 && a.2.is_some() {
                    assert_ne!(a.2, b.2, "one device holds two instances of a platform");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_sequences_keep_the_policy(pol in arb_policy(), ops in proptest::collection::vec(arb_op(), 1..60)) {
            // (seq, platform, device): disconnects do not change the policy's view, so only logins and logouts.
            let mut state: Vec<(u64, Platform, Option<String>)> = Vec::new();
            for (seq, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Login(p, d) => {
                        let dev = d.map(|d| format!("dev{d}"));
                        let view: Vec<Slot> = state.iter().map(|(s, p, d)| Slot { platform: *p, device_id: d.as_deref(), seq: *s }).collect();
                        let kicked = admit(&pol, &view, p, dev.as_deref());
                        let mut idx: Vec<usize> = kicked.iter().map(|k| k.0).collect();
                        idx.sort_unstable();
                        idx.dedup();
                        prop_assert_eq!(idx.len(), kicked.len(), "an instance is kicked twice");
                        // The newest login's own class and platform decide every kick.
                        for (i, r) in &kicked {
                            let victim = &state[*i];
                            prop_assert_eq!(class_of(pol.mode, victim.1), class_of(pol.mode, p));
                            if *r == KickReason::SameDevice {
                                prop_assert_eq!(victim.2.as_deref(), dev.as_deref());
                            }
                        }
                        for i in idx.into_iter().rev() {
                            state.remove(i);
                        }
                        state.push((seq as u64, p, dev));
                        check_invariants(&pol, &state);
                        prop_assert!(state.iter().any(|s| s.0 == seq as u64), "the newest login survives");
                    }
                    Op::Logout(i) => {
                        if i < state.len() {
                            state.remove(i);
                        }
                    }
                }
            }
        }
    }
}
