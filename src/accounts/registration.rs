//! Group commit of first logins: registrations that arrive together share one multi-row INSERT, one
//! transaction and one commit (one fsync), and each login waits for that commit before it succeeds.

use crate::runtime::batch::{group_commit, Grouping, WriteGroup};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Account, AccountStore, StoreError, StoreResult};

/// The most registrations one transaction takes.
const MAX_GROUP: usize = 256;
/// After a failed commit, groups are refused at once for this long, then one group tries the database again:
/// while it is down, first logins get a prompt 70169 instead of each group waiting out a connection timeout
/// behind the one before it.
const COOL_DOWN: Duration = Duration::from_secs(1);

/// One first login waiting for its grouped registration.
pub(super) struct Registration {
    pub sdkappid: u32,
    pub user_id: String,
    pub now: i64,
    pub reply: oneshot::Sender<StoreResult<(Account, bool)>>,
}

/// Where logins queue their registrations.
pub(super) fn channel() -> (mpsc::Sender<Registration>, mpsc::Receiver<Registration>) {
    mpsc::channel(4 * MAX_GROUP)
}

/// The task that registers queued first logins, owned by the application (see [`crate::runtime::workers`]).
pub struct RegistrationWorker {
    pub(super) store: Arc<dyn AccountStore>,
    /// Taken by `run`: the queue is read there, the rest written to.
    pub(super) rx: Option<mpsc::Receiver<Registration>>,
    /// Set after a failed commit (see [`COOL_DOWN`]).
    pub(super) refuse_until: Option<tokio::time::Instant>,
}

impl RegistrationWorker {
    /// Registers queued first logins in groups until `stop`; then takes no more and registers what is queued.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut rx = self.rx.take().expect("a worker runs once");
        let grouping = Grouping::at_most(MAX_GROUP);
        group_commit(&mut rx, grouping, &stop, &mut self).await;
    }
}

impl WriteGroup<Registration> for RegistrationWorker {
    async fn write_group(&mut self, group: &mut Vec<Registration>) {
        if self
            .refuse_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            let why = "the database failed a moment ago; retry";
            for r in group.drain(..) {
                let _ = r.reply.send(Err(StoreError::Batch(why.into())));
            }
            return;
        }
        let items: Vec<(u32, String)> = group
            .iter()
            .map(|r| (r.sdkappid, r.user_id.clone()))
            .collect();
        let now = group.iter().map(|r| r.now).min().unwrap_or_default();
        match self.store.register_many(&items, now).await {
            Ok(results) => {
                self.refuse_until = None;
                for (r, res) in group.drain(..).zip(results) {
                    let _ = r.reply.send(Ok(res));
                }
            }
            Err(e) => {
                self.refuse_until = Some(tokio::time::Instant::now() + COOL_DOWN);
                let why = e.to_string();
                for r in group.drain(..) {
                    let _ = r.reply.send(Err(StoreError::Batch(why.clone())));
                }
            }
        }
    }
}
