//! The application's background workers (registration group commit, daily-active writer, reaper, …): each is
//! started here with a stop signal of its own, and [`Workers::stop`] stops them one at a time in the reverse
//! order of their start, waiting for each to finish its queue. A worker started before another is one that
//! the other feeds (the daily-active writer before the logins' registrations), so each stops only once nothing
//! can feed it any more.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// When the application must have stopped, set once its shutdown begins. A worker that has more it could do
/// after its stop signal (webhook delivery: retries that fall due) reads it to do what fits. Cheap to clone.
#[derive(Clone, Default)]
pub struct Deadline(Arc<OnceLock<Instant>>);

impl Deadline {
    /// Sets it (the first time only).
    pub fn set(&self, at: Instant) {
        let _ = self.0.set(at);
    }

    /// `None` until the shutdown begins.
    pub fn get(&self) -> Option<Instant> {
        self.0.get().copied()
    }
}

struct Running {
    name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The running workers, in start order.
#[derive(Default)]
pub struct Workers {
    running: Vec<Running>,
    deadline: Deadline,
}

impl Workers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shutdown's deadline, for the workers that pace their last work by it (set by whoever begins the
    /// shutdown, before [`Workers::stop`]).
    pub fn deadline(&self) -> Deadline {
        self.deadline.clone()
    }

    /// Starts a worker; `work` gets the token that asks it to stop (it should then finish what is queued and
    /// return).
    pub fn start<F, Fut>(&mut self, name: &'static str, work: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(work(stop.clone()));
        self.running.push(Running { name, stop, task });
    }

    /// Stops every worker, the last started first, each after the one before it has finished.
    pub async fn stop(self) {
        for w in self.running.into_iter().rev() {
            w.stop.cancel();
            if let Err(e) = w.task.await {
                tracing::error!(worker = w.name, error = %e, "a worker failed");
            } else {
                tracing::debug!(worker = w.name, "worker stopped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn workers_stop_in_reverse_start_order_each_after_the_previous_finished() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut w = Workers::new();
        for name in ["writer", "feeder"] {
            let log = log.clone();
            w.start(name, move |stop| async move {
                stop.cancelled().await;
                tokio::task::yield_now().await;
                log.lock().unwrap().push(name);
            });
        }
        w.stop().await;
        assert_eq!(*log.lock().unwrap(), vec!["feeder", "writer"]);
    }
}
