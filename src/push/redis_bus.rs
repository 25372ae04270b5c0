//! The bus over Redis pub/sub: each node subscribes to its own channel (`NS:bus:NODE`) and to `NS:bus:all`. On a
//! Redis Cluster it is sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`, Redis ≥ 7): a channel lives on the master of
//! its slot, so a message crosses one master instead of every node of the cluster.
//!
//! Pub/sub delivers to whoever is subscribed at the time: a message that Redis says no node heard is published
//! again for a while ([`super::unheard`]), and one published while a node's subscription stays cut is lost. The
//! subscription runs on a RESP3 connection that reconnects and resubscribes by itself; when it comes back the
//! node is told ([`Incoming::Resynced`]) and checks its connections against the registry, which is the truth
//! (a kick that was lost in transit is found there). On a cluster, any lost connection (a master failing over)
//! counts: the subscriptions are made again, wherever their slots now are, before the node is told.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, Envelope, Incoming, Message};
use super::missed::{self, Marks, Watch};
use super::publishing::Publishing;
use super::unheard::Outgoing;
use crate::registry::redis::{err, RedisConn};
use crate::registry::RegistryError;

/// Messages waiting to be published; past that a message is dropped (the registry stays right, and a node that
/// far behind is told to resync).
const OUT_QUEUE: usize = 64 * 1024;

fn channel(ns: &str, node: Option<u64>) -> String {
    match node {
        Some(n) => format!("{ns}:bus:{n:016x}"),
        None => format!("{ns}:bus:all"),
    }
}

pub struct RedisBus {
    node: u64,
    ns: String,
    out: mpsc::Sender<Outgoing>,
}

impl RedisBus {
    fn queue(&self, channel: String, message: Message) {
        let envelope = Envelope {
            from: self.node,
            message,
        };
        let payload = serde_json::to_string(&envelope).expect("a message serializes");
        if self.out.try_send((channel, payload)).is_err() {
            tracing::warn!(
                "bus: the outgoing queue is full; a message to another node was dropped"
            );
        }
    }
}

impl Bus for RedisBus {
    fn send(&self, to: u64, message: Message) {
        self.queue(channel(&self.ns, Some(to)), message);
    }

    fn broadcast(&self, message: Message) {
        self.queue(channel(&self.ns, None), message);
    }
}

/// Sleeps until `at`; forever if `None`.
pub(super) async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The connection a node's subscriptions are on, and its two channels.
struct Subscriber {
    conn: SubscriberConn,
    channels: [String; 2],
}

enum SubscriberConn {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Subscriber {
    /// Connects to `redis` and subscribes to `channels`; what arrives goes to the returned receiver. On a
    /// cluster, `found` are where it was last found (tried before the seeds, which failovers may have moved).
    async fn open(
        redis: &BusRedis,
        found: Vec<redis::ConnectionInfo>,
        channels: [String; 2],
        timeout: Duration,
    ) -> Result<(Subscriber, mpsc::UnboundedReceiver<PushInfo>), RegistryError> {
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let conn = match redis {
            BusRedis::One(url) => {
                let info = crate::registry::redis::connection_info(url)?;
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(settings)).map_err(err)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500))
                    .set_push_sender(push_tx)
                    .set_automatic_resubscription();
                let conn = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(err)?;
                SubscriberConn::One(conn)
            }
            BusRedis::Cluster(nodes) => {
                let mut infos = found;
                for u in nodes {
                    infos.push(crate::registry::redis::connection_info(u)?);
                }
                let client = redis::cluster::ClusterClient::builder(infos)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(push_tx)
                    .build()
                    .map_err(err)?;
                let conn = client.get_async_connection().await.map_err(err)?;
                SubscriberConn::Cluster(conn)
            }
        };
        let mut subscriber = Subscriber { conn, channels };
        subscriber.subscribe().await.map_err(err)?;
        Ok((subscriber, pushes))
    }

    async fn subscribe(&mut self) -> redis::RedisResult<()> {
        match &mut self.conn {
            SubscriberConn::One(c) => c.subscribe(&self.channels).await,
            SubscriberConn::Cluster(c) => {
                for ch in &self.channels {
                    c.ssubscribe(ch).await?;
                }
                Ok(())
            }
        }
    }
}

/// The bus's task: publishes what nodes send, hands on what arrives (see [`crate::runtime::workers`]). The two
/// halves run side by side, so a publish that waits on a slow master never holds up what arrives meanwhile (a
/// kick from another node), nor does a full incoming queue hold up publishing.
pub struct BusWorker {
    publishing: Publishing,
    receiving: Receiving,
}

struct Receiving {
    node: u64,
    subscriber: Subscriber,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    incoming: mpsc::Sender<Incoming>,
    redis: BusRedis,
    timeout: Duration,
    /// The registry's connection: on a cluster, it follows the masters and tells when every slot answers.
    registry: RedisConn,
    /// Whether messages to this node were dropped.
    missed: Watch,
}

/// Where the bus's Redis is: one server (its URL), or a cluster (its seed nodes).
pub enum BusRedis {
    One(String),
    Cluster(Vec<String>),
}

/// Connects and subscribes (before the node serves, so nothing addressed to it is missed). Returns the bus, its
/// task, and what arrives. `publisher` is a connection to the same Redis.
pub async fn connect(
    redis: BusRedis,
    ns: &str,
    node: u64,
    publisher: RedisConn,
    timeout: Duration,
) -> Result<(Arc<RedisBus>, BusWorker, mpsc::Receiver<Incoming>), RegistryError> {
    let channels = [channel(ns, Some(node)), channel(ns, None)];
    let (subscriber, pushes) =
        Subscriber::open(&redis, Vec::new(), channels.clone(), timeout).await?;
    let (out_tx, out) = mpsc::channel(OUT_QUEUE);
    let (incoming_tx, incoming) = mpsc::channel(OUT_QUEUE);
    let bus = Arc::new(RedisBus {
        node,
        ns: ns.to_owned(),
        out: out_tx,
    });
    let worker = BusWorker {
        publishing: Publishing::new(publisher.clone(), out, Marks::new(ns)),
        receiving: Receiving {
            node,
            subscriber,
            pushes,
            incoming: incoming_tx,
            redis,
            timeout,
            registry: publisher,
            missed: Watch::new(ns, channels),
        },
    };
    Ok((bus, worker, incoming))
}

impl BusWorker {
    pub async fn run(self, stop: CancellationToken) {
        let BusWorker {
            publishing,
            receiving,
        } = self;
        // Each half finishes what it is doing when told to stop (publishing sends what is queued first).
        tokio::join!(publishing.run(&stop), receiving.run(&stop));
    }
}

impl Receiving {
    async fn run(mut self, stop: &CancellationToken) {
        // Set while the subscription is cut: the next attempt to bring it back.
        let mut resync: Option<tokio::time::Instant> = None;
        // On a cluster, a change of masters (a failover) moves subscriptions and may have lost writes.
        let mut changes = match &self.registry {
            RedisConn::Cluster(c) => Some(c.changes()),
            RedisConn::One(_) => None,
        };
        let mut look = tokio::time::interval(missed::POLL);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let retry = until(resync);
            tokio::select! {
                _ = stop.cancelled() => return,
                push = self.pushes.recv() => match push {
                    Some(p) if p.kind == PushKind::Disconnection => {
                        tracing::warn!("bus: the subscription to Redis was cut; reconnecting");
                        resync = Some(tokio::time::Instant::now());
                    }
                    // A Redis Cluster ends the subscriptions of a shard channel whose slot moved (its master
                    // failed over, or a resharding): they are made again where the slot now is.
                    Some(p) if p.kind == PushKind::SUnsubscribe => {
                        tracing::warn!("bus: a channel's slot moved to another master; subscribing again");
                        resync = Some(tokio::time::Instant::now());
                    }
                    Some(p) => self.receive(p).await,
                    None => {
                        tracing::error!("bus: the subscription's connection is gone; this node receives no more");
                        return;
                    }
                },
                true = changed => {
                    tracing::warn!("bus: the Redis Cluster's masters changed; subscribing again");
                    resync = Some(tokio::time::Instant::now());
                }
                _ = look.tick() => {
                    if self.missed.moved(&self.registry).await {
                        tracing::warn!("bus: messages to this node were dropped; checking against the registry");
                        let _ = self.incoming.send(Incoming::Resynced).await;
                    }
                }
                _ = retry => {
                    resync = match self.restore().await {
                        Ok(()) => {
                            tracing::info!("bus: the subscription to Redis is back");
                            let _ = self.incoming.send(Incoming::Resynced).await;
                            None
                        }
                        Err(_) => Some(tokio::time::Instant::now() + Duration::from_millis(500)),
                    };
                }
            }
        }
    }

    /// After the subscription was cut or the masters changed: whether the subscriptions are back. One
    /// server's connection resubscribes by itself once a command makes it reconnect. On a cluster the
    /// subscriber is made anew (its channels' slots may have moved), and the node is only told once every slot
    /// has a master that answers, so its check of the registry reaches every slot.
    async fn restore(&mut self) -> Result<(), RegistryError> {
        match &mut self.subscriber.conn {
            SubscriberConn::One(c) => redis::cmd("PING").query_async::<()>(c).await.map_err(err),
            SubscriberConn::Cluster(_) => {
                self.registry.every_master_answers().await?;
                let channels = self.subscriber.channels.clone();
                let found = match &self.registry {
                    RedisConn::Cluster(c) => c.current_nodes(),
                    RedisConn::One(_) => Vec::new(),
                };
                let (subscriber, pushes) =
                    Subscriber::open(&self.redis, found, channels, self.timeout).await?;
                self.subscriber = subscriber;
                // What the old subscription heard while the new one was made is handed on, not dropped with it
                // (a message may then come through both: it is safe to repeat).
                let mut old = std::mem::replace(&mut self.pushes, pushes);
                while let Ok(p) = old.try_recv() {
                    self.receive(p).await;
                }
                Ok(())
            }
        }
    }

    async fn receive(&self, push: PushInfo) {
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            return;
        }
        let Some(Value::BulkString(payload)) = push.data.get(1) else {
            return;
        };
        match serde_json::from_slice::<Envelope>(payload) {
            // Broadcasts come back to their sender too.
            Ok(e) if e.from == self.node => {}
            Ok(e) => {
                let _ = self.incoming.send(Incoming::Message(e)).await;
            }
            Err(e) => tracing::warn!(error = %e, "bus: a message that does not parse was ignored"),
        }
    }
}
