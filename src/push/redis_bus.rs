//! The bus over Redis pub/sub: each node subscribes to its own channel (`NS:bus:NODE`) and to `NS:bus:all`. On a
//! Redis Cluster it is sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`, Redis ≥ 7): a channel lives on the master of
//! its slot, so a message crosses one master instead of every node of the cluster.
//!
//! Pub/sub delivers to whoever is subscribed at the time: a message that Redis says no node heard is published
//! again for a while ([`super::unheard`]), and one published while a node's subscription stays cut is lost. The
//! subscriptions ([`super::subscriber`]) are made again when they are cut; once they are back the node is told
//! ([`Incoming::Resynced`]) and checks its connections against the registry, which is the truth (a kick that
//! was lost in transit is found there). On a cluster, any lost connection (a master failing over) counts: the
//! subscriptions are made again, wherever their slots now are, and the node is told once every master
//! answers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::bus::{Bus, Envelope, Incoming, Message};
use super::missed::{self, Marks, Watch};
use super::publishing::{Overflowed, Publishing};
pub use super::subscriber::BusRedis;
use super::subscriber::{Made, Pushed, Subscriber};
use super::unheard::Outgoing;
use crate::registry::redis::RedisConn;
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
    overflowed: Overflowed,
}

impl RedisBus {
    fn queue(&self, channel: String, message: Message) {
        let envelope = Envelope {
            from: self.node,
            message,
        };
        let payload = serde_json::to_string(&envelope).expect("a message serializes");
        if let Err(TrySendError::Full((channel, _))) = self.out.try_send((channel, payload)) {
            tracing::warn!(
                "bus: the outgoing queue is full; a message to another node was dropped (it is told to check)"
            );
            self.overflowed.lock().expect("the lock").insert(channel);
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

/// The bus's task: publishes what nodes send, hands on what arrives, and reads whether messages to this node
/// were dropped (see [`crate::runtime::workers`]). The three run side by side, so a publish that waits on a
/// slow master never holds up what arrives meanwhile (a kick from another node), nor does a full incoming queue
/// hold up publishing, nor a stalled master of the marks either.
pub struct BusWorker {
    publishing: Publishing,
    receiving: Receiving,
    watching: missed::Watching,
}

struct Receiving {
    node: u64,
    subscriber: Subscriber,
    pushes: mpsc::UnboundedReceiver<Pushed>,
    incoming: mpsc::Sender<Incoming>,
    /// The registry's connection: on a cluster, it follows the masters and tells when every slot answers.
    registry: RedisConn,
    /// Once subscribed again: tells the node to check against the registry as soon as every master answers.
    telling: Option<AbortOnDropHandle<()>>,
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
        Subscriber::open(&redis, &publisher, channels.clone(), timeout).await?;
    let (out_tx, out) = mpsc::channel(OUT_QUEUE);
    let (incoming_tx, incoming) = mpsc::channel(OUT_QUEUE);
    let overflowed = Overflowed::default();
    let bus = Arc::new(RedisBus {
        node,
        ns: ns.to_owned(),
        out: out_tx,
        overflowed: overflowed.clone(),
    });
    let worker = BusWorker {
        publishing: Publishing::new(publisher.clone(), out, Marks::new(ns), overflowed),
        receiving: Receiving {
            node,
            subscriber,
            pushes,
            incoming: incoming_tx.clone(),
            registry: publisher.clone(),
            telling: None,
        },
        watching: missed::Watching::new(Watch::new(ns, channels), publisher, incoming_tx),
    };
    Ok((bus, worker, incoming))
}

impl BusWorker {
    pub async fn run(self, stop: CancellationToken) {
        let BusWorker {
            publishing,
            receiving,
            watching,
        } = self;
        // Each part finishes what it is doing when told to stop (publishing sends what is queued first).
        tokio::join!(
            publishing.run(&stop),
            receiving.run(&stop),
            watching.run(&stop)
        );
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
        // Subscriptions being made again, beside what keeps arriving on the others meanwhile.
        let mut restoring: Option<BoxFuture<'static, Made>> = None;
        // Whether the last try failed (said once, not at each try).
        let mut failing = false;
        loop {
            let changed = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let idle = restoring.is_none();
            let retry = until(resync);
            let made = async {
                match restoring.as_mut() {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                push = self.pushes.recv() => match push {
                    // A connection lost, or (on a Redis Cluster) a channel's slot moved to another master (a
                    // failover, a resharding): the subscription is made again, where the slot now is.
                    Some(p) if self.subscriber.cut(&p) => {
                        tracing::warn!(kind = ?p.info.kind, "bus: a subscription to Redis was cut; subscribing again");
                        resync = Some(tokio::time::Instant::now());
                    }
                    Some(p) => self.receive(p.info).await,
                    None => {
                        tracing::error!("bus: the subscription's connection is gone; this node receives no more");
                        return;
                    }
                },
                // A failover: writes may have been lost, so the node checks against the registry once every
                // master answers, after subscribing again where a channel's master changed.
                true = changed => match self.subscriber.follow() {
                    true => {
                        tracing::warn!("bus: the Redis Cluster's masters changed; subscribing again");
                        resync = Some(tokio::time::Instant::now());
                    }
                    false => self.tell_when_every_master_answers(),
                },
                _ = retry, if idle => {
                    resync = None;
                    restoring = Some(self.subscriber.restoring());
                }
                made = made => {
                    restoring = None;
                    match self.subscriber.install(made) {
                        Ok(()) => {
                            tracing::info!("bus: the subscription to Redis is back");
                            failing = false;
                            self.tell_when_every_master_answers();
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut failing, true) {
                                tracing::warn!(error = %e, "bus: could not subscribe again yet; trying every 500 ms");
                            }
                            let next = tokio::time::Instant::now() + Duration::from_millis(500);
                            resync = Some(resync.map_or(next, |r| r.min(next)));
                        }
                    }
                }
            }
        }
    }

    /// Tells the node to check its connections against the registry once every slot has a master that answers
    /// (so the check reaches every slot), from a task of its own: messages keep arriving meanwhile, however long
    /// a master is down.
    fn tell_when_every_master_answers(&mut self) {
        let registry = self.registry.clone();
        let incoming = self.incoming.clone();
        self.telling = Some(AbortOnDropHandle::new(tokio::spawn(async move {
            while registry.every_master_answers().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let _ = incoming.send(Incoming::Resynced).await;
        })));
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
