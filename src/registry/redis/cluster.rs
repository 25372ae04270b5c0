//! Our client of a Redis Cluster: a map of which master serves which slots, a connection to each master, and a
//! task that keeps the map current. A command goes to the master of its key's slot over that master's own
//! connection, so a master that dies holds up only the commands for its slots: they fail at once (the login
//! answers 70169) until the map names the replica that took over, which the task looks for every
//! [`DEGRADED_POLL`] meanwhile. (redis-rs's cluster client stops every request while it refreshes its map, so
//! one master's failover stalled logins on every slot.)
//!
//! The registry's commands are each in one slot (`layout`); a command with no key (`SCRIPT LOAD`, `PING`) goes
//! to every master and succeeds if one answers.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::future::{join_all, select_ok};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Arg, Cmd, Pipeline, RedisError, RedisResult, Value};
use tokio::sync::{watch, Notify};

use super::connect::connection_info;
use super::layout::slot;
use super::slots::{key_of, migrating, moved_to, node_url, parse_slots};
use crate::registry::{RegResult, RegistryError};

/// How often the map is read again while a master does not answer (a failover takes seconds).
const DEGRADED_POLL: Duration = Duration::from_millis(200);
/// How often the map is read again otherwise (a resharding moves slots; `MOVED` also triggers a read).
const HEALTHY_POLL: Duration = Duration::from_secs(5);

/// A master's address.
pub type Addr = (String, u16);

#[derive(Clone)]
pub struct ClusterConn(Arc<Inner>);

struct Inner {
    seeds: Vec<String>,
    timeout: Duration,
    map: RwLock<Arc<SlotMap>>,
    /// Wakes the task that reads the map (a command met a dead master or a `MOVED`).
    stale: Notify,
    /// Counts the changes of masters, for whoever must follow them (the bus's subscriptions).
    changes: watch::Sender<u64>,
    /// One reading of the map at a time, and how many were made: commands that meet `MOVED` together wait
    /// for one reading instead of each making its own.
    reading: tokio::sync::Mutex<()>,
    readings: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct SlotMap {
    /// Slot ranges (first, last) and the index of their master, sorted.
    ranges: Vec<(u16, u16, usize)>,
    masters: Vec<Master>,
    /// Every node the cluster listed, replicas too: where to ask for the map when masters fail.
    nodes: Vec<Addr>,
}

struct Master {
    addr: Addr,
    /// `None` if it could not be reached when the map was read.
    conn: Option<ConnectionManager>,
}

impl SlotMap {
    fn master_of(&self, slot: u16) -> Option<&Master> {
        let i = self.ranges.partition_point(|r| r.1 < slot);
        let (first, _, m) = self.ranges.get(i)?;
        (*first <= slot).then(|| &self.masters[*m])
    }

    /// Whether the same nodes are masters (slots moved between them are not a change: a resharding loses no
    /// write, and the subscriptions of a moved slot are ended by Redis itself).
    fn same_masters(&self, other: &SlotMap) -> bool {
        let mine: HashSet<&Addr> = self.masters.iter().map(|m| &m.addr).collect();
        mine == other.masters.iter().map(|m| &m.addr).collect()
    }
}

impl ClusterConn {
    /// Reads the map from the seed nodes `urls` and connects to every master; then keeps the map current
    /// until the last clone is dropped. A request waits at most `timeout`.
    pub async fn connect(urls: &[String], timeout: Duration) -> RegResult<ClusterConn> {
        for u in urls {
            connection_info(u)?;
        }
        let (changes, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            seeds: urls.to_vec(),
            timeout,
            map: RwLock::new(Arc::default()),
            stale: Notify::new(),
            changes,
            reading: tokio::sync::Mutex::new(()),
            readings: Default::default(),
        });
        let complete = inner.refresh().await?;
        if !complete {
            tracing::warn!(
                "Redis Cluster: a master does not answer; its slots wait for a failover"
            );
        }
        tokio::spawn(follow(Arc::downgrade(&inner)));
        Ok(ClusterConn(inner))
    }

    fn map(&self) -> Arc<SlotMap> {
        self.0.map.read().expect("the map's lock").clone()
    }

    /// The masters now.
    pub fn masters(&self) -> Vec<Addr> {
        self.map().masters.iter().map(|m| m.addr.clone()).collect()
    }

    /// The master serving `key`'s slot now, for another client of it (the bus's subscriptions), with the seeds'
    /// settings; `None` while the slot has none (and the map is then read again soon).
    pub fn master_for(&self, key: &str) -> Option<redis::ConnectionInfo> {
        let master = self
            .map()
            .master_of(slot(key.as_bytes()))
            .map(|m| m.addr.clone());
        let info = master.and_then(|a| connection_info(&node_url(&a)).ok());
        if info.is_none() {
            self.stale();
        }
        info.map(|i| i.set_redis_settings(self.0.seed_settings()))
    }

    /// The map may be out of date (a master answered `MOVED`): it is read again soon.
    pub fn stale(&self) {
        self.0.stale.notify_one();
    }

    /// Positions of `slots` by the master serving each now (one look at the map; a slot without a master is
    /// a batch of its own, whose calls fail).
    pub fn by_master(&self, slots: impl Iterator<Item = u16>) -> Vec<Vec<usize>> {
        let map = self.map();
        let mut batches: Vec<(Option<&Addr>, Vec<usize>)> = Vec::new();
        for (pos, slot) in slots.enumerate() {
            let m = map.master_of(slot).map(|m| &m.addr);
            match batches.iter_mut().find(|(a, _)| *a == m && m.is_some()) {
                Some((_, v)) => v.push(pos),
                None => batches.push((m, vec![pos])),
            }
        }
        batches.into_iter().map(|(_, v)| v).collect()
    }

    /// A counter that moves each time the masters change (after a failover).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    /// `cmd` on the master at `addr`.
    pub async fn on(&self, addr: &Addr, cmd: &Cmd) -> RedisResult<Value> {
        let map = self.map();
        let m = map.masters.iter().find(|m| m.addr == *addr);
        match m.and_then(|m| m.conn.clone()) {
            Some(mut c) => self.watch(c.req_packed_command(cmd).await),
            None => Err(unreachable_slot()),
        }
    }

    /// Whether every master answers and every slot has one (a failover has ended), by the map read now.
    pub async fn every_master_answers(&self) -> RegResult<()> {
        self.0.refresh().await?;
        let map = self.map();
        if !covers_every_slot(&map) {
            return Err(RegistryError("a Redis Cluster slot has no master".into()));
        }
        let pings = map.masters.iter().map(|m| self.on(&m.addr, &PING));
        for r in join_all(pings).await {
            r.map_err(|e| RegistryError(e.to_string()))?;
        }
        Ok(())
    }

    async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        let Some(slot) = key_of(cmd).map(slot) else {
            return self.everywhere(cmd).await;
        };
        let mut r = self.conn_for(slot)?.req_packed_command(cmd).await;
        // The slot moved (a failover or a resharding the map has not seen yet): read the map, and go where it
        // now says, once.
        if let Some(to) = r.as_ref().ok().and_then(moved_to) {
            self.0.refresh_after_moved(slot, to).await;
            r = self.conn_for(slot)?.req_packed_command(cmd).await;
        }
        // The slot is being moved and the keys are in the middle of it (`TRYAGAIN`, `ASK`): the move goes on
        // by itself, so the command is tried again a few times, for at most ~150 ms. (`ASK` is not followed to
        // the importing master: a script there would find keys not moved yet missing.)
        for pause in MIGRATING_RETRIES {
            if !r.as_ref().is_ok_and(migrating) {
                break;
            }
            tokio::time::sleep(pause).await;
            r = self.conn_for(slot)?.req_packed_command(cmd).await;
            if let Some(to) = r.as_ref().ok().and_then(moved_to) {
                self.0.refresh_after_moved(slot, to).await;
                r = self.conn_for(slot)?.req_packed_command(cmd).await;
            }
        }
        self.watch(r)
    }

    /// The connection to the master of `slot` now.
    fn conn_for(&self, slot: u16) -> RedisResult<ConnectionManager> {
        let conn = self.map().master_of(slot).and_then(|m| m.conn.clone());
        conn.ok_or_else(|| {
            self.0.stale.notify_one();
            unreachable_slot()
        })
    }

    /// A command with no key: on every master. `SCRIPT LOAD` must reach them all (above all the one that lacked
    /// the script): the first success once every master has answered. Anything else (`PING`: the cluster
    /// serves) succeeds with the first master that answers.
    async fn everywhere(&self, cmd: &Cmd) -> RedisResult<Value> {
        let map = self.map();
        let sends: Vec<_> = map
            .masters
            .iter()
            .filter_map(|m| m.conn.clone())
            .map(|mut c| Box::pin(async move { c.req_packed_command(cmd).await }))
            .collect();
        drop(map);
        if sends.is_empty() {
            return Err(unreachable_slot());
        }
        let script = matches!(cmd.args_iter().next(), Some(Arg::Simple(n)) if n.eq_ignore_ascii_case(b"SCRIPT"));
        if script {
            let all = join_all(sends).await;
            let first_ok = all.iter().position(Result::is_ok);
            return all
                .into_iter()
                .nth(first_ok.unwrap_or(0))
                .expect("one answer per master");
        }
        select_ok(sends).await.map(|(v, _)| v)
    }

    /// A failure to reach a master makes the map be read again (its replica may have taken over).
    fn watch<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                self.0.stale.notify_one();
            }
        }
        r
    }
}

static PING: std::sync::LazyLock<Cmd> = std::sync::LazyLock::new(|| redis::cmd("PING"));

impl ConnectionLike for ClusterConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(self.query(cmd))
    }

    /// A pipeline goes where its first command's key is (the registry's pipelines stay in one slot).
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let slot = pipeline.cmd_iter().find_map(key_of).map(slot).unwrap_or(0);
            let r = self
                .conn_for(slot)?
                .req_packed_commands(pipeline, offset, count)
                .await;
            let to = r.as_ref().ok().and_then(|v| v.iter().find_map(moved_to));
            if let Some(to) = to {
                self.0.refresh_after_moved(slot, to).await;
                let again = self.conn_for(slot)?;
                return self.watch(
                    again
                        .clone()
                        .req_packed_commands(pipeline, offset, count)
                        .await,
                );
            }
            self.watch(r)
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Inner {
    /// After a `MOVED` of `slot` to the master at `to`: reads the map, asking that master first (during a
    /// failover the other nodes may not know yet), unless a reading that began after this command was sent
    /// already routes the slot there.
    async fn refresh_after_moved(&self, slot: u16, to: Addr) {
        use std::sync::atomic::Ordering::SeqCst;
        let seen = self.readings.load(SeqCst);
        let _reading = self.reading.lock().await;
        let routed = |map: &SlotMap| map.master_of(slot).is_some_and(|m| m.addr == to);
        if self.readings.load(SeqCst) != seen && routed(&self.map.read().expect("the map's lock")) {
            return;
        }
        if let Err(e) = self.refresh_locked(Some(&to)).await {
            tracing::warn!(error = %e, "Redis Cluster: could not read which master serves which slots");
        }
    }

    async fn refresh(&self) -> RegResult<bool> {
        let _reading = self.reading.lock().await;
        self.refresh_locked(None).await
    }

    /// Reads the map from the first node that answers (`first`, the masters, the other nodes, then the seeds)
    /// and connects to masters it did not know. Returns whether every slot has a master that answered.
    async fn refresh_locked(&self, first: Option<&Addr>) -> RegResult<bool> {
        let old = self.map.read().expect("the map's lock").clone();
        let mut asked: Vec<String> = first
            .into_iter()
            .chain(old.masters.iter().map(|m| &m.addr))
            .chain(&old.nodes)
            .map(node_url)
            .collect();
        asked.extend(self.seeds.iter().cloned());
        let mut slots = None;
        let mut last_err = RegistryError("no Redis Cluster node answered".into());
        for url in &asked {
            match self.cluster_slots(url, &old).await {
                Ok(s) => {
                    slots = Some(s);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let (ranges, nodes) = slots.ok_or(last_err)?;
        let mut masters: Vec<Master> = Vec::new();
        let mut indexed = Vec::with_capacity(ranges.len());
        for (first, last, addr) in ranges {
            let i = match masters.iter().position(|m| m.addr == addr) {
                Some(i) => i,
                None => {
                    let known = old.masters.iter().find(|m| m.addr == addr);
                    let conn = match known.and_then(|m| m.conn.clone()) {
                        Some(c) => Some(c),
                        None => self.connect_to(&addr).await.ok(),
                    };
                    masters.push(Master { addr, conn });
                    masters.len() - 1
                }
            };
            indexed.push((first, last, i));
        }
        indexed.sort_unstable();
        let new = SlotMap {
            ranges: indexed,
            masters,
            nodes,
        };
        // Whether each master answers now (a connection made before a master died still looks fine).
        let pings = new.masters.iter().map(|m| async {
            match m.conn.clone() {
                Some(mut c) => c.req_packed_command(&PING).await.is_ok(),
                None => false,
            }
        });
        let complete = join_all(pings).await.into_iter().all(|ok| ok) && covers_every_slot(&new);
        let changed = !new.same_masters(&old);
        if changed && !old.ranges.is_empty() {
            let masters: Vec<String> = new
                .masters
                .iter()
                .map(|m| format!("{}:{}", m.addr.0, m.addr.1))
                .collect();
            tracing::warn!(masters = ?masters, "Redis Cluster: the masters changed");
        }
        *self.map.write().expect("the map's lock") = Arc::new(new);
        self.readings
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        Ok(complete)
    }

    /// `CLUSTER SLOTS` from the node at `url`: each range with its master, and every node listed.
    #[allow(clippy::type_complexity)]
    async fn cluster_slots(
        &self,
        url: &str,
        old: &SlotMap,
    ) -> RegResult<(Vec<(u16, u16, Addr)>, Vec<Addr>)> {
        let cmd = redis::cmd("CLUSTER").arg("SLOTS").clone();
        let known = old
            .masters
            .iter()
            .find(|m| node_url(&m.addr) == url)
            .and_then(|m| m.conn.clone());
        let reply = match known {
            Some(mut c) => c.req_packed_command(&cmd).await,
            None => {
                let info = connection_info(url)?.set_redis_settings(self.seed_settings());
                let client = redis::Client::open(info).map_err(super::connect::err)?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                match client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(mut c) => c.req_packed_command(&cmd).await,
                    Err(e) => Err(e),
                }
            }
        }
        .map_err(super::connect::err)?;
        parse_slots(reply, url)
    }

    /// The settings (password, database) of the first seed, which the cluster's nodes share.
    fn seed_settings(&self) -> redis::RedisConnectionInfo {
        connection_info(&self.seeds[0])
            .map(|i| i.redis_settings().clone())
            .unwrap_or_default()
    }

    /// A connection to one master: it reconnects by itself, and a request waits at most the timeout.
    async fn connect_to(&self, addr: &Addr) -> RedisResult<ConnectionManager> {
        let info = connection_info(&node_url(addr))
            .map_err(|e| io(e.0))?
            .set_redis_settings(self.seed_settings());
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        redis::Client::open(info)?
            .get_connection_manager_with_config(config)
            .await
    }
}

/// Keeps the map current while the connection lives: at once when a command met trouble, every
/// [`DEGRADED_POLL`] while a master does not answer, every [`HEALTHY_POLL`] otherwise.
async fn follow(inner: Weak<Inner>) {
    let mut complete = true;
    loop {
        let Some(i) = inner.upgrade() else { return };
        let wait = if complete {
            HEALTHY_POLL
        } else {
            DEGRADED_POLL
        };
        let woken = tokio::time::timeout(wait, i.stale.notified()).await.is_ok();
        complete = match i.refresh().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Redis Cluster: could not read which master serves which slots");
                false
            }
        };
        // A burst of failures wakes the task many times: one read serves them all.
        if woken {
            drop(i);
            tokio::time::sleep(DEGRADED_POLL / 4).await;
        }
    }
}

/// Pauses before trying again a command that met a slot being moved.
const MIGRATING_RETRIES: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(40),
    Duration::from_millis(80),
];

fn covers_every_slot(map: &SlotMap) -> bool {
    let mut next = 0u32;
    for (first, last, _) in &map.ranges {
        if *first as u32 != next {
            return false;
        }
        next = *last as u32 + 1;
    }
    next == 16384
}

fn io(msg: String) -> RedisError {
    RedisError::from(std::io::Error::other(msg))
}

/// What a command for a slot whose master cannot be reached gets.
fn unreachable_slot() -> RedisError {
    io(
        "the master of this Redis Cluster slot cannot be reached (a failover may be under way)"
            .into(),
    )
}
