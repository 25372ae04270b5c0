//! A Redis Cluster master killed with SIGKILL during a login storm (docs/operations.md, "Redis Cluster"):
//! logins on the other masters' slots never stop; those on its slots answer 70169 until its replica is promoted,
//! then succeed, within 10 s of its death; no imlogin node restarts, and the clients logged in before stay
//! logged in. And what a failover can lose (the writes its replica had not received): an instance a live
//! connection holds is put back, unless the user changed since.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use imlogin::client::{Client, ClientError, ClientEvent};
use imlogin::registry::redis::Layout;

use crate::cluster::{kicked, random_ns, Cluster, PrivateRedis};
use crate::helpers::{eventually, params, APP};
use crate::redis_cluster::{cli, cli_atomically, move_slot_of, LocalRedisCluster};

/// One login of the storm.
struct Attempt {
    on_victim: bool,
    started: Instant,
    ended: Instant,
    /// `None` if it succeeded, else the error code (0: no code, such as a timeout).
    failed: Option<u32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_in_a_login_storm_stops_only_its_slots_until_its_replica_takes_over() {
    let mut redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    let cluster = Cluster::start_on_cluster(&redis, 2, &[]).await;
    let layout = Layout::cluster(&cluster.ns).unwrap();
    // The master of the keys of the whole cluster (node liveness, node numbers): the hardest one to lose.
    let victim = redis.master_of(&layout.global("nodes"));
    let users: Vec<String> = (0..48).map(|i| format!("storm{i}")).collect();
    let keys: Vec<String> = users
        .iter()
        .map(|u| format!("{}:u:{APP}:{u}", layout.prefix(APP, u)))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let masters = redis.masters_of(&keys);
    let on_victim: Vec<bool> = masters.iter().map(|&m| m == victim).collect();
    assert!(on_victim.iter().any(|&v| v) && on_victim.iter().any(|&v| !v));

    // Clients logged in before the failover, on every master's slots, that stay connected through it.
    let mut steady: Vec<Client> = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let c = cluster.connect(i % 2).await;
        c.login(&params(u, "android")).await.unwrap();
        steady.push(c);
    }

    let log = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let storm: Vec<_> = users
        .iter()
        .zip(&on_victim)
        .enumerate()
        .map(|(i, (u, &on_victim))| {
            let (ws, u, log, stop) = (cluster.ws(i % 2), u.clone(), log.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let login = async {
                        let c = Client::connect(&ws).await?;
                        c.login(&params(&u, "web")).await.map(drop)
                    };
                    let failed = match tokio::time::timeout(Duration::from_secs(15), login).await {
                        Ok(Ok(())) => None,
                        Ok(Err(ClientError::Server { code, .. })) => Some(code),
                        Ok(Err(_)) | Err(_) => Some(0),
                    };
                    let ended = Instant::now();
                    log.lock().unwrap().push(Attempt {
                        on_victim,
                        started,
                        ended,
                        failed,
                    });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = redis.kill(victim);
    // Until logins on the victim's slots have succeeded for two seconds, or 20 s.
    let deadline = killed + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let recovered_at = log
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.on_victim && a.started > killed && a.failed.is_none())
            .map(|a| a.ended)
            .min();
        match recovered_at {
            Some(t) if t.elapsed() > Duration::from_secs(2) => break,
            _ if Instant::now() > deadline => break,
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    join_all(storm).await;

    let log = std::mem::take(&mut *log.lock().unwrap());
    let others: Vec<&Attempt> = log.iter().filter(|a| !a.on_victim).collect();
    let failed: Vec<_> = others
        .iter()
        .filter_map(|a| {
            a.failed
                .map(|c| (c, a.started.saturating_duration_since(killed)))
        })
        .collect();
    let warnings = || {
        let lines: Vec<String> = cluster
            .nodes
            .iter()
            .flat_map(|n| n.log().lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| !l.contains("\"INFO\"") && !l.contains("registry unreachable"))
            .collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    assert!(
        failed.is_empty(),
        "logins on the other masters' slots failed (code, since the kill): {:?} …\n{}",
        &failed[..failed.len().min(10)],
        warnings()
    );
    assert!(others
        .iter()
        .any(|a| a.started > killed + Duration::from_secs(1)));
    let victims: Vec<&Attempt> = log.iter().filter(|a| a.on_victim).collect();
    for a in &victims {
        assert!(
            matches!(a.failed, None | Some(70169)),
            "a login on the failed master's slots answered {:?}",
            a.failed
        );
    }
    let last_failure = victims
        .iter()
        .filter(|a| a.failed.is_some())
        .map(|a| a.ended)
        .max();
    let recovered = victims
        .iter()
        .filter(|a| a.failed.is_none() && Some(a.started) > last_failure.max(Some(killed)))
        .map(|a| a.ended)
        .min()
        .expect("logins on the failed master's slots succeed again");
    let recovery = recovered - killed;
    eprintln!(
        "failover: logins on the failed master's slots succeeded again {recovery:?} after its death \
         ({} of {} logins on its slots answered 70169; {} logins on the others, all succeeded)",
        victims.iter().filter(|a| a.failed.is_some()).count(),
        victims.len(),
        others.len(),
    );
    assert!(recovery < Duration::from_secs(10), "{recovery:?}");

    // Every node stayed up and ready, and the clients logged in before are still logged in.
    for node in &cluster.nodes {
        let ready = reqwest::get(format!("http://{}/readyz", node.addr))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }
    for (c, u) in steady.iter().zip(&users).skip(1) {
        c.ping().await.unwrap();
        eventually(
            "the steady client's instance is in the registry",
            || async {
                cluster
                    .instances(0, u)
                    .await
                    .iter()
                    .any(|i| i["platform"] == "android")
            },
        )
        .await;
    }
    // Pushes between the nodes work again (each subscribed anew where its channels' slots now are): a login
    // on node 1 kicks the instance on node 0.
    let mut first = steady.swap_remove(0);
    let other = cluster.connect(1).await;
    other.login(&params(&users[0], "android")).await.unwrap();
    let (code, _) = kicked(&mut first).await;
    assert_eq!(code, 6208, "kicked by a login elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_redis_lost_is_put_back_unless_the_user_changed_since() {
    let redis = PrivateRedis::start();
    let cluster = Cluster::start_on(&redis.url(), 2, &[]).await;
    let lost = cluster.connect(0).await;
    lost.login(&params("lost", "web")).await.unwrap();
    let mut removed = cluster.connect(1).await;
    removed.login(&params("removed", "web")).await.unwrap();
    // A user with two instances, on two nodes: each is put back.
    let twice_web = cluster.connect(0).await;
    twice_web.login(&params("twice", "web")).await.unwrap();
    let twice_android = cluster.connect(1).await;
    twice_android
        .login(&params("twice", "android"))
        .await
        .unwrap();

    // Redis loses the first user's record, as a failover loses the writes its replica had not received; the
    // second user's instance goes with a change after the connection's login (as a logout elsewhere leaves it).
    let port = redis.port;
    let ns = cluster.ns.clone();
    tokio::task::spawn_blocking(move || {
        cli(port, &["DEL", &format!("{ns}:u:{APP}:lost")]);
        cli(port, &["DEL", &format!("{ns}:u:{APP}:twice")]);
        let key = format!("{ns}:u:{APP}:removed");
        let fields = cli(port, &["HKEYS", &key]);
        let field = fields.lines().find(|f| f.starts_with("i:")).unwrap();
        cli(port, &["HDEL", &key, field]);
        cli(port, &["HSET", &key, "s", "fffffffffffff"]);
        // The nodes' subscriptions are cut: each comes back and checks its connections against the registry.
        cli(port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    })
    .await
    .unwrap();

    eventually("the lost instance is put back", || async {
        !cluster.instances(1, "lost").await.is_empty()
    })
    .await;
    lost.ping().await.unwrap();
    eventually(
        "both instances of the user with two are put back",
        || async { cluster.instances(0, "twice").await.len() == 2 },
    )
    .await;
    twice_web.ping().await.unwrap();
    twice_android.ping().await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), removed.next_event()).await {
        Ok(Some(ClientEvent::Closed {
            code: Some(1012), ..
        })) => {}
        other => panic!("the removed instance's client is told to come back: {other:?}"),
    }
    assert!(cluster.instances(0, "removed").await.is_empty());
}

/// Planned failovers of every master in turn (`CLUSTER FAILOVER` on its replica) while logins on node 1 kick
/// instances on node 0, one after another: each node's channel moves with its slot, and a kick sent while node
/// 0 subscribes again on the new master is published again until it is heard (docs/operations.md). Every kick
/// reaches its client, no login fails, and none waits out its 2 s for a kick to be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_across_nodes_through_planned_failovers_reach_their_clients_without_waiting_out_the_timeout(
) {
    let redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    let cluster = Cluster::start_on_cluster(&redis, 2, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let kicks = {
        let stop = stop.clone();
        let (ws0, ws1) = (cluster.ws(0), cluster.ws(1));
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let user = format!("moved{n}");
                let mut first = Client::connect(&ws0).await.unwrap();
                first.login(&params(&user, "web")).await.unwrap();
                let second = Client::connect(&ws1).await.unwrap();
                second.login(&params(&user, "web")).await.unwrap();
                let (code, _) = kicked(&mut first).await;
                assert_eq!(code, 6208, "kick {n}");
                n += 1;
            }
            n
        })
    };
    for master in redis.masters() {
        let redis = &redis;
        tokio::task::block_in_place(|| {
            let replica = *redis
                .ports
                .iter()
                .find(|&&p| {
                    cli(p, &["INFO", "replication"]).contains(&format!("master_port:{master}"))
                })
                .unwrap();
            assert_eq!(cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
            let asked = Instant::now();
            while !cli(replica, &["ROLE"]).starts_with("master") {
                assert!(
                    asked.elapsed() < Duration::from_secs(10),
                    "the replica takes over"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            redis.wait_until_healthy();
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let n = kicks.await.unwrap();
    assert!(n > 3, "kicks ran throughout: {n}");
    for node in &cluster.nodes {
        let s = crate::operations::scrape(node).await;
        let expired = crate::operations::value(&s, "imlogin_kick_waits_expired_total", &[]);
        assert_eq!(
            expired, 0.0,
            "a login waited 2 s in vain for its kick ({n} kicks)"
        );
    }
}

/// A planned failover (`CLUSTER FAILOVER` on a replica): the old master stays up and answers `MOVED` for its
/// slots, which the node follows at once (no login fails); and masters that lost their scripts (`SCRIPT FLUSH`,
/// as a master restarted empty) get them again on the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_failover_and_flushed_scripts_fail_no_registry_call() {
    use imlogin::model::{Mode, Platform, Policy};
    use imlogin::registry::redis::{connect_cluster, RedisRegistry};
    use imlogin::registry::Registry;
    use imlogin::runtime::clock::Clock;

    let redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    let layout = Layout::cluster("planned").unwrap();
    let conn = connect_cluster(&redis.seeds(), Duration::from_secs(1))
        .await
        .unwrap();
    let r = RedisRegistry::new(
        conn,
        layout.clone(),
        0xfeed,
        Duration::from_secs(5),
        Duration::from_secs(10),
        Clock::system(),
    );
    let policy = Policy {
        mode: Mode::Multi,
        web_instances: 1,
        instances_per_platform: 1,
    };
    let instance = |n: u64| crate::registry::instance(n as usize, "ann", Platform::Web, None, true);
    r.admit(instance(1), &policy, 1000).await.unwrap();
    let master = redis.master_of(&format!("{}:u:7:ann", layout.prefix(7, "ann")));
    let replica = *redis
        .ports
        .iter()
        .find(|&&p| cli(p, &["INFO", "replication"]).contains(&format!("master_port:{master}")))
        .unwrap();
    assert_eq!(cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed() < Duration::from_secs(4) {
        n += 1;
        if let Err(e) = r.admit(instance(n), &policy, 1000).await {
            panic!(
                "a login {:?} into the planned failover failed: {e}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cli(replica, &["ROLE"]).starts_with("master"),
        "the replica took over"
    );

    for _ in 0..5 {
        for &p in &redis.ports {
            cli(p, &["SCRIPT", "FLUSH"]);
        }
        n += 1;
        r.admit(instance(n), &policy, 1000).await.unwrap();
        let now = imlogin::runtime::clock::unix_now() * 1000;
        r.reap(now, 5000).await.unwrap();
    }
}

/// An admin disables an account, or revokes its tickets, while Redis is down (the database takes it; the answer
/// is 70169, and the kick never reached Redis): when Redis comes back empty, the connection's instance is not
/// put back, as the account ended after the login.
async fn an_account_ended_while_redis_was_down_is_not_put_back(action: &str) {
    let mut redis = PrivateRedis::start();
    let cluster = Cluster::start_on(&redis.url(), 2, &[]).await;
    let victim = cluster.connect(0).await;
    victim.login(&params("victim", "web")).await.unwrap();
    let steady = cluster.connect(0).await;
    steady.login(&params("steady", "web")).await.unwrap();
    redis.stop();
    let (path, body) = match action {
        "disable" => ("/users/victim/disable", None),
        _ => (
            "/users/victim/kick",
            Some(serde_json::json!({"revoke_sigs": true})),
        ),
    };
    let (status, _) = cluster.admin(1, reqwest::Method::POST, path, body).await;
    assert_eq!(status, 503, "Redis is down");
    redis.restart();
    // The other user's instance is put back: the check has run.
    eventually("the steady user's instance is put back", || async {
        !cluster.instances(1, "steady").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cluster.instances(1, "victim").await.is_empty(),
        "{action}: the ended account's instance stays out of the registry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_disabled_while_redis_was_down_is_not_put_back() {
    an_account_ended_while_redis_was_down_is_not_put_back("disable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_revoked_while_redis_was_down_is_not_put_back() {
    an_account_ended_while_redis_was_down_is_not_put_back("revoke").await;
}

/// Seeds that are no Redis Cluster (nothing listens; a plain Redis) stop the node at start, with an error that
/// names the setting and never shows a seed's password.
#[test]
fn a_node_does_not_start_on_seeds_that_are_no_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let closed = crate::helpers::free_port();
    for (seeds, why) in [
        (
            format!(r#"["redis://:seedpassword@127.0.0.1:{closed}"]"#),
            "",
        ),
        (
            r#"["redis://127.0.0.1:6379"]"#.to_owned(),
            "cluster support disabled",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_imlogin"))
            .arg("serve")
            .env(
                "IMLOGIN__DATABASE__URL",
                format!("sqlite://{}/x.db", dir.path().display()),
            )
            .env("IMLOGIN__SERVER__LISTEN", "127.0.0.1:0")
            .env("IMLOGIN__SERVER__METRICS_LISTEN", "127.0.0.1:0")
            .env("IMLOGIN__REGISTRY__BACKEND", "redis")
            .env("IMLOGIN__REGISTRY__REDIS_CLUSTER_NODES", &seeds)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{seeds}: {err}");
        assert!(
            err.contains("registry.redis_cluster_nodes"),
            "{seeds}: {err}"
        );
        assert!(err.contains(why), "{seeds}: {err}");
        assert!(!err.contains("seedpassword"), "{err}");
    }
}

/// A namespace, and in it the master to stall: the one of node 0's channel, which holds neither the channels
/// of nodes `others`, nor the marks of dropped messages, nor the cluster-wide keys. Nodes are numbered as they
/// start, from 1, in a namespace of their own: node `i` is numbered `i + 1`.
fn stall_node_0(redis: &LocalRedisCluster, others: &[u64]) -> (String, u16) {
    stall_where(redis, |ns| {
        let mut elsewhere = vec![marks_key(ns)];
        elsewhere.extend(others.iter().map(|&i| channel_of(ns, i)));
        (redis.master_of(&channel_of(ns, 0)), elsewhere)
    })
}

/// A namespace in which the master `pick` names holds none of the keys it lists beside (nor the cluster-wide
/// keys).
fn stall_where(
    redis: &LocalRedisCluster,
    pick: impl Fn(&str) -> (u16, Vec<String>),
) -> (String, u16) {
    loop {
        let ns = random_ns();
        let (stalled, mut elsewhere) = pick(&ns);
        elsewhere.push(Layout::cluster(&ns).unwrap().global("nodes"));
        if elsewhere.iter().all(|k| redis.master_of(k) != stalled) {
            return (ns, stalled);
        }
    }
}

/// The channel of node `i` (numbered `i + 1`) in namespace `ns`.
fn channel_of(ns: &str, i: u64) -> String {
    format!("{ns}:bus:{:016x}", i + 1)
}

/// Where the marks of dropped messages are kept in namespace `ns`.
fn marks_key(ns: &str) -> String {
    format!("{ns}:bus:missed")
}

/// Users of `layout` whose keys are not on master `stalled`.
fn users_off<'a>(
    redis: &'a LocalRedisCluster,
    layout: &'a Layout,
    stalled: u16,
    prefix: &'a str,
) -> impl Iterator<Item = String> + 'a {
    (0..).map(move |i| format!("{prefix}{i}")).filter(move |u| {
        redis.master_of(&format!("{}:u:{APP}:{u}", layout.prefix(APP, u))) != stalled
    })
}

/// Nodes that wait on Redis longer than a test's stall (and give each other up later still), so what a stall
/// holds up stays held up until it ends, and a test sees it without timing anything.
const PATIENT: [(&str, &str); 2] = [
    ("IMLOGIN__REGISTRY__REDIS_TIMEOUT_MS", "60000"),
    ("IMLOGIN__REGISTRY__NODE_TIMEOUT_SECS", "180"),
];

/// The master holding the marks of dropped messages stalls: each node's read of its marks waits on it, and kicks
/// between nodes whose channels are elsewhere still arrive at once, not once the stall ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_master_of_the_marks_holds_up_no_kick() {
    let redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    let (ns, stalled) = stall_where(&redis, |ns| {
        (
            redis.master_of(&marks_key(ns)),
            vec![channel_of(ns, 0), channel_of(ns, 1)],
        )
    });
    let cluster = Cluster::start_on_cluster_in(&redis, 2, &PATIENT, ns).await;
    let layout = Layout::cluster(&cluster.ns).unwrap();
    let user = users_off(&redis, &layout, stalled, "marks").next().unwrap();
    let mut first = cluster.connect(0).await;
    first.login(&params(&user, "web")).await.unwrap();

    cli(stalled, &["CLIENT", "PAUSE", "12000", "ALL"]);
    // Past a read of the marks, which now waits.
    tokio::time::sleep(imlogin::push::missed::POLL + Duration::from_millis(200)).await;
    let second = cluster.connect(1).await;
    second.login(&params(&user, "web")).await.unwrap();
    assert_eq!(kicked(&mut first).await, (6208, "multi_terminal".into()));
    cli(stalled, &["CLIENT", "UNPAUSE"]);
}

/// Two nodes on a private cluster that wait on Redis longer than a stall, in a namespace where the master to
/// stall serves the broadcasts' channel and neither node's own channel nor the marks; node 0 holds a web login
/// of a user whose key is elsewhere too.
struct BroadcastsStall {
    redis: LocalRedisCluster,
    cluster: Cluster,
    stalled: u16,
    user: String,
    first: Client,
}

async fn broadcasts_stall(prefix: &str) -> BroadcastsStall {
    let redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    let (ns, stalled) = stall_where(&redis, |ns| {
        let broadcasts = redis.master_of(&format!("{ns}:bus:all"));
        let elsewhere = vec![channel_of(ns, 0), channel_of(ns, 1), marks_key(ns)];
        (broadcasts, elsewhere)
    });
    let cluster = Cluster::start_on_cluster_in(&redis, 2, &PATIENT, ns).await;
    let layout = Layout::cluster(&cluster.ns).unwrap();
    let user = users_off(&redis, &layout, stalled, prefix).next().unwrap();
    let first = cluster.connect(0).await;
    first.login(&params(&user, "web")).await.unwrap();
    BroadcastsStall {
        redis,
        cluster,
        stalled,
        user,
        first,
    }
}

/// Node 0's subscription to its own channel is cut while the master of the broadcasts' channel stalls: it
/// subscribes to its own channel again at once, and the kick sent to it meanwhile arrives, rather than once
/// every master answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_subscription_comes_back_while_another_master_stalls() {
    let mut t = broadcasts_stall("cut").await;
    cli(t.stalled, &["CLIENT", "PAUSE", "12000", "ALL"]);
    let at = t.redis.master_of(&channel_of(&t.cluster.ns, 0));
    cli(at, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    let second = t.cluster.connect(1).await;
    second.login(&params(&t.user, "web")).await.unwrap();
    assert_eq!(kicked(&mut t.first).await, (6208, "multi_terminal".into()));
    cli(t.stalled, &["CLIENT", "UNPAUSE"]);
}

/// The master of a node's channel stalls (writes paused, as on an overloaded master) and the connections
/// queued behind it break, so the kick sent to that node is lost and given up on (after 2 s) while the node's
/// subscription stays up: nothing else would have it check. The sender marks it in Redis, and the node's check
/// against the registry finds the kick: the kicked client is told and closed, not left connected as if still
/// logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_given_up_on_while_its_nodes_master_stalled_still_reaches_its_client() {
    let redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    let (ns, stalled) = stall_node_0(&redis, &[]);
    let cluster = Cluster::start_on_cluster_in(&redis, 2, &[], ns).await;
    let layout = Layout::cluster(&cluster.ns).unwrap();
    assert_eq!(
        cli(stalled, &["-c", "GET", &layout.global("node-ids")]),
        "2"
    );
    let user = users_off(&redis, &layout, stalled, "stall").next().unwrap();

    let mut first = cluster.connect(0).await;
    first.login(&params(&user, "web")).await.unwrap();
    cli(stalled, &["CLIENT", "PAUSE", "3000", "WRITE"]);
    let started = std::time::Instant::now();
    let second = cluster.connect(1).await;
    let login = tokio::spawn(async move { second.login(&params(&user, "web")).await });
    // The publishes waiting on the paused master go with the connections they wait on (every connection but
    // node 0's subscription), once after the first and again just before the pause ends.
    for at in [300, 2800] {
        tokio::time::sleep_until((started + Duration::from_millis(at)).into()).await;
        let list = cli(stalled, &["CLIENT", "LIST"]);
        for line in list
            .lines()
            .filter(|l| l.contains(" ssub=0 ") && !l.contains("cmd=client|list"))
        {
            let id = line.split(' ').next().unwrap().trim_start_matches("id=");
            cli(stalled, &["CLIENT", "KILL", "ID", id]);
        }
    }
    login.await.unwrap().unwrap();
    assert_eq!(kicked(&mut first).await, (6208, "multi_terminal".into()));
}

/// The master of the broadcasts' channel cuts every subscription to it and stalls at once: node 0 keeps trying
/// to subscribe there again, and meanwhile what arrives on its own channel (a kick) is handed on at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_being_made_again_on_a_stalled_master_holds_up_no_kick() {
    let mut t = broadcasts_stall("again").await;
    let done = cli_atomically(
        t.stalled,
        &["CLIENT KILL TYPE pubsub", "CLIENT PAUSE 12000 ALL"],
    );
    // MULTI's OK, two QUEUED, then what each command answered.
    let cut: u32 = done.lines().nth(3).unwrap_or("").parse().unwrap_or(0);
    assert!(cut >= 2, "both nodes' subscriptions there cut: {done}");
    // Past the nodes' first try to subscribe there again, which now waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = t.cluster.connect(1).await;
    second.login(&params(&t.user, "web")).await.unwrap();
    assert_eq!(kicked(&mut t.first).await, (6208, "multi_terminal".into()));
    cli(t.stalled, &["CLIENT", "UNPAUSE"]);
}

/// A user's slot moves to another master (a resharding, no failover): no node's subscriptions are made again
/// (neither of their channels moved), and a kick across nodes works on the moved user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_leaves_the_subscriptions_be() {
    let redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    let cluster = Cluster::start_on_cluster(&redis, 2, &[]).await;
    let layout = Layout::cluster(&cluster.ns).unwrap();
    let user = "resharded";
    let key = format!("{}:u:{APP}:{user}", layout.prefix(APP, user));
    let mut first = cluster.connect(0).await;
    first.login(&params(user, "web")).await.unwrap();

    let from = redis.master_of(&key);
    let masters = redis.masters();
    let to = *masters.iter().find(|&&m| m != from).unwrap();
    move_slot_of(&key, from, to, &masters);
    assert_eq!(redis.master_of(&key), to);
    // The login meets a MOVED, and the node reads the map of the slots again.
    let second = cluster.connect(1).await;
    second.login(&params(user, "web")).await.unwrap();
    assert_eq!(kicked(&mut first).await, (6208, "multi_terminal".into()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in &cluster.nodes {
        let log = node.log();
        assert!(
            !log.contains("subscribing again") && !log.contains("was cut"),
            "no subscription was made again: {log}"
        );
    }
}

/// A master stalls (its writes paused) while a node is publishing a kick to a channel it serves: a kick to
/// another node, whose channel is on another master, goes out at once, not after the stalled publish. The
/// nodes wait on Redis for longer than the pause, so a kick held up behind the stalled one would only arrive
/// once the pause ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_master_holds_up_no_kick_to_a_node_whose_channel_is_on_another() {
    let redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    // Nodes 1's and 2's channels are elsewhere.
    let (ns, stalled) = stall_node_0(&redis, &[1, 2]);
    let cluster = Cluster::start_on_cluster_in(&redis, 3, &PATIENT, ns).await;
    let layout = Layout::cluster(&cluster.ns).unwrap();
    let users: Vec<String> = users_off(&redis, &layout, stalled, "lane")
        .take(2)
        .collect();

    let mut on_stalled = cluster.connect(0).await;
    on_stalled.login(&params(&users[0], "web")).await.unwrap();
    let mut elsewhere = cluster.connect(2).await;
    elsewhere.login(&params(&users[1], "web")).await.unwrap();
    cli(stalled, &["CLIENT", "PAUSE", "20000", "WRITE"]);
    let first = cluster.connect(1).await;
    let first_user = users[0].clone();
    let first = tokio::spawn(async move { first.login(&params(&first_user, "web")).await });
    // Its kick's publish is out, waiting on the paused master.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = cluster.connect(1).await;
    second.login(&params(&users[1], "web")).await.unwrap();
    assert_eq!(
        kicked(&mut elsewhere).await,
        (6208, "multi_terminal".into())
    );

    cli(stalled, &["CLIENT", "UNPAUSE"]);
    first.await.unwrap().unwrap();
    assert_eq!(
        kicked(&mut on_stalled).await,
        (6208, "multi_terminal".into())
    );
}

/// The nodes know the cluster by one seed node, the master of node 0's channel, which is killed: once its
/// replica took over, node 0's bus subscribes again where the cluster now is (found by the registry's map of
/// it), not only at the seed, which is gone for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_subscribes_again_after_a_failover_that_took_away_every_seed_node() {
    let mut redis = tokio::task::spawn_blocking(LocalRedisCluster::start)
        .await
        .unwrap();
    // Node 0 (numbered 1) is to lose its subscription with the seed: the seed is its channel's master.
    let ns = random_ns();
    let channel = format!("{ns}:bus:{:016x}", 1);
    let seed = redis.master_of(&channel);
    let _cluster = Cluster::start_on_seeds(&format!("[\"redis://127.0.0.1:{seed}\"]"), 2, ns).await;
    assert_eq!(subscribers(&redis, &channel), "1", "node 0 is subscribed");

    redis.kill(seed);
    eventually("node 0 subscribes again, with its seed gone", || async {
        subscribers(&redis, &channel) == "1"
    })
    .await;
}

/// How many subscribe to the shard channel `channel`, as its master says ("" while it has none).
fn subscribers(redis: &LocalRedisCluster, channel: &str) -> String {
    let Some(at) = redis.try_masters_of(&[channel]) else {
        return String::new();
    };
    let reply = cli(at[0], &["PUBSUB", "SHARDNUMSUB", channel]);
    reply.lines().nth(1).unwrap_or("").trim().to_owned()
}
