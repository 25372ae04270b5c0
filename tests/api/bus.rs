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

use crate::cluster::Cluster;
use crate::helpers::{params, Proxy};
use crate::operations::{scrape, value};
use crate::redis_cluster::Redis;

crate::on_one_redis_and_a_cluster!(a_message_to_a_node_not_subscribed_yet_reaches_it_once_it_is);

const TIMEOUT: Duration = Duration::from_secs(1);

/// Node `node`'s bus in namespace `ns`, running until `stop`: what it sends, and what it receives.
async fn bus(
    redis: Redis,
    ns: &str,
    node: u64,
    stop: &CancellationToken,
) -> (
    std::sync::Arc<redis_bus::RedisBus>,
    mpsc::Receiver<Incoming>,
) {
    let (conn, at) = match redis {
        Redis::One => {
            let url = "redis://127.0.0.1:6379".to_owned();
            (connect(&url, TIMEOUT).await.unwrap(), BusRedis::One(url))
        }
        Redis::Cluster => {
            let seeds = crate::redis_cluster::shared_async().await.seeds();
            let conn = connect_cluster(&seeds, TIMEOUT).await.unwrap();
            (conn, BusRedis::Cluster(seeds))
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
