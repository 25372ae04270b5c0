//! A node's subscriptions to its two channels (its own, and the broadcasts'). On one Redis: one connection that
//! reconnects and resubscribes by itself. On a Redis Cluster: a connection per channel, to the master of the
//! channel's slot and to no other, each made again on its own when it is cut: a master in trouble that serves
//! neither channel holds up nothing here, and one that serves only the broadcasts' channel does not keep the
//! node's own channel from coming back.

use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc;

use crate::registry::redis::{err, RedisConn};
use crate::registry::RegistryError;

/// What a subscription's connection pushed, with which connection it came from: on a cluster the position of
/// its channel and the connection's number (a push from a connection since replaced says nothing of the
/// current one); on one Redis neither.
pub struct Pushed {
    pub info: PushInfo,
    from: Option<(usize, u64)>,
}

/// Where the bus's Redis is: one server (its URL), or the registry's cluster (whose map of the slots says where
/// each channel is).
pub enum BusRedis {
    One(String),
    Cluster,
}

pub struct Subscriber {
    channels: [String; 2],
    conn: Conn,
    registry: RedisConn,
    timeout: Duration,
    /// Where what the connections push goes; kept here so it stays open while their connections come and go.
    pushes: mpsc::UnboundedSender<Pushed>,
    /// The number of the last connection made.
    made: u64,
}

enum Conn {
    One(ConnectionManager),
    /// Each channel's connection (with its number), or `None` while it is cut.
    Shards([Option<(u64, MultiplexedConnection)>; 2]),
}

impl Subscriber {
    /// Connects to `redis` and subscribes to `channels`; what arrives goes to the returned receiver. On a
    /// cluster, each channel's master is found in `registry`'s map of the slots.
    pub async fn open(
        redis: &BusRedis,
        registry: &RedisConn,
        channels: [String; 2],
        timeout: Duration,
    ) -> Result<(Subscriber, mpsc::UnboundedReceiver<Pushed>), RegistryError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = match redis {
            BusRedis::One(url) => {
                let tx = tx.clone();
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500))
                    .set_push_sender(move |info| tx.send(Pushed { info, from: None }))
                    .set_automatic_resubscription();
                let info = resp3(crate::registry::redis::connection_info(url)?);
                let mut conn = redis::Client::open(info)
                    .map_err(err)?
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(err)?;
                conn.subscribe(&channels).await.map_err(err)?;
                Conn::One(conn)
            }
            BusRedis::Cluster => Conn::Shards([None, None]),
        };
        let mut subscriber = Subscriber {
            channels,
            conn,
            registry: registry.clone(),
            timeout,
            pushes: tx,
            made: 0,
        };
        subscriber.restore().await?;
        Ok((subscriber, rx))
    }

    /// Whether `pushed` says a subscription was cut (a connection lost, or a channel's slot moved to another
    /// master); if so it is to be made again ([`Subscriber::restore`]).
    pub fn cut(&mut self, pushed: &Pushed) -> bool {
        if !matches!(
            pushed.info.kind,
            PushKind::Disconnection | PushKind::SUnsubscribe
        ) {
            return false;
        }
        match (&mut self.conn, pushed.from) {
            (Conn::One(_), _) => true,
            (Conn::Shards(conns), Some((i, number))) => {
                let current = conns[i].as_ref().is_some_and(|(n, _)| *n == number);
                if current {
                    conns[i] = None;
                }
                current
            }
            (Conn::Shards(_), None) => false,
        }
    }

    /// Every subscription is to be made again (the masters changed: the channels' slots may have moved).
    pub fn cut_all(&mut self) {
        if let Conn::Shards(conns) = &mut self.conn {
            *conns = [None, None];
        }
    }

    /// Makes again what was cut; `Ok` once every channel is subscribed. One server's connection resubscribes
    /// by itself once a command makes it reconnect. On a cluster each channel cut is subscribed anew where its
    /// slot now is, side by side; those that succeed stay, whatever the others do.
    pub async fn restore(&mut self) -> Result<(), RegistryError> {
        let conns = match &mut self.conn {
            Conn::One(c) => return redis::cmd("PING").query_async::<()>(c).await.map_err(err),
            Conn::Shards(conns) => conns,
        };
        let RedisConn::Cluster(map) = &self.registry else {
            return Err(RegistryError(
                "the bus is on a cluster, the registry is not".into(),
            ));
        };
        let mut tries = Vec::new();
        for (i, channel) in self.channels.iter().enumerate() {
            if conns[i].is_none() {
                self.made += 1;
                let from = (i, self.made);
                let tx = self.pushes.clone();
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_push_sender(move |info| {
                        tx.send(Pushed {
                            info,
                            from: Some(from),
                        })
                    });
                tries.push(async move {
                    let info = map.master_for(channel).ok_or_else(|| {
                        RegistryError("a Redis Cluster slot has no master".into())
                    })?;
                    let mut conn = redis::Client::open(resp3(info))
                        .map_err(err)?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(err)?;
                    match redis::cmd("SSUBSCRIBE")
                        .arg(channel)
                        .exec_async(&mut conn)
                        .await
                    {
                        Ok(()) => Ok((from, conn)),
                        Err(e) => {
                            // The channel's slot is elsewhere by now: the map is read again before the next
                            // try.
                            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) {
                                map.stale();
                            }
                            Err(err(e))
                        }
                    }
                });
            }
        }
        let mut failed = None;
        for made in join_all(tries).await {
            match made {
                Ok(((i, number), conn)) => conns[i] = Some((number, conn)),
                Err(e) => failed = Some(e),
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

fn resp3(info: redis::ConnectionInfo) -> redis::ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
}
