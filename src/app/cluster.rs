//! Which registry and bus a node runs: in memory (one node), or in Redis (a cluster, `registry.backend =
//! "redis"`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{RegistryBackend, Settings};
use crate::push::bus::{Bus, Incoming, LocalBus};
use crate::registry::memory::MemoryRegistry;
use crate::registry::redis::RedisRegistry;
use crate::registry::users::Users;
use crate::registry::Registry;
use crate::runtime::clock::Clock;
use crate::runtime::workers::Workers;

/// How long a Redis request may take before the login that made it answers 70169.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

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
            let url = r.redis_url.expose();
            let unreachable = |e: crate::registry::RegistryError| {
                anyhow::anyhow!("Redis (registry.redis_url): {e}")
            };
            let conn = crate::registry::redis::connect(url, REDIS_TIMEOUT)
                .await
                .map_err(unreachable)?;
            let node = crate::registry::redis::node_number(&conn, &r.namespace)
                .await
                .map_err(unreachable)?;
            let (bus, worker, incoming) = crate::push::redis_bus::connect(
                url,
                &r.namespace,
                node,
                conn.clone(),
                REDIS_TIMEOUT,
            )
            .await
            .map_err(unreachable)?;
            workers.start("bus", |stop| worker.run(stop));
            let registry = RedisRegistry::new(
                conn,
                &r.namespace,
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
