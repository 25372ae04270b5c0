//! The bus over Redis pub/sub: each node subscribes to its own channel (`NS:bus:NODE`) and to `NS:bus:all`.
//!
//! Pub/sub delivers at most once: a message published while a node's subscription is cut is lost. The
//! subscription runs on a RESP3 connection that reconnects and resubscribes by itself; when it comes back the
//! node is told ([`Incoming::Resynced`]) and checks its connections against the registry, which is the truth
//! (a kick that was lost in transit is found there).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, Envelope, Incoming, Message};
use crate::registry::RegistryError;

/// Messages waiting to be published; past that a message is dropped (the registry stays right, and a node that
/// far behind is told to resync).
const OUT_QUEUE: usize = 64 * 1024;
/// Messages published in one round trip at most.
const BATCH: usize = 256;

fn channel(ns: &str, node: Option<u64>) -> String {
    match node {
        Some(n) => format!("{ns}:bus:{n:016x}"),
        None => format!("{ns}:bus:all"),
    }
}

pub struct RedisBus {
    node: u64,
    ns: String,
    out: mpsc::Sender<(String, String)>,
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

/// The bus's task: publishes what nodes send, hands on what arrives (see [`crate::runtime::workers`]).
pub struct BusWorker {
    node: u64,
    publisher: ConnectionManager,
    subscriber: ConnectionManager,
    out: mpsc::Receiver<(String, String)>,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    incoming: mpsc::Sender<Incoming>,
}

/// Connects and subscribes (before the node serves, so nothing addressed to it is missed). Returns the bus, its
/// task, and what arrives.
pub async fn connect(
    url: &str,
    ns: &str,
    node: u64,
    publisher: ConnectionManager,
    timeout: Duration,
) -> Result<(Arc<RedisBus>, BusWorker, mpsc::Receiver<Incoming>), RegistryError> {
    let err = |e: redis::RedisError| RegistryError(e.to_string());
    let info = crate::registry::redis::connection_info(url)?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings)).map_err(err)?;
    let (push_tx, pushes) = mpsc::unbounded_channel();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
        .set_push_sender(push_tx)
        .set_automatic_resubscription();
    let mut subscriber = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(err)?;
    subscriber
        .subscribe(&[channel(ns, Some(node)), channel(ns, None)])
        .await
        .map_err(err)?;
    let (out_tx, out) = mpsc::channel(OUT_QUEUE);
    let (incoming_tx, incoming) = mpsc::channel(OUT_QUEUE);
    let bus = Arc::new(RedisBus {
        node,
        ns: ns.to_owned(),
        out: out_tx,
    });
    let worker = BusWorker {
        node,
        publisher,
        subscriber,
        out,
        pushes,
        incoming: incoming_tx,
    };
    Ok((bus, worker, incoming))
}

impl BusWorker {
    pub async fn run(mut self, stop: CancellationToken) {
        // Set while the subscription is cut: the next attempt to bring it back.
        let mut resync: Option<tokio::time::Instant> = None;
        loop {
            let retry = async {
                match resync {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                first = self.out.recv() => match first {
                    Some(first) => self.publish(first).await,
                    None => return,
                },
                push = self.pushes.recv() => match push {
                    Some(p) if p.kind == PushKind::Disconnection => {
                        tracing::warn!("bus: the subscription to Redis was cut; reconnecting");
                        resync = Some(tokio::time::Instant::now());
                    }
                    Some(p) => self.receive(p).await,
                    None => return,
                },
                _ = retry => {
                    // A command makes the manager reconnect, and it resubscribes on its own.
                    let pong = redis::cmd("PING").query_async::<()>(&mut self.subscriber).await;
                    resync = match pong {
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

    /// Publishes `first` and whatever else is queued (up to a batch) in one round trip.
    async fn publish(&mut self, first: (String, String)) {
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg(first.0).arg(first.1).ignore();
        let mut n = 1;
        while n < BATCH {
            let Ok((channel, payload)) = self.out.try_recv() else {
                break;
            };
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            n += 1;
        }
        if let Err(e) = pipe.query_async::<()>(&mut self.publisher).await {
            tracing::warn!(error = %e, messages = n, "bus: could not publish; messages to other nodes were lost");
        }
    }

    async fn receive(&self, push: PushInfo) {
        if push.kind != PushKind::Message {
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
