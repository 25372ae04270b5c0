//! Group commit: what a worker takes from its queue, it takes in groups — everything queued while the previous
//! group was written, up to a bound — so one write (one transaction, one script call, one row) serves many
//! requests, and a request waits at most for the write in flight. Until stopped; then the worker takes nothing
//! more and writes what is queued.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The receiving end of a worker's queue (bounded or not).
pub trait Queue<T>: Send {
    /// Waits for at least one item, then takes up to `max` into `into`; 0 once closed and empty.
    fn recv_many(&mut self, into: &mut Vec<T>, max: usize) -> impl Future<Output = usize> + Send;
    /// Takes no more (what is queued can still be taken).
    fn close(&mut self);
}

impl<T: Send> Queue<T> for mpsc::Receiver<T> {
    fn recv_many(&mut self, into: &mut Vec<T>, max: usize) -> impl Future<Output = usize> + Send {
        mpsc::Receiver::recv_many(self, into, max)
    }
    fn close(&mut self) {
        mpsc::Receiver::close(self)
    }
}

impl<T: Send> Queue<T> for mpsc::UnboundedReceiver<T> {
    fn recv_many(&mut self, into: &mut Vec<T>, max: usize) -> impl Future<Output = usize> + Send {
        mpsc::UnboundedReceiver::recv_many(self, into, max)
    }
    fn close(&mut self) {
        mpsc::UnboundedReceiver::close(self)
    }
}

/// How groups are made.
#[derive(Debug, Clone, Copy)]
pub struct Grouping {
    /// The most items one group holds.
    pub max: usize,
    /// How long a group that has its first item waits for more (up to `max`) before it is written: fewer,
    /// larger writes, for at most this much delay. Zero: a group is what is queued at once.
    pub linger: Duration,
}

impl Grouping {
    pub fn at_most(max: usize) -> Grouping {
        Grouping {
            max,
            linger: Duration::ZERO,
        }
    }
}

/// What writes a group (and empties it).
pub trait WriteGroup<T>: Send {
    fn write_group(&mut self, group: &mut Vec<T>) -> impl Future<Output = ()> + Send;
}

/// Takes groups from `queue` and hands each to `writer`, until `stop`; then closes the queue and writes what is
/// left in it. Returns how many items the writes after the stop took.
pub async fn group_commit<T, Q, W>(
    queue: &mut Q,
    grouping: Grouping,
    stop: &CancellationToken,
    writer: &mut W,
) -> usize
where
    T: Send,
    Q: Queue<T>,
    W: WriteGroup<T>,
{
    let mut group = Vec::with_capacity(grouping.max);
    loop {
        let n = tokio::select! {
            // Stopped: what is queued is written below, after the queue is closed.
            biased;
            _ = stop.cancelled() => break,
            n = queue.recv_many(&mut group, grouping.max) => n,
        };
        if n == 0 {
            return 0;
        }
        if !grouping.linger.is_zero() {
            let until = tokio::time::Instant::now() + grouping.linger;
            while group.len() < grouping.max {
                let room = grouping.max - group.len();
                let more = tokio::select! {
                    n = queue.recv_many(&mut group, room) => n,
                    _ = tokio::time::sleep_until(until) => 0,
                    _ = stop.cancelled() => 0,
                };
                if more == 0 {
                    break;
                }
            }
        }
        writer.write_group(&mut group).await;
    }
    queue.close();
    let mut last = 0;
    while queue.recv_many(&mut group, grouping.max).await > 0 {
        last += group.len();
        writer.write_group(&mut group).await;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn groups_what_queued_meanwhile_and_writes_the_rest_after_the_stop() {
        let (tx, mut rx) = mpsc::channel(100);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        struct Recorder {
            groups: Vec<Vec<i32>>,
            tx: mpsc::Sender<i32>,
            stop: CancellationToken,
        }
        impl WriteGroup<i32> for Recorder {
            async fn write_group(&mut self, group: &mut Vec<i32>) {
                self.groups.push(std::mem::take(group));
                if self.groups.len() == 2 {
                    // Queued while this group was written, then the stop: written after it.
                    self.tx.send(5).await.unwrap();
                    self.stop.cancel();
                }
            }
        }
        let stop = CancellationToken::new();
        let mut r = Recorder {
            groups: Vec::new(),
            tx,
            stop: stop.clone(),
        };
        let last = group_commit(&mut rx, Grouping::at_most(3), &stop, &mut r).await;
        assert_eq!(r.groups, vec![vec![0, 1, 2], vec![3, 4], vec![5]]);
        assert_eq!(last, 1);
    }
}
