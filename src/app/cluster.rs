//! Which registry and bus a node runs: in memory (one node), or in Redis (a cluster, `registry.backend =
//! "redis"`): one Redis (`registry.redis_url`), or a Redis Cluster (`registry.redis_cluster_nodes`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{RegistryBackend, Settings};
use crate::push::bus::{Bus, Incoming, LocalBus};
use crate::push::redis_bus::BusRedis;
use crate::registry::memory::MemoryRegistry;
use crate::registry::redis::{Layout, RedisRegistry};
use crate::registry::users::Users;
use crate::registry::Registry;
use crate::runtime::clock::Clock;
use crate::runtime::workers::Workers;

/// This node's number, and the registry and bus of `registry.backend`: in memory (one node), or in Redis (a
/// cluster, where nodes are numbered by Redis; the bus's task is started into `workers`, and what it brings is
/// returned for the bus follower).
pub async fn cluster(
    settings: &Settings,
    clock: &Clock,
    users: &Arc<Users>,
    workers: &mut Workers,
) -> anyhow::Result<(
    u64,
    Arc<dyn Registry>,
    Arc<dyn Bus>,
    Option<tokio::sync::mpsc::Receiver<Incoming>>,
)> {
    let r = &settings.registry;
    match r.backend {
        RegistryBackend::Memory => Ok((
            1,
            Arc::new(MemoryRegistry::new(users.clone())),
            Arc::new(LocalBus),
            None,
        )),
        RegistryBackend::Redis => {
            let timeout = Duration::from_millis(r.redis_timeout_ms);
            let url = r.redis_url.expose();
            let seeds: Vec<String> = r
                .redis_cluster_nodes
                .iter()
                .map(|s| s.expose().to_owned())
                .collect();
            let key = match seeds.is_empty() {
                true => "registry.redis_url",
                false => "registry.redis_cluster_nodes",
            };
            let unreachable =
                |e: crate::registry::RegistryError| anyhow::anyhow!("Redis ({key}): {e}");
            let (conn, layout, redis) = if seeds.is_empty() {
                let conn = crate::registry::redis::connect(url, timeout).await;
                (
                    conn,
                    Layout::single(&r.namespace),
                    BusRedis::One(url.to_owned()),
                )
            } else {
                let conn = crate::registry::redis::connect_cluster(&seeds, timeout).await;
                let layout = Layout::cluster(&r.namespace).map_err(unreachable)?;
                (conn, layout, BusRedis::Cluster)
            };
            let conn = conn.map_err(unreachable)?;
            let node = crate::registry::redis::node_number(&conn, &layout.global("node-ids"))
                .await
                .map_err(unreachable)?;
            let (bus, worker, incoming) =
                crate::push::redis_bus::connect(redis, &r.namespace, node, conn.clone(), timeout)
                    .await
                    .map_err(unreachable)?;
            workers.start("bus", |stop| worker.run(stop));
            let registry = RedisRegistry::new(
                conn,
                layout,
                node,
                Duration::from_secs(settings.session.reconnect_grace_secs),
                Duration::from_secs(r.node_timeout_secs),
                clock.clone(),
            );
            // Known to the cluster before the first login.
            registry.heartbeat().await.map_err(unreachable)?;
            Ok((node, Arc::new(registry), bus, Some(incoming)))
        }
    }
}
