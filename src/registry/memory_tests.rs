use super::*;
use crate::model::Mode;
use crate::model::Platform;
use crate::runtime::clock::Clock;
use proptest::prelude::*;
use std::collections::HashSet;

fn instance(n: usize, p: Platform, device: Option<u8>, conn: Option<u64>) -> Instance {
    Instance {
        sdkappid: 1,
        user_id: crate::model::UserId::parse("u").unwrap(),
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
                            _ => { reg.attach(&inst.key(), ConnRef { node: 1, conn: 1000 + n as u64 }, 0, Take::Always).await.unwrap(); }
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
            reg.attach(&again.key(), conn(5), 0, Take::IfNewer(0))
                .await
                .unwrap(),
            Attach::Attached { .. }
        ));
        assert!(reg.reap(300_000, 5_000).await.unwrap().is_empty());
        assert_eq!(reg.user_instances(1, "u").await.unwrap().len(), 2);
        // An instance whose UserSig has expired is not attached: it stays where it is.
        let mut late = instance(5, Platform::Web, None, Some(6));
        late.sig_expires_at = 400;
        reg.admit(late.clone(), &pol, 1000).await.unwrap();
        assert!(matches!(
            reg.attach(&late.key(), conn(7), 401, Take::Always).await.unwrap(),
            Attach::Expired(i) if i.conn == Some(conn(6))
        ));
        assert_eq!(
            reg.get(&late.key()).await.unwrap().unwrap().conn,
            Some(conn(6))
        );
        // A node checking a connection leaves it on the connection that attached it since that one's last
        // write, and takes it back only from one the record says is older (a write Redis lost).
        assert!(matches!(
            reg.attach(&late.key(), conn(7), 400, Take::IfNewer(0)).await.unwrap(),
            Attach::Elsewhere(p) if p == conn(6)
        ));
        assert_eq!(
            reg.get(&late.key()).await.unwrap().unwrap().conn,
            Some(conn(6))
        );
        assert!(matches!(
            reg.attach(&late.key(), conn(7), 400, Take::IfNewer(u64::MAX)).await.unwrap(),
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
