//! What the rest of the server may read of the login service: its parts that keep their own rules (apps and
//! accounts, policies, the hub, the clock) and the registry, read only. Every write goes through the
//! service's own methods.

use super::auth::Authenticator;
use super::service::{SessionTiming, Sessions};
use crate::accounts::dau::Dau;
use crate::model::{Instance, InstanceKey, Kick};
use crate::push::hub::Hub;
use crate::registry::policies::Policies;
use crate::registry::RegResult;
use crate::runtime::clock::Clock;
use crate::runtime::metrics::Metrics;

impl Sessions {
    /// Apps, accounts and the failure throttle: what a login is checked against.
    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// The per-app policies (the admin API sets and clears overrides through them).
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// This node's connections: where a connection registers to get its pushes.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn timing(&self) -> &SessionTiming {
        &self.timing
    }

    pub fn dau(&self) -> &Dau {
        &self.dau
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref()
    }

    /// Every instance of an app, across the cluster (read only).
    pub async fn app_instances(&self, sdkappid: u32) -> RegResult<Vec<Instance>> {
        self.registry.app_instances(sdkappid).await
    }

    /// The instances this node's connections hold, as the registry has them (read only).
    pub async fn node_instances(&self) -> RegResult<Vec<Instance>> {
        self.registry.node_instances().await
    }

    /// One instance, as the registry has it (read only).
    pub async fn instance(&self, key: &InstanceKey) -> RegResult<Option<Instance>> {
        self.registry.get(key).await
    }

    /// A user's instances (read only).
    pub async fn user_instances(&self, sdkappid: u32, user_id: &str) -> RegResult<Vec<Instance>> {
        self.registry.user_instances(sdkappid, user_id).await
    }

    /// Several users' instances, in the order asked (read only).
    pub async fn users_instances(
        &self,
        sdkappid: u32,
        user_ids: &[String],
    ) -> RegResult<Vec<Vec<Instance>>> {
        self.registry.users_instances(sdkappid, user_ids).await
    }

    /// Webhook events written and not yet delivered by this node.
    pub fn webhooks_queued(&self) -> usize {
        self.outbox.queued()
    }

    /// Why an instance was kicked, while that is remembered.
    pub async fn kick_record(&self, key: &InstanceKey) -> RegResult<Option<Kick>> {
        self.registry.kicked(key).await
    }

    /// Whether the registry answers (the readiness probe).
    pub async fn ping_registry(&self) -> RegResult<()> {
        self.registry.ping().await
    }
}
