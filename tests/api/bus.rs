//! The bus between nodes (docs/operations.md): a message sent to a node while its subscription is being made
//! again (its link to Redis was cut, or its channel moved to another master) reaches it once it is subscribed,
//! in order, so a login that kicked an instance on that node does not wait out its 2 s for nothing.

use std::time::Duration;

use imlogin::client::ClientEvent;
use imlogin::push::bus::{Bus, Envelope, Incoming, Message};
use imlogin::push::redis_bus::{self, BusRedis};
use imlogin::registry::redis::{connect, connect_cluster};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, PrivateRedis};
use crate::helpers::{params, Proxy};
use crate::operations::{scrape, value};
use crate::redis_cluster::Redis;

crate::on_one_redis_and_a_cluster!(
    a_message_to_a_node_not_subscribed_yet_reaches_it_once_it_is,
    a_dead_nodes_messages_neither_crowd_out_nor_multiply_the_messages_of_others
);

const TIMEOUT: Duration = Duration::from_secs(1);

type NodeBus = (
    std::sync::Arc<redis_bus::RedisBus>,
    mpsc::Receiver<Incoming>,
);

/// Node `node`'s bus in namespace `ns`, running until `stop`: what it sends, and what it receives.
async fn bus(redis: Redis, ns: &str, node: u64, stop: &CancellationToken) -> NodeBus {
    bus_on(redis, "redis://127.0.0.1:6379", ns, node, stop).await
}

/// The same on the Redis at `url` (with `Redis::One`).
async fn bus_on(redis: Redis, url: &str, ns: &str, node: u64, stop: &CancellationToken) -> NodeBus {
    let (conn, at) = match redis {
        Redis::One => {
            let url = url.to_owned();
            (connect(&url, TIMEOUT).await.unwrap(), BusRedis::One(url))
        }
        Redis::Cluster => {
            let seeds = crate::redis_cluster::shared_async().await.seeds();
            let conn = connect_cluster(&seeds, TIMEOUT).await.unwrap();
            (conn, BusRedis::Cluster)
        }
    };
    let (bus, worker, incoming) = redis_bus::connect(at, ns, node, conn, TIMEOUT)
        .await
        .unwrap();
    tokio::spawn(worker.run(stop.clone()));
    (bus, incoming)
}

async fn a_message_to_a_node_not_subscribed_yet_reaches_it_once_it_is(redis: Redis) {
    let ns = format!("t{:016x}", rand::random::<u64>());
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (one, _) = bus(redis, &ns, 1, &stop).await;
    for id in [7, 8, 9] {
        one.send(2, Message::Ack { id });
    }
    // Node 2 subscribes a moment later (as after a cut, or once its channel's new master answers).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_two, mut heard) = bus(redis, &ns, 2, &stop).await;
    for id in [7, 8, 9] {
        match tokio::time::timeout(Duration::from_secs(5), heard.recv()).await {
            Ok(Some(Incoming::Message(Envelope { from: 1, message }))) => {
                assert_eq!(message, Message::Ack { id }, "in the order sent")
            }
            other => panic!("node 2 receives message {id}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(heard.try_recv().is_err(), "each message once");
}

/// A kick to a node cut off from Redis for a moment: its connection is told once the node is back, and the
/// login that kicked is answered then, not after waiting its 2 s in vain (which the node counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_sent_while_the_nodes_link_to_redis_was_cut_is_delivered_when_it_is_back() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let urls = [
        format!("redis://{}", proxy.addr),
        "redis://127.0.0.1:6379".to_owned(),
    ];
    let cluster = Cluster::start_each(&urls, &[]).await;
    let mut first = cluster.connect(0).await;
    first.login(&params("cutoff", "web")).await.unwrap();
    let second = cluster.connect(1).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let login = tokio::spawn(async move {
        second.login(&params("cutoff", "web")).await.unwrap();
        second
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.restore();
    let _second = login.await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), first.next_event()).await {
        Ok(Some(ClientEvent::KickedOffline { code, reason, .. })) => {
            assert_eq!((code, reason.as_str()), (6208, "multi_terminal"))
        }
        other => panic!("the first instance is told: {other:?}"),
    }
    let s = scrape(&cluster.nodes[1]).await;
    let kicks = [("reason", "multi_terminal")];
    assert_eq!(value(&s, "imlogin_kicks_total", &kicks), 1.0);
    assert_eq!(
        value(&s, "imlogin_kick_waits_expired_total", &[]),
        0.0,
        "the login did not wait out its 2 s for the kicked connection"
    );
}

/// A connection to the private Redis, for the test's own commands.
async fn admin(server: &PrivateRedis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn command(redis: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(redis).await.unwrap()
}

/// How many PUBLISH commands the Redis ran.
async fn publishes(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
        .and_then(|l| l.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// What node 2 heard: the ids of the acknowledgements, until nothing comes for `quiet`.
async fn acks(heard: &mut mpsc::Receiver<Incoming>, quiet: Duration) -> Vec<u64> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, heard.recv()).await {
        if let Incoming::Message(Envelope {
            message: Message::Ack { id },
            ..
        }) = m
        {
            got.push(id);
        }
    }
    got
}

/// A node stops while a message it sent was not heard yet (the node it is for is subscribing again): the
/// message is not tried again, and the node it was for is marked, so it checks against the registry once it is
/// back rather than never hearing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_unheard_when_its_sender_stops_marks_its_node() {
    let server = PrivateRedis::start();
    let mut admin = admin(&server).await;
    let ns = format!("t{:016x}", rand::random::<u64>());
    let stop = CancellationToken::new();
    let (one, _) = bus_on(Redis::One, &server.url(), &ns, 1, &stop).await;
    one.send(2, Message::Ack { id: 1 });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mark = [
        "HGET",
        &format!("{ns}:bus:missed"),
        &format!("{ns}:bus:{:016x}", 2),
    ];
    assert_eq!(
        command(&mut admin, &mark).await,
        redis::Value::Nil,
        "not given up yet"
    );
    stop.cancel();
    crate::helpers::eventually("node 2 is marked", || {
        let mut admin = admin.clone();
        async move { command(&mut admin, &mark).await != redis::Value::Nil }
    })
    .await;
}

/// A node gone for good (its instances stay attached until the cluster gives it up, and every kick or resume of
/// them sends it a message): its messages are tried again with one probe at a time, so they neither delay nor
/// push out the messages of a node that is subscribed, including ones that waited behind a message it missed.
/// On a cluster the two nodes' channels are in lanes of their own (and the count of publishes is not checked: the
/// shared cluster serves other tests too).
async fn a_dead_nodes_messages_neither_crowd_out_nor_multiply_the_messages_of_others(redis: Redis) {
    let server = PrivateRedis::start();
    let mut admin = admin(&server).await;
    let ns = format!("t{:016x}", rand::random::<u64>());
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (one, _) = bus_on(redis, &server.url(), &ns, 1, &stop).await;
    // Past the 16,384 messages a channel may keep waiting, for the dead node; within them for node 2 (whose
    // messages wait behind the one it missed until a probe is heard).
    const DEAD: u64 = 20_000;
    const N: u64 = 10_000;
    let before = publishes(&mut admin).await;
    // Node 2 misses message 0 (it is not subscribed yet), while node 1 sends many to a dead node.
    one.send(2, Message::Ack { id: 0 });
    for id in 0..DEAD {
        one.send(0xdead, Message::Ack { id });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_two, mut heard) = bus_on(redis, &server.url(), &ns, 2, &stop).await;
    for id in 1..=N {
        one.send(2, Message::Ack { id });
    }
    let got = acks(&mut heard, Duration::from_secs(3)).await;
    let missing = (0..=N).filter(|id| !got.contains(id)).count();
    assert!(
        missing == 0 && got.windows(2).all(|w| w[0] < w[1]),
        "every message to node 2, in order: {missing} missing, first {:?}",
        &got[..got.len().min(5)]
    );
    if matches!(redis, Redis::Cluster) {
        return;
    }
    let sent = publishes(&mut admin).await - before;
    // Each message once, and the probes of two channels for 2 s (about a dozen each).
    assert!(
        sent < DEAD + N + 100,
        "{sent} PUBLISH for {} messages",
        DEAD + N + 1
    );
}

/// A policy set through node 1 while every subscription is cut for longer than a message is tried again: node 0
/// reads the policies again once it is subscribed again, rather than keeping the old one for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_while_a_node_was_cut_off_applies_there_once_it_is_back() {
    let server = PrivateRedis::start();
    let cluster = Cluster::start_on(&server.url(), 2, &[]).await;
    let mut redis = admin(&server).await;
    command(&mut redis, &["CONFIG", "SET", "maxclients", "1"]).await;
    command(&mut redis, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    let policy =
        serde_json::json!({"mode": "multi", "web_instances": 3, "instances_per_platform": 1});
    let (status, body) = cluster
        .admin(1, reqwest::Method::PUT, "/policy", Some(policy))
        .await;
    assert_eq!(status, 200, "{body}");
    // Past the 2 s its broadcast is tried again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    command(&mut redis, &["CONFIG", "SET", "maxclients", "10000"]).await;
    crate::helpers::eventually("node 0 applies the policy", || async {
        let (_, body) = cluster
            .admin(0, reqwest::Method::GET, "/policy", None)
            .await;
        body["mode"] == "multi"
    })
    .await;
}

/// The client resumes its instance on node 1, then back on node 0's connection, while both nodes are
/// subscribing again (their subscriptions cut, and Redis refusing new connections for a moment). Node 1's
/// close of the first connection arrives after the instance came back to it, and is ignored: it carries the
/// number of the attachment it was about, older than the connection's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_resumed_elsewhere_leaves_the_connection_that_took_the_instance_back() {
    let server = PrivateRedis::start();
    let cluster = Cluster::start_on(&server.url(), 2, &[]).await;
    let mut redis = admin(&server).await;
    let mut a = cluster.connect(0).await;
    let login = a.login(&params("pingpong", "web")).await.unwrap();
    let mut b = cluster.connect(1).await;

    command(&mut redis, &["CONFIG", "SET", "maxclients", "1"]).await;
    command(&mut redis, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    b.resume(&login.session_token).await.unwrap();
    a.resume(&login.session_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    command(&mut redis, &["CONFIG", "SET", "maxclients", "10000"]).await;

    match tokio::time::timeout(Duration::from_secs(5), b.next_event()).await {
        Ok(Some(ClientEvent::Closed {
            code: Some(4002), ..
        })) => {}
        other => panic!("the connection the client left is closed with 4002: {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let event = a.try_next_event();
    assert!(event.is_none(), "the connection in use stays: {event:?}");
    assert_eq!(a.status().await.unwrap(), 1);
    let listed = cluster.instances(1, "pingpong").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "online", "{listed:?}");
}

/// The same race across nodes: a connection on node 0 resumes its own instance while a connection on node 1
/// resumes it; the close each sends the other crosses the bus while the other's resume is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_of_the_current_instance_racing_one_on_another_node_leaves_one_connection() {
    let cluster = Cluster::start(Redis::One, 2, &[]).await;
    for round in 0..30 {
        let user = format!("racer{round}");
        let mut a = cluster.connect(0).await;
        let token = a.login(&params(&user, "web")).await.unwrap().session_token;
        let mut b = cluster.connect(1).await;
        let _ = tokio::join!(a.resume(&token), b.resume(&token));
        crate::races::one_holds(&mut a, &mut b, round).await;
    }
}

/// A node whose own publish waits on a slow link to Redis (a master that stalls, a congested network) still
/// receives meanwhile: a message from another node (a kick) is not held up behind it, and the slow publish
/// still arrives afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_while_its_own_publish_waits_on_a_slow_redis() {
    let ns = format!("t{:016x}", rand::random::<u64>());
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    // Node 1 publishes through the proxy, with a timeout long enough that its publish waits instead of failing;
    // its subscription is direct.
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let long = Duration::from_secs(30);
    let publisher = connect(&format!("redis://{}", proxy.addr), long)
        .await
        .unwrap();
    let direct = BusRedis::One("redis://127.0.0.1:6379".to_owned());
    let (one, worker, mut heard_by_one) = redis_bus::connect(direct, &ns, 1, publisher, long)
        .await
        .unwrap();
    tokio::spawn(worker.run(stop.clone()));
    let (two, mut heard_by_two) = bus(Redis::One, &ns, 2, &stop).await;

    proxy.delay(Duration::from_secs(3));
    one.send(2, Message::Ack { id: 1 });
    // Long enough for node 1 to be inside that publish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.delay(Duration::ZERO);
    two.send(1, Message::Ack { id: 2 });
    assert_eq!(next_ack(&mut heard_by_one, long).await, Some((2, 2)));
    assert!(
        heard_by_two.try_recv().is_err(),
        "node 1 heard node 2 only once its own publish was through"
    );
    assert_eq!(next_ack(&mut heard_by_two, long).await, Some((1, 1)));
}

/// The next message heard within `wait`, if an acknowledgement: its sender and id.
async fn next_ack(heard: &mut mpsc::Receiver<Incoming>, wait: Duration) -> Option<(u64, u64)> {
    match tokio::time::timeout(wait, heard.recv()).await {
        Ok(Some(Incoming::Message(Envelope {
            from,
            message: Message::Ack { id },
        }))) => Some((from, id)),
        _ => None,
    }
}

/// A node that stops still sends what it had queued (its last acknowledgements, closes of instances resumed
/// elsewhere), so the nodes waiting on them do not wait out their time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_sends_what_it_had_queued() {
    let ns = format!("t{:016x}", rand::random::<u64>());
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (_two, mut heard_by_two) = bus(Redis::One, &ns, 2, &stop).await;
    let stop_one = CancellationToken::new();
    let (one, _) = bus(Redis::One, &ns, 1, &stop_one).await;
    for id in 1..=300 {
        one.send(2, Message::Ack { id });
    }
    stop_one.cancel();
    let heard = acks(&mut heard_by_two, Duration::from_secs(1)).await;
    assert_eq!(heard, (1..=300).collect::<Vec<u64>>());
}
