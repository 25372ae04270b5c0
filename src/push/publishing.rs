//! The bus's publishing half. Messages go out in lanes: on one Redis a single lane (every channel is on the same
//! server), on a Redis Cluster one lane per channel (a channel lives on its slot's master). A lane has one
//! pipeline in flight at a time, so a node receives its messages in the order they were sent, and lanes do not
//! wait for each other: a master that stalls holds up the messages to the nodes whose channels it serves, for
//! at most the Redis timeout, and no other.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::missed::Marks;
use super::unheard::{Outgoing, Unheard};
use crate::registry::redis::RedisConn;

/// Messages published in one round trip at most.
const BATCH: usize = 256;
/// Messages waiting for one channel's lane at most, on a cluster (its master is slow or stalled); past that the
/// oldest are dropped and their node is told to check against the registry (see [`super::missed`]). On one
/// Redis they wait in the bus's queue instead.
const MAX_WAITING: usize = 16 * 1024;
/// How long the node's last queued messages may take to go out when it stops.
const DRAIN_FOR: Duration = Duration::from_secs(1);
/// How long marking the nodes of what did not go out may take then.
const MARK_ON_STOP: Duration = Duration::from_millis(500);

/// A message to publish: a new one, with when it was first sent, or a probe of a channel no node heard (see
/// [`Unheard`]).
enum Item {
    New(Outgoing, Instant),
    Probe(Outgoing),
}

impl Item {
    fn channel(&self) -> &str {
        match self {
            Item::New((c, _), _) | Item::Probe((c, _)) => c,
        }
    }
}

/// A lane's pipeline, answered: how many heard each message, or why none was sent.
struct Sent {
    lane: String,
    items: Vec<Item>,
    heard: redis::RedisResult<Vec<i64>>,
}

pub struct Publishing {
    conn: RedisConn,
    out: mpsc::Receiver<Outgoing>,
    /// Messages no node heard, to publish again.
    unheard: Unheard,
    /// Where the nodes whose messages were dropped are told.
    marks: Marks,
    /// Messages waiting for their lane, oldest first.
    waiting: HashMap<String, VecDeque<Item>>,
    /// The lanes with a pipeline in flight (with the channels of its messages), and those pipelines.
    busy: HashMap<String, Vec<String>>,
    sending: FuturesUnordered<BoxFuture<'static, Sent>>,
    /// Channels of messages dropped because the bus's queue was full (see [`super::redis_bus`]).
    overflowed: Overflowed,
}

/// Channels of messages the node dropped before they were queued, shared by the bus and its publisher.
pub type Overflowed = std::sync::Arc<std::sync::Mutex<HashSet<String>>>;

impl Publishing {
    pub(super) fn new(
        conn: RedisConn,
        out: mpsc::Receiver<Outgoing>,
        marks: Marks,
        overflowed: Overflowed,
    ) -> Publishing {
        Publishing {
            overflowed,
            conn,
            out,
            unheard: Unheard::default(),
            marks,
            waiting: HashMap::new(),
            busy: HashMap::new(),
            sending: FuturesUnordered::new(),
        }
    }

    pub(super) async fn run(mut self, stop: &CancellationToken) {
        loop {
            self.dropped();
            if let Some(mark) = self.marks.flush(&self.conn, false) {
                tokio::spawn(mark);
            }
            let again = super::redis_bus::until(self.unheard.due());
            let mark = super::redis_bus::until(self.marks.due());
            tokio::select! {
                _ = stop.cancelled() => return self.drain().await,
                first = self.out.recv(), if self.room() => match first {
                    Some(first) => self.take(first),
                    None => return self.drain().await,
                },
                Some(sent) = self.sending.next(), if !self.sending.is_empty() => self.sent(sent),
                _ = again => {
                    for probe in self.unheard.probes() {
                        self.wait(Item::Probe(probe));
                    }
                }
                _ = mark => {}
            }
            self.start();
        }
    }

    /// Hands the channels of dropped messages to be marked.
    fn dropped(&mut self) {
        self.marks.add(self.unheard.take_given_up());
        let overflowed = std::mem::take(&mut *self.overflowed.lock().expect("the lock"));
        self.marks.add(overflowed);
    }

    /// The node's last messages (acknowledgements, closes of resumed instances) still go out, for as long as
    /// Redis answers promptly; what no node heard is not tried again, and the nodes it was for are marked.
    async fn drain(&mut self) {
        let work = async {
            loop {
                while let Ok(m) = self.out.try_recv() {
                    self.queue(m, Instant::now());
                }
                self.start();
                match self.sending.next().await {
                    Some(sent) => self.sent(sent),
                    None => return,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_FOR, work).await;
        self.dropped();
        let left = self.unheard.channels().chain(
            self.waiting
                .values()
                .flatten()
                .map(|item| item.channel().to_owned()),
        );
        let left: Vec<String> = left.chain(self.busy.values().flatten().cloned()).collect();
        self.marks.add(left);
        if let Some(mark) = self.marks.flush(&self.conn, true) {
            let _ = tokio::time::timeout(MARK_ON_STOP, mark).await;
        }
    }

    /// Takes `first` and whatever else is queued, up to a batch.
    fn take(&mut self, first: Outgoing) {
        let now = Instant::now();
        self.queue(first, now);
        for _ in 1..BATCH {
            match self.out.try_recv() {
                Ok(m) => self.queue(m, now),
                Err(_) => break,
            }
        }
    }

    /// A message for a channel with messages waiting to be published again waits behind them; any other waits
    /// for its lane.
    fn queue(&mut self, m: Outgoing, now: Instant) {
        match self.unheard.holds(&m.0) {
            true => self.unheard.push_since(m, now),
            false => self.wait(Item::New(m, now)),
        }
    }

    /// Whether to take more from the queue: on one Redis, only while nothing is in flight (they wait there, as
    /// they would for the one lane); on a cluster always, as they may be for idle lanes.
    fn room(&self) -> bool {
        match &self.conn {
            RedisConn::One(_) => self.busy.is_empty(),
            RedisConn::Cluster(_) => true,
        }
    }

    fn lane(&self, channel: &str) -> String {
        match &self.conn {
            RedisConn::One(_) => String::new(),
            RedisConn::Cluster(_) => channel.to_owned(),
        }
    }

    fn wait(&mut self, item: Item) {
        let lane = self.lane(item.channel());
        let cluster = matches!(self.conn, RedisConn::Cluster(_));
        let queue = self.waiting.entry(lane).or_default();
        queue.push_back(item);
        if cluster && queue.len() > MAX_WAITING {
            match queue.pop_front() {
                Some(Item::New((channel, _), _)) => self.unheard.dropped(channel),
                // A probe is made again later.
                Some(Item::Probe((channel, _))) => self.unheard.not_heard(&channel),
                None => {}
            }
        }
    }

    /// Sends the next batch of every lane that has messages waiting and none in flight.
    fn start(&mut self) {
        let lanes: Vec<String> = self
            .waiting
            .keys()
            .filter(|l| !self.busy.contains_key(*l))
            .cloned()
            .collect();
        for lane in lanes {
            let Some(queue) = self.waiting.get_mut(&lane) else {
                continue;
            };
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                let Some(item) = queue.pop_front() else {
                    break;
                };
                match item {
                    // Its channel was not heard since it was queued: it waits behind what was not heard.
                    Item::New(m, since) if self.unheard.holds(&m.0) => {
                        self.unheard.push_since(m, since)
                    }
                    item => batch.push(item),
                }
            }
            if queue.is_empty() {
                self.waiting.remove(&lane);
            }
            if !batch.is_empty() {
                let channels = batch.iter().map(|i| i.channel().to_owned()).collect();
                self.busy.insert(lane.clone(), channels);
                self.sending.push(send(&self.conn, lane, batch));
            }
        }
    }

    /// A lane's pipeline was answered: what no node heard is kept to publish again; a probe heard lets the
    /// messages that waited behind it go first in its lane.
    fn sent(&mut self, sent: Sent) {
        let Sent { lane, items, heard } = sent;
        self.busy.remove(&lane);
        let counts = match heard {
            Ok(counts) => counts,
            // Perhaps not sent (the connection is being made again): sent again, as a message received twice
            // does nothing more than once.
            Err(e) => {
                tracing::debug!(error = %e, messages = items.len(), "bus: could not publish; trying again");
                Vec::new()
            }
        };
        let mut first = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            // No subscriber: the node addressed is subscribing again (after a cut, or on another master after a
            // failover), or is gone.
            let heard = counts.get(i).is_some_and(|c| *c > 0);
            match item {
                Item::New(m, since) if !heard => self.unheard.push_since(m, since),
                Item::New(..) => {}
                Item::Probe((channel, probe)) if heard => first.extend(
                    self.unheard
                        .heard(&channel, &probe)
                        .into_iter()
                        .map(|(m, since)| Item::New(m, since)),
                ),
                Item::Probe((channel, _)) => self.unheard.not_heard(&channel),
            }
        }
        for item in first.into_iter().rev() {
            let lane = self.lane(item.channel());
            self.waiting.entry(lane).or_default().push_front(item);
        }
    }
}

/// Publishes `items` in one pipeline (one lane: one server, or one channel's slot).
fn send(conn: &RedisConn, lane: String, items: Vec<Item>) -> BoxFuture<'static, Sent> {
    let command = match conn {
        RedisConn::One(_) => "PUBLISH",
        RedisConn::Cluster(_) => "SPUBLISH",
    };
    let mut pipe = redis::pipe();
    for item in &items {
        let (channel, payload) = match item {
            Item::New(m, _) | Item::Probe(m) => m,
        };
        pipe.cmd(command).arg(channel).arg(payload);
    }
    let mut conn = conn.clone();
    Box::pin(async move {
        let heard = pipe.query_async::<Vec<i64>>(&mut conn).await;
        Sent { lane, items, heard }
    })
}
