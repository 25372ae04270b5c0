//! Registry writes whose outcome is unknown, settled later: a request that timed out may have committed, a
//! request refused by an unreachable registry did not. Either way, what the node meant is done again once the
//! registry answers, so no instance outlives what the node knows of it (PROTOCOL §4):
//!
//! - a login or resume answered with an error leaves nothing behind: an admission is undone (its instance was
//!   never given out), an attachment to the failed attempt's connection number is undone (the connection took a
//!   new number, see `Shell::retire_conn`, so a retry that succeeded is never touched);
//! - a connection's end, an expiry, a switch away from an instance are written when they could not be at once.
//!
//! What is queued is retried in order until the registry answers. It follows the write it settles on the same
//! connection to Redis, so Redis runs it after that write even when the answer came too late. After any error of
//! the registry (or past [`MAX_QUEUED`] writes) the node also sweeps, once the queue is settled and again a
//! minute later (for a write that reached Redis only after its connection broke): every instance the registry
//! holds as attached to a connection number this node does not hold is marked disconnected, and the reaper
//! removes it after the grace.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::login::service::{Actor, Sessions};
use crate::model::Cause;
use crate::model::{ConnRef, InstanceKey};
use crate::registry::RemoveIf;

/// Writes kept for retry at most; past it, the sweep settles what was not kept.
pub const MAX_QUEUED: usize = 100_000;
/// How often queued writes are retried while the registry does not answer.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// The sweeps after an error (a scan of the registry's users) run this far apart.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Sweeps after an error: at once, and once more for writes that arrived late.
const SWEEPS: u8 = 2;

/// A write to do again until the registry answers.
#[derive(Debug, Clone)]
pub enum Write {
    /// Remove the instance if `cond` holds; a webhook of `cause` if it was removed (none for an undone login).
    Remove {
        key: InstanceKey,
        cond: RemoveIf,
        cause: Option<Cause>,
    },
    /// Mark the instance disconnected if it is still attached to `conn`; a webhook of `cause` if it was.
    Detach {
        key: InstanceKey,
        conn: ConnRef,
        cause: Option<Cause>,
    },
    /// Kick every instance of an app a reload removed (unless it is configured again by then).
    EndApp { sdkappid: u32 },
}

/// The node's unsettled writes, and whether the registry may hold what the node does not know of.
#[derive(Default)]
pub struct Unsettled {
    /// The writes, each with whether a try of it failed (it may have run all the same).
    queue: Mutex<VecDeque<(Write, bool)>>,
    /// A registry error was seen (or the queue overflowed) since the last sweep.
    suspect: AtomicBool,
    /// The next sweep also has every connection check its instance (instances may have been kicked unseen).
    recheck: AtomicBool,
    wake: Notify,
}

impl Unsettled {
    /// Queues a write to retry.
    pub fn push(&self, w: Write) {
        {
            let mut q = self.queue.lock().expect("not poisoned");
            if q.len() >= MAX_QUEUED {
                // The sweep settles what a connection's end or a failed attempt left attached.
                tracing::warn!(
                    "too many unsettled registry writes; the next sweep settles the rest"
                );
                self.suspect.store(true, Ordering::SeqCst);
                return;
            }
            q.push_back((w, false));
        }
        self.wake.notify_one();
    }

    /// The registry failed a request: it may hold what this node does not know of.
    pub fn suspect(&self) {
        self.suspect.store(true, Ordering::SeqCst);
    }

    /// Instances of this node's connections may have been kicked unseen (by a write undone after it ran): the
    /// next sweep has every connection check its instance too.
    pub fn recheck(&self) {
        self.recheck.store(true, Ordering::SeqCst);
        self.suspect();
    }

    /// Writes waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn front(&self) -> Option<(Write, bool)> {
        self.queue.lock().expect("not poisoned").front().cloned()
    }

    /// A try of the first write failed.
    fn front_failed(&self) {
        if let Some(front) = self.queue.lock().expect("not poisoned").front_mut() {
            front.1 = true;
        }
    }

    fn pop(&self) {
        self.queue.lock().expect("not poisoned").pop_front();
    }
}

/// Settles the node's unsettled writes until `stop`, then tries once more (the registry may answer by then).
pub async fn settle_until(sessions: Arc<Sessions>, stop: CancellationToken) {
    let unsettled = sessions.unsettled();
    let mut last_sweep: Option<tokio::time::Instant> = None;
    let mut sweeps_left = 0u8;
    loop {
        tokio::select! {
            _ = unsettled.wake.notified() => {}
            _ = tokio::time::sleep(RETRY_EVERY) => {}
            _ = stop.cancelled() => {
                settle_queued(&sessions).await;
                return;
            }
        }
        if !settle_queued(&sessions).await {
            continue;
        }
        if unsettled.suspect.swap(false, Ordering::SeqCst) {
            sweeps_left = SWEEPS;
        }
        let due = last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY);
        if due && sweeps_left > 0 {
            last_sweep = Some(tokio::time::Instant::now());
            let swept = if unsettled.recheck.swap(false, Ordering::SeqCst) {
                sessions.reconcile().await
            } else {
                sessions.sweep_ghosts().await
            };
            if swept {
                sweeps_left -= 1;
            }
        }
    }
}

/// Does the queued writes in order; `false` if the registry still fails (what is left waits for the next try).
async fn settle_queued(sessions: &Sessions) -> bool {
    let unsettled = sessions.unsettled();
    while let Some((w, failed_before)) = unsettled.front() {
        if let Err(e) = settle(sessions, &w, failed_before).await {
            tracing::debug!(error = %e, left = unsettled.len(), "registry writes still unsettled");
            unsettled.front_failed();
            return false;
        }
        unsettled.pop();
    }
    true
}

/// Does `w`; `failed_before`: an earlier try of it failed, and may have run all the same.
async fn settle(
    sessions: &Sessions,
    w: &Write,
    failed_before: bool,
) -> crate::registry::RegResult<()> {
    let registry = &sessions.registry;
    let (done, cause) = match w {
        Write::Remove { key, cond, cause } => (registry.remove(key, *cond).await?, *cause),
        // An attempt is undone only on a number its connection gave up: one that kept its instance (a resume
        // of the instance it holds) still holds the number, and the instance is its own.
        Write::Detach {
            conn, cause: None, ..
        } if sessions.hub.holds(*conn) => (None, None),
        Write::Detach { key, conn, cause } => (
            registry.detach(key, *conn, sessions.clock.now_ms()).await?,
            *cause,
        ),
        Write::EndApp { sdkappid } => {
            if sessions.auth.apps().get(*sdkappid).is_none() {
                let kicked = sessions.try_end_app(*sdkappid).await?;
                tracing::info!(sdkappid, kicked, "a removed app's instances were kicked");
            }
            return Ok(());
        }
    };
    match (done, cause) {
        (Some((inst, seq)), Some(cause)) => {
            let ip: IpAddr = inst.ip;
            sessions.emit_change(&inst, seq, cause, Actor::Client(ip));
        }
        (Some((inst, _)), None) => {
            tracing::info!(
                sdkappid = inst.sdkappid,
                "undid what a failed login or resume had written to the registry"
            );
            // It ran after all: a login may have kicked instances, a resume moved one, on any node.
            sessions.recheck_everywhere();
        }
        // An earlier try of the undo may have been what undid it: so it may have run too.
        (None, None) if failed_before => sessions.recheck_everywhere(),
        (None, _) => {}
    }
    Ok(())
}
