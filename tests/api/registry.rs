//! The Redis registry against the memory registry: the same random sequences of logins, logouts, disconnections,
//! resumes, kicks and reaps, under every policy mode, must kick the same instances and leave the same state; on
//! one Redis and on a Redis Cluster.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use imlogin::model::Platform;
use imlogin::model::{ConnRef, Instance, Kick};
use imlogin::model::{KickReason, Mode, Policy};
use imlogin::registry::memory::MemoryRegistry;
use imlogin::registry::redis::{connect, connect_cluster, Layout, RedisConn, RedisRegistry};
use imlogin::registry::users::Users;
use imlogin::registry::{Attach, Registry, RemoveIf, Take};
use imlogin::runtime::clock::Clock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::redis_cluster::Redis;

const USERS: [&str; 3] = ["ann", "bob|x:y", "cy"];

pub fn instance(
    n: usize,
    user: &str,
    platform: Platform,
    device: Option<u8>,
    conn: bool,
) -> Instance {
    Instance {
        sdkappid: 7,
        user_id: user.parse().unwrap(),
        platform,
        instance_id: format!("{n:024x}"),
        device_id: device.map(|d| format!("dev|{d}")),
        login_at_ms: n as i64,
        seq: 0,
        sig_expires_at: 4_000_000_000,
        conn: conn.then_some(ConnRef {
            node: 0xfeed,
            conn: n as u64,
        }),
        disconnected_at_ms: (!conn).then_some(1),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    }
}

/// A Redis registry of node 0xfeed in a namespace of its own, with the given reconnect grace.
fn fresh_registry(conn: &RedisConn, grace: Duration) -> (RedisRegistry, String) {
    let ns = format!("t{:016x}", rand::random::<u64>());
    let layout = match conn {
        RedisConn::Cluster(_) => Layout::cluster(&ns).unwrap(),
        RedisConn::One(_) => Layout::single(&ns),
    };
    let r = RedisRegistry::new(
        conn.clone(),
        layout,
        0xfeed,
        grace,
        Duration::from_secs(10),
        Clock::system(),
    );
    (r, ns)
}

/// For the reaper's tests: a connection, a registry with a grace of [`GRACE_MS`] in a namespace of its own, and
/// the multi mode with `web` instances on the web and 3 on other platforms.
async fn reaper_setup(web: u8) -> (RedisConn, RedisRegistry, String, Policy) {
    reaper_setup_on(Redis::One, web).await
}

/// A connection to the machine's Redis or to the tests' Redis Cluster.
async fn connect_to(redis: Redis) -> RedisConn {
    match redis {
        Redis::One => connect("redis://127.0.0.1:6379", Duration::from_secs(2)).await,
        Redis::Cluster => {
            let seeds = crate::redis_cluster::shared_async().await.seeds();
            connect_cluster(&seeds, Duration::from_secs(2)).await
        }
    }
    .unwrap()
}

async fn reaper_setup_on(redis: Redis, web: u8) -> (RedisConn, RedisRegistry, String, Policy) {
    let conn = connect_to(redis).await;
    let (r, ns) = fresh_registry(&conn, Duration::from_millis(GRACE_MS as u64));
    let policy = Policy {
        mode: Mode::Multi,
        web_instances: web,
        instances_per_platform: 3,
    };
    (conn, r, ns, policy)
}

const GRACE_MS: i64 = 5_000;

/// Deletes a key the test wrote.
async fn del(conn: &RedisConn, key: &str) {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
}

/// What a user's instances look like, comparable across backends.
async fn view(r: &dyn Registry, user: &str) -> Vec<(String, Platform, Option<String>, bool)> {
    let mut v: Vec<_> = r
        .user_instances(7, user)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.instance_id, i.platform, i.device_id, i.conn.is_some()))
        .collect();
    v.sort();
    v
}

crate::on_one_redis_and_a_cluster!(
    the_ends_of_many_users_go_in_one_batch_and_each_is_detached_once,
    listing_an_app_or_a_node_scans_every_master_and_only_its_own_keys,
    random_sequences_do_the_same_on_redis_as_in_memory,
    the_reaper_removes_what_is_due_and_numbers_changes_in_order,
);

async fn random_sequences_do_the_same_on_redis_as_in_memory(redis: Redis) {
    let conn = connect_to(redis).await;
    let modes = [Mode::Single, Mode::Dual, Mode::Triple, Mode::Multi];
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let policy = Policy {
            mode: modes[seed as usize % 4],
            web_instances: rng.random_range(1..=3),
            instances_per_platform: rng.random_range(1..=2),
        };
        let (registry, ns) = fresh_registry(&conn, Duration::from_secs(60));
        let redis: Arc<dyn Registry> = Arc::new(registry);
        let memory: Arc<dyn Registry> = Arc::new(MemoryRegistry::new(Users::new(Clock::system())));
        let mut created = 0;
        // Every instance ever kicked: at the end both must remember the same kicks (the newest 16 or fewer per
        // user, trimmed alike).
        let mut kicked = Vec::new();
        for step in 0..120 {
            let user = USERS[rng.random_range(0..USERS.len())];
            let existing = memory.user_instances(7, user).await.unwrap();
            let pick = (!existing.is_empty())
                .then(|| existing[rng.random_range(0..existing.len())].clone());
            let what = rng.random_range(0..10);
            let ctx = format!("seed {seed} step {step} {policy:?}");
            match (what, pick) {
                (0..=4, _) | (_, None) => {
                    created += 1;
                    let p = Platform::ALL[rng.random_range(0..7)];
                    let device = rng.random_bool(0.3).then(|| rng.random_range(0..2));
                    let new = instance(created, user, p, device, rng.random_bool(0.8));
                    let by = Some(new.platform);
                    let m = memory.admit(new.clone(), &policy, 60_000).await.unwrap();
                    let r = redis.admit(new, &policy, 60_000).await.unwrap();
                    let ids = |k: &[(Instance, KickReason)]| {
                        let mut v: Vec<(String, KickReason)> =
                            k.iter().map(|(i, r)| (i.instance_id.clone(), *r)).collect();
                        v.sort();
                        v
                    };
                    assert_eq!(ids(&m.kicked), ids(&r.kicked), "{ctx}");
                    kicked.extend(r.kicked.iter().map(|(i, _)| i.key()));
                    for (i, reason) in &r.kicked {
                        let kick = Kick {
                            reason: *reason,
                            by,
                        };
                        assert_eq!(redis.kicked(&i.key()).await.unwrap(), Some(kick), "{ctx}");
                    }
                }
                (5, Some(i)) => {
                    let m = memory.remove(&i.key(), RemoveIf::Always).await.unwrap();
                    let r = redis.remove(&i.key(), RemoveIf::Always).await.unwrap();
                    assert_eq!(m.is_some(), r.is_some(), "{ctx}");
                }
                (6, Some(i)) if rng.random_bool(0.5) => {
                    if let Some(c) = i.conn {
                        let m = memory.detach(&i.key(), c, 5).await.unwrap();
                        let r = redis.detach(&i.key(), c, 5).await.unwrap();
                        assert_eq!(m.is_some(), r.is_some(), "{ctx}");
                    }
                }
                (6, Some(_)) => {
                    // Connection ends taken together (the cluster's batched detach): each instance of the user,
                    // by its own connection or by one it is no longer attached to.
                    let ended: Vec<_> = existing
                        .iter()
                        .map(|i| {
                            let stale = ConnRef {
                                node: 0xfeed,
                                conn: 99_999,
                            };
                            let c = i.conn.filter(|_| rng.random_bool(0.7)).unwrap_or(stale);
                            (i.key(), c)
                        })
                        .collect();
                    let m = memory.detach_many(&ended, 5).await.unwrap();
                    let r = redis.detach_many(&ended, 5).await.unwrap();
                    let done = |v: &[Option<(Instance, u64)>]| {
                        v.iter()
                            .map(|x| x.as_ref().map(|(i, _)| i.instance_id.clone()))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(done(&m), done(&r), "{ctx}");
                }
                (7, Some(i)) => {
                    // A new connection (a resume), or, every other time, the one it is attached to (a node
                    // checking its connections, which changes nothing).
                    let c = match i.conn {
                        Some(c) if step % 2 == 0 => c,
                        _ => ConnRef {
                            node: 0xfeed,
                            conn: 10_000 + step,
                        },
                    };
                    // A resume takes it; a node checking a connection leaves it on another connection unless
                    // the record is older than that connection's last write.
                    let take = match rng.random_range(0..3) {
                        0 => Take::Always,
                        1 => Take::IfNewer(0),
                        _ => Take::IfNewer(u64::MAX),
                    };
                    let m = memory.attach(&i.key(), c, 0, take).await.unwrap();
                    let r = redis.attach(&i.key(), c, 0, take).await.unwrap();
                    let outcome = |a: &Attach| match a {
                        Attach::Attached { previous, .. } => (1, *previous),
                        Attach::Elsewhere(on) => (2, Some(*on)),
                        Attach::Expired(_) => (3, None),
                        Attach::Gone => (4, None),
                    };
                    assert_eq!(outcome(&m), outcome(&r), "{ctx}");
                    // Every attachment is at least 0: a check claiming 0 never takes it from another connection.
                    if take == Take::IfNewer(0) && i.conn.is_some_and(|o| o != c) {
                        assert_eq!(outcome(&r).0, 2, "{ctx}");
                    }
                    // Attached again to the same connection: neither backend counts a change.
                    let seq = |a: &Attach| match a {
                        Attach::Attached { seq, .. } => Some(*seq),
                        _ => None,
                    };
                    for reg in [&memory, &redis] {
                        let before = seq(&reg.attach(&i.key(), c, 0, take).await.unwrap());
                        let again =
                            seq(&reg.attach(&i.key(), c, 0, Take::IfNewer(0)).await.unwrap());
                        assert_eq!(before, again, "{ctx}");
                    }
                }
                (8, Some(i)) => {
                    let m = memory
                        .kick(&i.key(), KickReason::AdminKick, 60_000)
                        .await
                        .unwrap();
                    let r = redis
                        .kick(&i.key(), KickReason::AdminKick, 60_000)
                        .await
                        .unwrap();
                    assert_eq!(
                        m.map(|x| x.0.instance_id),
                        r.map(|x| x.0.instance_id),
                        "{ctx}"
                    );
                    assert_eq!(redis.kicked(&i.key()).await.unwrap(), Some(ADMIN_KICK));
                    kicked.push(i.key());
                }
                (_, Some(i)) => {
                    let (m, _) = memory
                        .remove_user(7, &i.user_id, KickReason::AccountDisabled, 60_000)
                        .await
                        .unwrap();
                    let (r, _) = redis
                        .remove_user(7, &i.user_id, KickReason::AccountDisabled, 60_000)
                        .await
                        .unwrap();
                    assert_eq!(m.len(), r.len(), "{ctx}");
                    kicked.extend(r.iter().map(Instance::key));
                }
            }
            for u in USERS {
                assert_eq!(
                    view(&*memory, u).await,
                    view(&*redis, u).await,
                    "{ctx} user {u}"
                );
            }
        }
        for k in &kicked {
            assert_eq!(
                memory.kicked(k).await.unwrap(),
                redis.kicked(k).await.unwrap(),
                "seed {seed}: the kick of {}",
                k.instance_id
            );
        }
        // Every instance as stored reads back whole.
        for u in USERS {
            for (m, r) in memory
                .user_instances(7, u)
                .await
                .unwrap()
                .iter()
                .zip(redis.user_instances(7, u).await.unwrap().iter())
            {
                assert_eq!(
                    (&m.ip, &m.device_id, m.sig_expires_at),
                    (&r.ip, &r.device_id, r.sig_expires_at)
                );
            }
            // An instance's attachment number (`a:ID`) goes with the instance.
            let layout = match &conn {
                RedisConn::Cluster(_) => Layout::cluster(&ns).unwrap(),
                RedisConn::One(_) => Layout::single(&ns),
            };
            let key = format!("{}:u:7:{u}", layout.prefix(7, u));
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(&key)
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            for f in fields.iter().filter_map(|f| f.strip_prefix("a:")) {
                assert!(
                    fields.contains(&format!("i:{f}")),
                    "seed {seed}: {fields:?}"
                );
            }
        }
    }
}

async fn the_reaper_removes_what_is_due_and_numbers_changes_in_order(redis: Redis) {
    let (_conn, r, _, policy) = reaper_setup_on(redis, 10).await;
    let grace = GRACE_MS;
    let now = imlogin::runtime::clock::unix_now() * 1000;
    let mut expiring = instance(1, "ann", Platform::Web, None, true);
    expiring.sig_expires_at = now / 1000 + 2;
    let dropped = instance(2, "ann", Platform::Web, None, true);
    let kept = instance(3, "ann", Platform::Web, None, true);
    let mut seqs = Vec::new();
    for i in [&expiring, &dropped, &kept] {
        seqs.push(r.admit(i.clone(), &policy, 1000).await.unwrap().seq);
    }
    for i in [&expiring, &dropped] {
        seqs.push(
            r.detach(&i.key(), i.conn.unwrap(), now)
                .await
                .unwrap()
                .unwrap()
                .1,
        );
    }
    assert!(r.reap(now + 1000, grace).await.unwrap().is_empty());
    let at_expiry = r.reap((now / 1000 + 3) * 1000, grace).await.unwrap();
    assert_eq!(at_expiry.len(), 1);
    assert!(
        matches!(&at_expiry[0], imlogin::registry::Reaped::Expired(i, s) if i.instance_id == expiring.instance_id && { seqs.push(*s); true })
    );
    let after_grace = r.reap(now + grace, grace).await.unwrap();
    assert!(
        matches!(&after_grace[..], [imlogin::registry::Reaped::GraceEnded(i)] if i.instance_id == dropped.instance_id)
    );
    assert_eq!(view(&r, "ann").await.len(), 1);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

/// `scripts/redis-script-loop.sh` (a benchmark of the admission and detach scripts inside Redis) still runs the
/// registry's scripts as they are, and leaves nothing behind.
#[test]
fn the_script_loop_benchmark_runs_the_current_scripts() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("scripts/redis-script-loop.sh"))
        .args(["200", "20"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ns per login"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = std::process::Command::new("redis-cli")
        .args(["--scan", "--pattern", "imlogin-loop:*"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
}

/// Kick records written before their count was kept (no field `n`) are counted once, so the bound still holds
/// after an upgrade: a kick that finds 16 records trims them to 7 before adding its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_records_without_a_count_are_counted_once() {
    let (conn, r, key) = ann_on_one_redis().await;
    let policy = ROOMY;
    let old: String = (0..14)
        .map(|i| format!("{i:024x},2,ffffffffffff;"))
        .collect();
    hset(&conn, &key, "k", &old).await;
    let mut kicked = Vec::new();
    for n in 100..103 {
        let i = instance(n, "ann", Platform::Web, None, true);
        r.admit(i.clone(), &policy, 60_000).await.unwrap();
        r.kick(&i.key(), KickReason::AdminKick, 60_000)
            .await
            .unwrap()
            .unwrap();
        kicked.push(i);
    }
    // 14 old + 1 = 15, + 1 = 16; the next finds the bound reached: the oldest go, leaving 7, then it is added.
    assert_eq!(hget(&conn, &key, "n").await.as_deref(), Some("8"));
    let k = hget(&conn, &key, "k").await.unwrap();
    assert_eq!(k.matches(';').count(), 8, "{k}");
    for i in &kicked {
        assert_eq!(r.kicked(&i.key()).await.unwrap(), Some(ADMIN_KICK));
    }
    del(&conn, &key).await;
}

/// An instance's attachment number left behind by an earlier version (whose removals do not know it) goes at the
/// user's next login; one whose instance is there stays.
#[tokio::test]
async fn attachment_numbers_of_instances_gone_are_removed_at_the_next_login() {
    let (conn, r, key) = ann_on_one_redis().await;
    let policy = ROOMY;
    let kept = instance(1, "ann", Platform::Web, None, true);
    r.admit(kept.clone(), &policy, 60_000).await.unwrap();
    let again = ConnRef { node: 9, conn: 9 };
    r.attach(&kept.key(), again, 0, Take::Always).await.unwrap();
    hset(&conn, &key, "a:0123456789abcdef01234567", "1").await;
    r.admit(
        instance(2, "ann", Platform::Android, None, true),
        &policy,
        60_000,
    )
    .await
    .unwrap();
    assert_eq!(hget(&conn, &key, "a:0123456789abcdef01234567").await, None);
    let kept_mark = format!("a:{}", kept.instance_id);
    assert!(hget(&conn, &key, &kept_mark).await.is_some());
    del(&conn, &key).await;
}

/// A connection to the machine's Redis, a registry in a namespace of its own, and the key of its user `ann`
/// (app 7), whose record the tests below write as an earlier version would have.
async fn ann_on_one_redis() -> (RedisConn, RedisRegistry, String) {
    let conn = connect("redis://127.0.0.1:6379", Duration::from_secs(2))
        .await
        .unwrap();
    let (r, ns) = fresh_registry(&conn, Duration::from_secs(60));
    (conn, r, format!("{ns}:u:7:ann"))
}

/// Room for ten instances on every platform: nobody is kicked by the policy.
const ROOMY: Policy = Policy {
    mode: Mode::Multi,
    web_instances: 10,
    instances_per_platform: 10,
};

/// A kick by an admin, as remembered: no kicker's platform.
const ADMIN_KICK: Kick = Kick {
    reason: KickReason::AdminKick,
    by: None,
};

/// Kick records stay readable across a rolling upgrade both ways: those of an earlier version (`ID,reason,until;`)
/// read as kicks by no known platform, and a policy kick now adds the kicker's platform as a fourth field after
/// the three an earlier version reads, leaving the records before it as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_records_of_an_earlier_version_read_and_new_ones_keep_their_first_fields() {
    let (conn, r, key) = ann_on_one_redis().await;
    let id = |n: usize| format!("{n:024x}");
    // Two records as an earlier version wrote them (a policy kick, reason 0; an admin's, 2), and one whose
    // kicker's platform this version does not know.
    let old = format!(
        "{},0,ffffffffffff;{},2,ffffffffffff;{},0,ffffffffffff,9;",
        id(1),
        id(2),
        id(3)
    );
    hset(&conn, &key, "k", &old).await;
    let read = |n: usize| instance(n, "ann", Platform::Web, None, true);
    let unknown_kicker = Kick {
        reason: KickReason::MultiTerminal,
        by: None,
    };
    assert_eq!(
        r.kicked(&read(1).key()).await.unwrap(),
        Some(unknown_kicker)
    );
    assert_eq!(r.kicked(&read(2).key()).await.unwrap(), Some(ADMIN_KICK));
    assert_eq!(
        r.kicked(&read(3).key()).await.unwrap(),
        Some(unknown_kicker)
    );
    // A new web login displaces an Android one (single mode: one platform at a time).
    let single = Policy {
        mode: Mode::Single,
        web_instances: 1,
        instances_per_platform: 1,
    };
    let android = instance(10, "ann", Platform::Android, None, true);
    r.admit(android.clone(), &single, 60_000).await.unwrap();
    let web = instance(11, "ann", Platform::Web, None, true);
    let kicked = r.admit(web, &single, 60_000).await.unwrap().kicked;
    assert_eq!(kicked.len(), 1);
    let by_web = Kick {
        reason: KickReason::MultiTerminal,
        by: Some(Platform::Web),
    };
    assert_eq!(r.kicked(&android.key()).await.unwrap(), Some(by_web));
    let k = hget(&conn, &key, "k").await.unwrap();
    let (before, added) = k.split_at(old.len());
    assert_eq!(before, old, "the earlier records are left as they were");
    let fields: Vec<&str> = added.trim_end_matches(';').split(',').collect();
    assert_eq!(fields.len(), 4, "{added}");
    assert_eq!(fields[0], android.instance_id);
    assert_eq!(fields[1], KickReason::MultiTerminal.index().to_string());
    assert!(u64::from_str_radix(fields[2], 16).is_ok(), "{added}");
    assert_eq!(fields[3], Platform::Web.index().to_string());
    del(&conn, &key).await;
}

/// A field of a user's hash, read directly.
/// Writes a field of a user's key as an earlier version would have left it.
async fn hset(conn: &RedisConn, key: &str, field: &str, value: &str) {
    redis::cmd("HSET")
        .arg(key)
        .arg(field)
        .arg(value)
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
}

async fn hget(conn: &RedisConn, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

/// The users in `NS:due` and their scores.
async fn due_index(conn: &RedisConn, ns: &str) -> Vec<(String, i64)> {
    redis::cmd("ZRANGE")
        .arg(format!("{ns}:due"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

/// A user who disconnects again and again is in the index of due users once, at its first instance's due time
/// (`r` says it, so later disconnections write no index); the reaper takes what is due, puts the user back for
/// the next, and forgets it when none is left. The key's expiry is written once while it covers the logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_due_once_however_often_it_disconnects() {
    let (conn, r, ns, policy) = reaper_setup(3).await;
    let grace = GRACE_MS;
    let key = format!("{ns}:u:7:bob|x:y");
    let now = imlogin::runtime::clock::unix_now() * 1000;
    let mut expiry = None;
    // Ten logins of one user, each disconnected a second after the one before; the web keeps the last three.
    for n in 0..10 {
        let i = instance(n, "bob|x:y", Platform::Web, None, true);
        r.admit(i.clone(), &policy, 1000).await.unwrap();
        r.detach(&i.key(), i.conn.unwrap(), now + n as i64 * 1000)
            .await
            .unwrap()
            .unwrap();
        let e = hget(&conn, &key, "e").await.unwrap();
        assert_eq!(
            *expiry.get_or_insert(e.clone()),
            e,
            "the expiry was rewritten"
        );
    }
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(
        Some(pexpiretime),
        i64::from_str_radix(&expiry.unwrap(), 16).ok()
    );
    assert!(pexpiretime >= 4_000_000_000_000 + grace);
    // In the index once, due when the first (long kicked) instance's grace would have ended.
    let member = "7:bob|x:y".to_string();
    assert_eq!(due_index(&conn, &ns).await, [(member.clone(), now + grace)]);
    assert_eq!(
        hget(&conn, &key, "r").await,
        Some(format!("{:x}", now + grace))
    );
    // Then the reaper finds nothing due (instance 0 was kicked), and puts the user back for instance 7's end.
    assert!(r.reap(now + grace, grace).await.unwrap().is_empty());
    assert_eq!(
        due_index(&conn, &ns).await,
        [(member.clone(), now + 7000 + grace)]
    );
    let reaped = r.reap(now + 8000 + grace, grace).await.unwrap();
    let mut ids: Vec<_> = reaped
        .iter()
        .map(|x| match x {
            imlogin::registry::Reaped::GraceEnded(i) => i.instance_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [format!("{:024x}", 7), format!("{:024x}", 8)]);
    assert_eq!(due_index(&conn, &ns).await, [(member, now + 9000 + grace)]);
    assert_eq!(r.reap(now + 9000 + grace, grace).await.unwrap().len(), 1);
    assert!(due_index(&conn, &ns).await.is_empty());
    assert_eq!(hget(&conn, &key, "r").await, None);
    assert!(view(&r, "bob|x:y").await.is_empty());
    del(&conn, &key).await;
}

/// An earlier version indexed each disconnected instance in `NS:reap` (APP:ID:USER); the reaper still takes
/// those entries, so a cluster upgraded node by node frees what the old nodes left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_the_earlier_index_are_still_reaped() {
    let (conn, r, ns, policy) = reaper_setup(3).await;
    let grace = GRACE_MS;
    let now = imlogin::runtime::clock::unix_now() * 1000;
    let i = instance(1, "bob|x:y", Platform::Web, None, true);
    r.admit(i.clone(), &policy, 1000).await.unwrap();
    r.detach(&i.key(), i.conn.unwrap(), now)
        .await
        .unwrap()
        .unwrap();
    // As an old node would have left it: the instance in the old index only.
    let key = format!("{ns}:u:7:bob|x:y");
    redis::pipe()
        .cmd("DEL")
        .arg(format!("{ns}:due"))
        .cmd("HDEL")
        .arg(&key)
        .arg("r")
        .cmd("ZADD")
        .arg(format!("{ns}:reap"))
        .arg(now + grace)
        .arg(format!("7:{}:bob|x:y", i.instance_id))
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
    assert!(r.reap(now + grace - 1, grace).await.unwrap().is_empty());
    let reaped = r.reap(now + grace, grace).await.unwrap();
    assert!(
        matches!(&reaped[..], [imlogin::registry::Reaped::GraceEnded(x)] if x.instance_id == i.instance_id),
        "{reaped:?}"
    );
    let left: i64 = redis::cmd("EXISTS")
        .arg(format!("{ns}:reap"))
        .arg(format!("{ns}:due"))
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(left, 0);
    del(&conn, &key).await;
}

/// Connection ends of many users at once (on a cluster: users of every master, in one call per master): each
/// instance is marked disconnected, once, and a second batch changes nothing.
async fn the_ends_of_many_users_go_in_one_batch_and_each_is_detached_once(redis: Redis) {
    let conn = connect_to(redis).await;
    let (r, _ns) = fresh_registry(&conn, Duration::from_secs(30));
    let policy = Policy {
        mode: Mode::Multi,
        web_instances: 1,
        instances_per_platform: 1,
    };
    let users: Vec<String> = (0..200).map(|i| format!("many{i}")).collect();
    let mut ended = Vec::new();
    for (n, u) in users.iter().enumerate() {
        let i = instance(n, u, Platform::Web, None, true);
        r.admit(i.clone(), &policy, 60_000).await.unwrap();
        ended.push((i.key(), i.conn.unwrap()));
    }
    let now = imlogin::runtime::clock::unix_now() * 1000;
    let first = r.detach_many(&ended, now).await.unwrap();
    assert!(
        first.iter().all(Option::is_some),
        "every instance was attached"
    );
    for (u, (key, _)) in users.iter().zip(&ended) {
        let got = r.user_instances(7, u).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].instance_id, key.instance_id);
        assert!(got[0].conn.is_none(), "{u} is disconnected");
    }
    let again = r.detach_many(&ended, now + 1).await.unwrap();
    assert!(again.iter().all(Option::is_none), "nothing left to detach");
}

/// The listings that scan (an app's online users, a node's instances) visit every master of a cluster, keep to
/// their app, and pass over a key of another kind where a user's would be (a Redis shared with others).
async fn listing_an_app_or_a_node_scans_every_master_and_only_its_own_keys(redis: Redis) {
    let conn = connect_to(redis).await;
    let (r, ns) = fresh_registry(&conn, Duration::from_secs(30));
    let layout = match &conn {
        RedisConn::Cluster(_) => Layout::cluster(&ns).unwrap(),
        RedisConn::One(_) => Layout::single(&ns),
    };
    let policy = Policy {
        mode: Mode::Multi,
        web_instances: 1,
        instances_per_platform: 1,
    };
    for n in 0..90 {
        let mut i = instance(n, &format!("lister{n}"), Platform::Web, None, true);
        if n >= 60 {
            i.sdkappid = 8;
        }
        r.admit(i, &policy, 60_000).await.unwrap();
    }
    let stray = format!("{}:u:7:stray", layout.prefix(7, "stray"));
    redis::cmd("SET")
        .arg(&stray)
        .arg("not a user")
        .query_async::<()>(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(r.app_instances(7).await.unwrap().len(), 60);
    assert_eq!(r.app_instances(8).await.unwrap().len(), 30);
    assert_eq!(r.app_instances(9).await.unwrap().len(), 0);
    assert_eq!(r.node_instances().await.unwrap().len(), 90);
    del(&conn, &stray).await;
}
