//! A node's subscriptions to its two channels (its own, and the broadcasts'). On one Redis: one connection that
//! reconnects and resubscribes by itself. On a Redis Cluster: a connection per channel, to the master of the
//! channel's slot and to no other, each made again on its own when it is cut: a master in trouble that serves
//! neither channel holds up nothing here, and one that serves only the broadcasts' channel does not keep the
//! node's own channel from coming back.

use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{ConnectionAddr, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc;

use crate::registry::redis::{connection_info, err, node_url, ClusterConn, RedisConn};
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
    /// The number of the last connection made, and the last one made before every subscription was cut (one
    /// made before that is not kept).
    made: u64,
    floor: u64,
}

struct Shard {
    number: u64,
    master: ConnectionAddr,
    _conn: MultiplexedConnection,
}

enum Conn {
    One(ConnectionManager),
    /// Each channel's connection (with its number, and the master it is to), or `None` while it is cut.
    Shards([Option<Shard>; 2]),
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
            floor: 0,
        };
        subscriber.restore().await?;
        Ok((subscriber, rx))
    }

    /// Whether `pushed` says a subscription was cut (a connection lost, or a channel's slot moved to another
    /// master); if so it is to be made again ([`Subscriber::restoring`]).
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
                let current = conns[i].as_ref().is_some_and(|c| c.number == number);
                if current {
                    conns[i] = None;
                }
                current
            }
            (Conn::Shards(_), None) => false,
        }
    }

    /// The masters changed (a failover): a channel whose slot is served by another master now is to be
    /// subscribed again there, and one being subscribed again now is tried anew. Whether any is to be.
    pub fn follow(&mut self) -> bool {
        let (Conn::Shards(conns), RedisConn::Cluster(map)) = (&mut self.conn, &self.registry)
        else {
            return false;
        };
        self.floor = self.made;
        for (conn, channel) in conns.iter_mut().zip(&self.channels) {
            let now = map.master_for(channel).map(|info| info.addr().clone());
            if conn
                .as_ref()
                .is_some_and(|c| Some(&c.master) != now.as_ref())
            {
                *conn = None;
            }
        }
        conns.iter().any(Option::is_none)
    }

    /// Makes again what was cut: the work, to run beside what arrives meanwhile, and then hand to
    /// [`Subscriber::install`]. One server's connection resubscribes by itself once a command makes it
    /// reconnect. On a cluster each channel cut is subscribed anew where its slot now is, side by side.
    pub fn restoring(&mut self) -> BoxFuture<'static, Made> {
        let conns = match &self.conn {
            Conn::One(c) => {
                let mut c = c.clone();
                return Box::pin(async move {
                    Made::One(
                        redis::cmd("PING")
                            .query_async::<()>(&mut c)
                            .await
                            .map_err(err),
                    )
                });
            }
            Conn::Shards(conns) => conns,
        };
        let RedisConn::Cluster(map) = &self.registry else {
            return Box::pin(async { Made::Shards(Vec::new()) });
        };
        let mut tries = Vec::new();
        for (i, channel) in self.channels.iter().enumerate() {
            if conns[i].is_some() {
                continue;
            }
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
            let (map, channel) = (map.clone(), channel.clone());
            tries.push(async move { (from, subscribe(&map, &channel, config).await) });
        }
        Box::pin(async move { Made::Shards(join_all(tries).await) })
    }

    /// Keeps what [`Subscriber::restoring`] made; `Ok` once every channel is subscribed. Those that succeeded
    /// stay, whatever the others did.
    pub fn install(&mut self, made: Made) -> Result<(), RegistryError> {
        let conns = match (&mut self.conn, made) {
            (Conn::One(_), Made::One(r)) => return r,
            (Conn::Shards(conns), Made::Shards(made)) => {
                let mut failed = None;
                for ((i, number), r) in made {
                    match r {
                        Ok((master, conn)) if number > self.floor && conns[i].is_none() => {
                            conns[i] = Some(Shard {
                                number,
                                master,
                                _conn: conn,
                            })
                        }
                        Ok(_) => {}
                        Err(e) => failed = Some(e),
                    }
                }
                if let Some(e) = failed {
                    return Err(e);
                }
                conns
            }
            _ => return Err(RegistryError("a subscription of another kind".into())),
        };
        match conns.iter().all(Option::is_some) {
            true => Ok(()),
            false => Err(RegistryError("a subscription is still cut".into())),
        }
    }

    /// Subscribes anew to what was cut (all at once; at start).
    async fn restore(&mut self) -> Result<(), RegistryError> {
        let made = self.restoring().await;
        self.install(made)
    }
}

/// What [`Subscriber::restoring`] made: on one Redis, whether it answers; on a cluster, each channel's new
/// connection (by its position and number) or why there is none.
pub enum Made {
    One(Result<(), RegistryError>),
    Shards(Vec<((usize, u64), Subscribed)>),
}

/// A connection subscribed to a channel, and the master it is to; or why there is none.
type Subscribed = Result<(ConnectionAddr, MultiplexedConnection), RegistryError>;

/// A connection to the master of `channel`'s slot (as `map` has it), subscribed to it. A master that answers
/// `MOVED` (the slot moved since the map was read: a planned failover, a resharding) is followed at once, once.
async fn subscribe(
    map: &ClusterConn,
    channel: &str,
    config: redis::AsyncConnectionConfig,
) -> Subscribed {
    let mut info = map
        .master_for(channel)
        .ok_or_else(|| RegistryError("a Redis Cluster slot has no master".into()))?;
    for _ in 0..2 {
        let master = info.addr().clone();
        let mut conn = redis::Client::open(resp3(info.clone()))
            .map_err(err)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)?;
        let e = match redis::cmd("SSUBSCRIBE")
            .arg(channel)
            .exec_async(&mut conn)
            .await
        {
            Ok(()) => return Ok((master, conn)),
            Err(e) => e,
        };
        let moved = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Moved);
        let Some((to, _)) = e.redirect_node().filter(|_| moved) else {
            return Err(err(e));
        };
        // The map is read again too, for the next channel and the registry.
        map.stale();
        let (host, port) = to.rsplit_once(':').unwrap_or((to, ""));
        let addr = (host.to_owned(), port.parse().unwrap_or(0));
        let settings = info.redis_settings().clone();
        info = connection_info(&node_url(&addr))?.set_redis_settings(settings);
    }
    Err(RegistryError("a bus channel's slot keeps moving".into()))
}

fn resp3(info: redis::ConnectionInfo) -> redis::ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
}
