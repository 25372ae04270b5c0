//! A real Redis Cluster on loopback for the tests: three masters and three replicas (`redis-server
//! --cluster-enabled yes`, joined by `redis-cli --cluster create`). One is shared by the tests that only use it
//! ([`shared`]); a test that kills a master starts its own ([`LocalRedisCluster::start`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Which Redis a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Redis {
    /// The machine's Redis (each test in a namespace of its own).
    One,
    /// The Redis Cluster the tests share ([`shared`]).
    Cluster,
}

/// Runs the async test body (which takes a [`Redis`]) on one Redis (`one_redis::NAME`) and on a Redis Cluster
/// (`redis_cluster::NAME`).
#[macro_export]
macro_rules! on_one_redis_and_a_cluster {
    ($($name:ident),* $(,)?) => {
        mod one_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::redis_cluster::Redis::One).await })*
        }
        mod redis_cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::redis_cluster::Redis::Cluster).await })*
        }
    };
}

/// The shared cluster, started from async code (starting blocks).
pub async fn shared_async() -> &'static LocalRedisCluster {
    tokio::task::spawn_blocking(shared).await.unwrap()
}

/// How long a master may be silent before its replica takes over. Low, so a failover takes seconds; the same
/// setting operators choose (docs/operations.md).
pub const NODE_TIMEOUT_MS: u64 = 2000;

pub struct LocalRedisCluster {
    pub ports: Vec<u16>,
    servers: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

/// The cluster the tests share (started once per test process, stopped when it exits).
pub fn shared() -> &'static LocalRedisCluster {
    static SHARED: OnceLock<LocalRedisCluster> = OnceLock::new();
    SHARED.get_or_init(LocalRedisCluster::start)
}

impl LocalRedisCluster {
    /// Six servers on free loopback ports, joined into three masters with a replica each; returns once every
    /// slot is served and every replica is in sync.
    pub fn start() -> LocalRedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..6).map(|_| cluster_port()).collect();
        let servers = ports
            .iter()
            .map(|&p| Some(server(&dir.path().into(), p)))
            .collect();
        let c = LocalRedisCluster {
            ports,
            servers,
            _dir: dir,
        };
        c.watch();
        for &p in &c.ports {
            wait_for(&format!("redis-server on {p}"), || {
                cli(p, &["PING"]) == "PONG"
            });
        }
        let addrs: Vec<String> = c.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        c.wait_until_healthy();
        c
    }

    /// Kills the servers if the test process dies without dropping this (a shared cluster is never dropped).
    // The watchdog outlives the test process by design: nobody waits for it.
    #[allow(clippy::zombie_processes)]
    fn watch(&self) {
        let pids: Vec<String> = self
            .servers
            .iter()
            .flatten()
            .map(|c| c.id().to_string())
            .collect();
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null",
            std::process::id(),
            pids.join(" ")
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }

    /// Every node says the cluster is ok, three masters serve every slot, and each has a replica in sync.
    pub fn wait_until_healthy(&self) {
        wait_for("the Redis Cluster is ok", || {
            self.live_ports().all(|p| {
                let info = cli(p, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            }) && self.masters().iter().all(|&m| {
                cli(m, &["INFO", "replication"]).contains("connected_slaves:1")
                    && self.live_ports().filter(|&p| p != m).any(|p| {
                        let r = cli(p, &["INFO", "replication"]);
                        r.contains(&format!("master_port:{m}"))
                            && r.contains("master_link_status:up")
                    })
            })
        });
    }

    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .zip(&self.servers)
            .filter(|(_, s)| s.is_some())
            .map(|(p, _)| *p)
    }

    /// The ports of the masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.live_ports()
            .filter(|&p| cli(p, &["ROLE"]).starts_with("master"))
            .collect()
    }

    /// The port of the master serving `key`'s slot now (as a live node sees the cluster).
    pub fn master_of(&self, key: &str) -> u16 {
        self.masters_of(&[key])[0]
    }

    /// The ports of the masters serving the keys' slots now, from one look at the cluster.
    pub fn masters_of(&self, keys: &[&str]) -> Vec<u16> {
        self.try_masters_of(keys)
            .expect("a master serves every slot")
    }

    /// The same; `None` while a slot has no master (a failover under way).
    pub fn try_masters_of(&self, keys: &[&str]) -> Option<Vec<u16>> {
        let port = self.live_ports().next().expect("a server is running");
        let nodes = cli(port, &["CLUSTER", "NODES"]);
        // A master's line: id, host:port@bus, flags, -, ping, pong, epoch, state, then its slot ranges.
        let ranges: Vec<(u16, u16, u16)> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 8 && f[2].contains("master") && !f[2].contains("fail"))
            .flat_map(|f| {
                let port: u16 = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                f[8..]
                    .iter()
                    .filter_map(move |r| {
                        let (a, b) = r.split_once('-').unwrap_or((r, r));
                        Some((port, a.parse().ok()?, b.parse().ok()?))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.iter()
            .map(|k| {
                let slot = imlogin::registry::redis::layout::slot(k.as_bytes());
                ranges
                    .iter()
                    .find(|(_, a, b)| (*a..=*b).contains(&slot))
                    .map(|r| r.0)
            })
            .collect()
    }

    /// Seed URLs, as `registry.redis_cluster_nodes` takes them.
    pub fn seeds(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// `registry.redis_cluster_nodes` as an environment variable's value (a TOML array).
    pub fn seeds_env(&self) -> String {
        let quoted: Vec<String> = self.seeds().iter().map(|s| format!("\"{s}\"")).collect();
        format!("[{}]", quoted.join(","))
    }

    /// Kills the server on `port` with SIGKILL (a master's death); returns when it is gone.
    pub fn kill(&mut self, port: u16) -> Instant {
        let i = self.ports.iter().position(|&p| p == port).unwrap();
        let mut child = self.servers[i].take().expect("the server is running");
        child.kill().unwrap();
        let at = Instant::now();
        child.wait().unwrap();
        at
    }
}

impl Drop for LocalRedisCluster {
    fn drop(&mut self) {
        for child in self.servers.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port whose cluster bus port (10,000 above) is free too, both below the range the kernel hands out to
/// other sockets (so no test's client takes them meanwhile).
fn cluster_port() -> u16 {
    loop {
        let p = rand::random_range(12_000..22_000u16);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(p) && free(p + 10_000) {
            return p;
        }
    }
}

fn server(dir: &PathBuf, port: u16) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        // The other masters keep serving while one fails over (docs/operations.md).
        .args(["--cluster-require-full-coverage", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test.sh installs it)")
}

/// `redis-cli -p PORT ARGS…`'s output, trimmed ("" if it failed).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Moves the slot of `key` to the master at `to`, with its keys, as a resharding does.
pub fn move_slot_of(key: &str, from: u16, to: u16, masters: &[u16]) {
    let id = |p: u16| cli(p, &["CLUSTER", "MYID"]);
    let slot = cli(from, &["CLUSTER", "KEYSLOT", key]);
    cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id(from)]);
    cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id(to)]);
    loop {
        let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
        if keys.is_empty() {
            break;
        }
        let to_port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
        args.extend(keys.lines());
        cli(from, &args);
    }
    let to_id = id(to);
    for &p in masters {
        cli(p, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
}

/// Runs `commands` (one per line) on the server at `port`, in one transaction: nothing happens between them.
pub fn cli_atomically(port: u16, commands: &[&str]) -> String {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!("MULTI\n{}\nEXEC\n", commands.join("\n"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
