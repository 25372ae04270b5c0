//! Reaching Redis: a connection that reconnects by itself, without Nagle's algorithm, and this node's number.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::IntoConnectionInfo;

use super::super::RegistryError;

/// Opens a connection to Redis that reconnects by itself; a request waits at most `timeout` (then the login
/// that made it answers 70169), and reconnecting never holds requests for long.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, RegistryError> {
    let client = redis::Client::open(connection_info(url)?).map_err(err)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(err)
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

/// A node's number for this cluster (1, 2, …: short in every stored instance).
pub async fn node_number(conn: &ConnectionManager, ns: &str) -> Result<u64, RegistryError> {
    redis::cmd("INCR")
        .arg(format!("{ns}:node-ids"))
        .query_async(&mut conn.clone())
        .await
        .map_err(err)
}
