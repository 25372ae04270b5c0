//! Reaching Redis: one server through a connection that reconnects by itself, or a Redis Cluster through our
//! client ([`ClusterConn`]: each command to the master of its key's slot, following failovers); either without
//! Nagle's algorithm. And this node's number.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::super::{RegResult, RegistryError};
use super::cluster::{Addr, ClusterConn};
use super::layout::slot;

/// A connection to the registry's Redis: one server, or a cluster. Cheap to clone (both multiplex).
#[derive(Clone)]
pub enum RedisConn {
    One(ConnectionManager),
    Cluster(ClusterConn),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::One(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::One(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::One(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// A server `SCAN` must visit: the one Redis, or one master of a cluster (host, port).
#[derive(Debug, Clone)]
pub enum ScanTarget {
    One,
    Master(Addr),
}

impl RedisConn {
    /// Whether Redis answers: the one server, or any master of the cluster (a failover in progress on one
    /// master leaves the others serving, so the node stays ready).
    pub async fn ping(&self) -> RegResult<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.clone())
            .await
            .map_err(err)
    }

    /// Whether every server holding keys answers (on a cluster: every slot has a master again after a
    /// failover).
    pub async fn every_master_answers(&self) -> RegResult<()> {
        match self {
            RedisConn::One(_) => self.ping().await,
            RedisConn::Cluster(c) => c.every_master_answers().await,
        }
    }

    /// Positions of `prefixes` (group prefixes, whose hash tag names their slot) by the master serving them now:
    /// one batch of all on one Redis.
    pub fn by_master<'a>(&self, prefixes: impl Iterator<Item = &'a str>) -> Vec<Vec<usize>> {
        match self {
            RedisConn::One(_) => vec![(0..prefixes.count()).collect()],
            RedisConn::Cluster(c) => c.by_master(prefixes.map(|p| slot(p.as_bytes()))),
        }
    }

    /// The servers that hold keys: the one Redis, or every master of the cluster now.
    pub fn scan_targets(&self) -> Vec<ScanTarget> {
        match self {
            RedisConn::One(_) => vec![ScanTarget::One],
            RedisConn::Cluster(c) => c.masters().into_iter().map(ScanTarget::Master).collect(),
        }
    }

    /// One step of `SCAN` on `target` over the keys matching `pattern`: the next cursor (0 at the end) and a
    /// batch of keys.
    pub async fn scan_step(
        &self,
        target: &ScanTarget,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RegResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let reply = match (self, target) {
            (RedisConn::Cluster(c), ScanTarget::Master(addr)) => c.on(addr, &cmd).await,
            (conn, _) => cmd.query_async::<Value>(&mut conn.clone()).await,
        }
        .map_err(err)?;
        redis::from_redis_value(reply).map_err(|e| RegistryError(e.to_string()))
    }
}

/// Opens a connection to one Redis that reconnects by itself; a request waits at most `timeout` (then the
/// login that made it answers 70169), and reconnecting never holds requests for long.
pub async fn connect(url: &str, timeout: Duration) -> Result<RedisConn, RegistryError> {
    let client = redis::Client::open(connection_info(url)?).map_err(err)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    client
        .get_connection_manager_with_config(config)
        .await
        .map(RedisConn::One)
        .map_err(err)
}

/// Opens a connection to the Redis Cluster known by its seed nodes `urls` (see [`ClusterConn`]).
pub async fn connect_cluster(
    urls: &[String],
    timeout: Duration,
) -> Result<RedisConn, RegistryError> {
    ClusterConn::connect(urls, timeout)
        .await
        .map(RedisConn::Cluster)
}

/// Where Redis is (`url`), to be reached with Nagle's algorithm off (as Redis itself does on its side): a
/// request is small and waits for its answer, so holding it back until the previous one is acknowledged only
/// adds latency and leaves the CPU idle meanwhile.
pub fn connection_info(url: &str) -> Result<redis::ConnectionInfo, RegistryError> {
    let info = url.into_connection_info().map_err(err)?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    Ok(info.set_tcp_settings(tcp))
}

pub(crate) fn err(e: redis::RedisError) -> RegistryError {
    RegistryError(e.to_string())
}

/// A node's number for this cluster (1, 2, …: short in every stored instance), counted at `key`.
pub async fn node_number(conn: &RedisConn, key: &str) -> Result<u64, RegistryError> {
    redis::cmd("INCR")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .map_err(err)
}
