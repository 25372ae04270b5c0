//! Keeping this node and the registry in step: the reaper, the cluster heartbeat, what the bus brings, and the
//! checks of the node's connections against the registry after pushes may have been lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::service::{Actor, Sessions};
use crate::model::{Cause, ConnRef, InstanceKey, Kick, LoginFacts, Seq};
use crate::push::bus::{Incoming, Message};
use crate::push::hub::Push;
use crate::registry::{Attach, Reaped, Take};

/// Tries of a connection's check before it is left to the settler's next sweep, and the pause between them.
const CHECK_TRIES: u32 = 3;
const CHECK_PAUSE: Duration = Duration::from_millis(250);

/// Where a connection's instance stands in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// Attached to the connection (again, or put back after the registry lost it), with the change that
    /// attached it if the registry answered.
    Attached(Option<Seq>),
    /// Removed by a kick this node did not hear of.
    Kicked(Kick),
    /// Resumed on another connection by its client (this node did not hear of it): this one is closed with
    /// 4002, as that resume would have closed it; the instance stays where it is.
    Elsewhere,
    /// Removed (its grace ended while the node was cut off): the client must resume, which tells it to log in.
    Gone,
}

impl Sessions {
    /// The reaper: removes disconnected instances at the end of their grace, or at their UserSig's expiry, a
    /// quarter of the grace apart (at most a second), until `stop`. One task and one scan, instead of a timer
    /// per instance.
    pub async fn reap_until(self: Arc<Self>, stop: CancellationToken) {
        let grace_ms = self.timing.reconnect_grace.as_millis() as i64;
        let every = Duration::from_millis((grace_ms / 4).clamp(50, 1000) as u64);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match self.registry.reap(self.clock.now_ms(), grace_ms).await {
                Ok(reaped) => {
                    for r in reaped {
                        // The end of the grace sends nothing: the disconnection was reported when it happened.
                        let (inst, seq, cause) = match r {
                            Reaped::Expired(inst, seq) => (inst, seq, Cause::UserSigExpired),
                            Reaped::Disconnected(inst, seq) => (inst, seq, Cause::Disconnect),
                            Reaped::GraceEnded(_) => continue,
                        };
                        let ip = inst.ip;
                        self.emit(&inst, seq, cause, Actor::Client(ip), Vec::new());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not reap disconnected instances"),
            }
        }
    }

    /// Heartbeats into the cluster registry every second until `stop`; when the cluster had given this node up
    /// (it was silent too long), its connections are checked against the registry. At the end, the node leaves.
    pub async fn heartbeat_until(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            match self.registry.heartbeat().await {
                Ok(forgotten) => {
                    if forgotten && !first {
                        tracing::warn!(
                            "the cluster had given this node up; checking its connections"
                        );
                        self.reconcile().await;
                    }
                    first = false;
                }
                Err(e) => tracing::warn!(error = %e, "cluster heartbeat failed"),
            }
        }
        if let Err(e) = self.registry.leave().await {
            tracing::warn!(error = %e, "could not leave the cluster; it will notice the silence");
        }
    }

    /// Handles what the bus brings until it closes or `stop`.
    pub async fn follow_bus(
        self: Arc<Self>,
        mut incoming: mpsc::Receiver<Incoming>,
        stop: CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                n = incoming.recv() => n,
                _ = stop.cancelled() => None,
            };
            match next {
                None => return,
                Some(Incoming::Resynced) => {
                    // Changes to accounts and policies announced meanwhile were missed: they are read again.
                    self.auth.accounts().invalidate_all();
                    if let Err(e) = self.policies.reload().await {
                        tracing::warn!(error = %e, "could not reload the admins' policies");
                    }
                    self.reconcile().await;
                }
                Some(Incoming::Message(e)) => match e.message {
                    Message::Account { sdkappid, user_id } => {
                        self.auth.accounts().invalidate(sdkappid, &user_id)
                    }
                    Message::Policies => {
                        if let Err(e) = self.policies.reload().await {
                            tracing::warn!(error = %e, "could not reload the admins' policies");
                        }
                    }
                    // Rate-limited: the settler checks the connections at its next sweep.
                    Message::Recheck => self.unsettled.recheck(),
                    message => self.hub.on_message(e.from, message),
                },
            }
        }
    }

    /// Tells every node that an account's login state changed (an admin disabled, deleted or revoked it).
    pub fn account_changed(&self, sdkappid: u32, user_id: &str) {
        self.hub.bus().broadcast(Message::Account {
            sdkappid,
            user_id: user_id.to_owned(),
        });
    }

    /// Tells every node that an admin changed a policy.
    pub fn policies_changed(&self) {
        self.hub.bus().broadcast(Message::Policies);
    }

    /// Brings this node back in line with the registry after pushes may have been lost: every connection checks
    /// its instance ([`Sessions::recheck`]), and instances the registry holds as attached here, on connections
    /// that no longer exist, are marked disconnected.
    pub async fn reconcile(&self) -> bool {
        self.hub.recheck_all();
        self.sweep_ghosts().await
    }

    /// Tells every node (this one too) to check its connections against the registry: an undone write may have
    /// kicked instances anywhere.
    pub(crate) fn recheck_everywhere(&self) {
        self.unsettled.recheck();
        self.hub.bus().broadcast(Message::Recheck);
    }

    /// Marks disconnected every instance the registry holds as attached to a connection number this node does
    /// not hold (a connection that ended while the registry could not be told, an attempt that failed); the
    /// reaper removes them after the grace. `false` if the registry could not be read.
    pub async fn sweep_ghosts(&self) -> bool {
        match self.registry.node_instances().await {
            Ok(instances) => {
                let mut ghosts = 0;
                for inst in instances {
                    if let Some(conn) = inst.conn.filter(|c| !self.hub.holds(*c)) {
                        self.detach(&inst.key(), conn, Cause::Disconnect).await;
                        ghosts += 1;
                    }
                }
                if ghosts > 0 {
                    // Written by a request that reached the registry late, which may have kicked others too.
                    tracing::warn!(
                        ghosts,
                        "instances of connections this node no longer holds were disconnected"
                    );
                    self.recheck_everywhere();
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not list this node's instances");
                false
            }
        }
    }

    /// Checks that the instance is still attached to `conn` (attaching it again if the cluster marked it
    /// disconnected meanwhile, or putting it back if Redis lost it); one its client resumed on another
    /// connection since stays there.
    pub async fn recheck(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        sig_expires_at: i64,
        facts: &LoginFacts,
    ) -> Recheck {
        // A check often runs as Redis comes back, when the first request on a connection to it may still fail:
        // it is tried a few times before it is left to the settler's next sweep.
        let mut tries = 1;
        let attached = loop {
            let now = self.clock.now_secs();
            match self
                .registry
                .attach(key, conn, now, Take::IfNewer(facts.seq))
                .await
            {
                Err(_) if tries < CHECK_TRIES => tries += 1,
                r => break r,
            }
            tokio::time::sleep(CHECK_PAUSE).await;
        };
        match attached {
            Ok(Attach::Attached {
                previous,
                attachment,
                ..
            }) => {
                // Taken back from a connection Redis forgot was older (a failover lost this one's write).
                if let Some(previous) = previous {
                    let push = Push::ResumedElsewhere {
                        instance_id: key.instance_id.clone(),
                        attachment: Some(attachment),
                    };
                    self.hub.send(previous, push).await;
                }
                Recheck::Attached(Some(attachment))
            }
            // The connection's own timer tells its client.
            Ok(Attach::Expired(_)) => Recheck::Attached(None),
            Ok(Attach::Elsewhere(_)) => Recheck::Elsewhere,
            Ok(Attach::Gone) => match self.registry.kicked(key).await {
                Ok(Some(kick)) => Recheck::Kicked(kick),
                _ => self.put_back(key, conn, sig_expires_at, facts).await,
            },
            Err(e) => self.unchecked(&e),
        }
    }

    /// A check that could not be made: every connection checks again at the settler's next sweep.
    fn unchecked(&self, e: &dyn std::fmt::Display) -> Recheck {
        self.registry_failed(
            e,
            "could not check an instance against the registry; checking again later",
        );
        self.unsettled.recheck();
        Recheck::Attached(None)
    }

    /// An instance the registry no longer has, whose connection is live: put back if Redis lost it (the user's
    /// record is older than the connection's last write, as after a failover that lost it), and if that kicks
    /// nobody; otherwise gone (the client is told to come back, and logs in again).
    async fn put_back(
        &self,
        key: &InstanceKey,
        conn: ConnRef,
        sig_expires_at: i64,
        facts: &LoginFacts,
    ) -> Recheck {
        let Some(app) = self.auth.apps().get(key.sdkappid) else {
            return Recheck::Gone;
        };
        if sig_expires_at <= self.clock.now_secs() {
            return Recheck::Gone;
        }
        // Not an account ended meanwhile (deleted, disabled, or its tickets revoked after this login), whose
        // kick records the same failover may have lost; read from the database, as the message that would have
        // updated this node's cache went through Redis too.
        match self
            .auth
            .accounts()
            .stored_login_state(key.sdkappid, &key.user_id)
            .await
        {
            Ok(Some(a)) if !a.disabled && a.revoked_at < facts.login_at_ms / 1000 => {}
            Ok(_) => return Recheck::Gone,
            Err(e) => return self.unchecked(&e),
        }
        let inst = facts.instance(key, sig_expires_at, conn);
        let policy = self.policies.effective(&app);
        match self
            .registry
            .reassert(inst, &policy, self.remember_ms(), facts.seq)
            .await
        {
            Ok(Some(_)) => {
                tracing::info!(
                    sdkappid = key.sdkappid,
                    "an instance the registry lost (a Redis failover) was put back"
                );
                // Put back with the number of the attachment Redis lost, which this connection keeps.
                Recheck::Attached(Some(facts.seq))
            }
            Ok(None) => Recheck::Gone,
            Err(e) => self.unchecked(&e),
        }
    }
}
