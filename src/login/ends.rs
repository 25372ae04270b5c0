//! How an instance ends or waits: its UserSig expiring, a switch away from it, its connection ending (one at a
//! time, or written in groups by the connection-ends worker for the cluster registry).

use crate::runtime::batch::{group_commit, Grouping, WriteGroup};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::service::{Actor, Sessions};
use super::settle::Write;
use crate::model::{Cause, ConnRef, InstanceKey};
use crate::registry::RemoveIf;

/// Connection ends written to the registry in one step at most (see [`Sessions::detach_until`]).
const DETACH_BATCH: usize = 256;

/// A connection that ended holding an instance, and why.
pub(super) type Ended = (InstanceKey, ConnRef, Cause);

impl Sessions {
    /// Removes the instance because its UserSig expired at `expires_at` (unless renewed meanwhile).
    pub async fn expire(&self, key: &InstanceKey, expires_at: i64) {
        match self
            .registry
            .remove(key, RemoveIf::SigExpiresAt(expires_at))
            .await
        {
            Ok(Some((inst, seq))) => self.emit(
                &inst,
                seq,
                Cause::UserSigExpired,
                Actor::Client(inst.ip),
                Vec::new(),
            ),
            Ok(None) => {}
            Err(e) => {
                let w = Write::Remove {
                    key: key.clone(),
                    cond: RemoveIf::SigExpiresAt(expires_at),
                    cause: Some(Cause::UserSigExpired),
                };
                self.retry_later(e, "could not remove an instance whose UserSig expired", w)
            }
        }
    }

    /// Logs out the instance connection `conn` switches away from (a login as someone else, a resume of another
    /// instance), unless another connection's resume took it meanwhile; the connection no longer holds it, so a
    /// removal that fails is done again later.
    pub async fn switch_away(&self, key: &InstanceKey, conn: ConnRef, ip: IpAddr) {
        let cond = RemoveIf::NotElsewhere(conn);
        match self.registry.remove(key, cond).await {
            Ok(Some((inst, seq))) => {
                self.emit(&inst, seq, Cause::Switch, Actor::Client(ip), Vec::new())
            }
            Ok(None) => {}
            Err(e) => {
                let w = Write::Remove {
                    key: key.clone(),
                    cond,
                    cause: Some(Cause::Switch),
                };
                self.retry_later(
                    e,
                    "could not log out the instance being switched away from",
                    w,
                )
            }
        }
    }

    /// The connection ended without `logout` (`cause`: lost, or silent past the heartbeat): the instance stays,
    /// disconnected, for the grace (the reaper removes it after that).
    pub async fn detach(&self, key: &InstanceKey, conn: ConnRef, cause: Cause) {
        match self.registry.detach(key, conn, self.clock.now_ms()).await {
            Ok(Some((inst, seq))) => {
                self.emit(&inst, seq, cause, Actor::Client(inst.ip), Vec::new())
            }
            Ok(None) => {}
            Err(e) => {
                let w = Write::Detach {
                    key: key.clone(),
                    conn,
                    cause: Some(cause),
                };
                self.retry_later(e, "could not mark an instance disconnected", w)
            }
        }
    }

    /// [`Sessions::detach`] without waiting: the connection ends now, and its instance is marked disconnected with
    /// others that ended meanwhile, in one call to the registry (see `EndsWorker`).
    pub fn detach_later(&self, key: InstanceKey, conn: ConnRef, cause: Cause) {
        // Connections end before the worker stops: one that ends after it is the process's last moment.
        if self.ended.send((key, conn, cause)).is_err() {
            tracing::debug!("a connection ended after its end could be written");
        }
    }

    pub(super) async fn write_detaches(&self, batch: &mut Vec<Ended>) {
        let (ended, causes): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|(key, conn, cause)| ((key, conn), cause))
            .unzip();
        match self.registry.detach_many(&ended, self.clock.now_ms()).await {
            Ok(results) => {
                for (r, cause) in results.into_iter().zip(causes) {
                    if let Some((inst, seq)) = r {
                        self.emit(&inst, seq, cause, Actor::Client(inst.ip), Vec::new());
                    }
                }
            }
            Err(e) => {
                self.registry_failed(e, "could not mark instances disconnected");
                for ((key, conn), cause) in ended.into_iter().zip(causes) {
                    let cause = Some(cause);
                    self.unsettled.push(Write::Detach { key, conn, cause });
                }
            }
        }
    }
}

/// The worker that marks the instances of connections that ended disconnected (see [`Sessions::detach_later`]),
/// made with the service. For the cluster registry: one script call for every end queued while the call before
/// it ran, instead of a round trip each; an end waits at most for the call in flight.
pub struct EndsWorker {
    pub(super) sessions: Arc<Sessions>,
    pub(super) rx: mpsc::UnboundedReceiver<Ended>,
}

impl EndsWorker {
    /// Writes ends until `stop`, then those still queued (connections are closed before workers stop: what is
    /// queued then is the last of them).
    pub async fn run(mut self, stop: CancellationToken) {
        let grouping = Grouping::at_most(DETACH_BATCH);
        group_commit(&mut self.rx, grouping, &stop, &mut &*self.sessions).await;
    }
}

impl WriteGroup<Ended> for &Sessions {
    async fn write_group(&mut self, batch: &mut Vec<Ended>) {
        self.write_detaches(batch).await
    }
}
