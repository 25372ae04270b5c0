//! The cluster (PROTOCOL §5 across nodes): three imlogin processes on loopback sharing one PostgreSQL and one
//! Redis, or a Redis Cluster (three masters, three replicas: every behaviour test runs on both). Policy races,
//! kicks, resume, admin actions across nodes; a node killed with SIGKILL; Redis restarted; a master killed.

use std::time::Duration;

use futures_util::future::join_all;
use imlogin::client::{Client, ClientError, ClientEvent};
use serde_json::{json, Value};

use crate::helpers::{eventually, params, Backend, TestDb, ADMIN_KEY, APP};
use crate::redis_cluster::{LocalRedisCluster, Redis};
use crate::server::{signal, start_binary, Binary};

crate::on_one_redis_and_a_cluster!(
    thirty_logins_of_one_user_over_three_nodes_keep_the_policy_and_kick_each_loser_once,
    a_login_on_one_node_kicks_the_instance_on_another,
    resume_works_on_any_node_and_closes_the_old_connection_with_4002,
    admin_kick_and_disable_reach_every_node_and_every_cache,
    a_policy_set_on_one_node_applies_on_every_node,
    a_node_killed_with_sigkill_leaves_its_users_resumable_elsewhere_then_frees_them,
);

/// A Redis server of the test's own (to stop and restart it), on a free port; killed on drop.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis { child: None, port };
        r.restart();
        r
    }

    /// Starts it (again): empty, as a Redis that keeps nothing on disk comes back.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// N nodes on one PostgreSQL database and one Redis namespace.
pub struct Cluster {
    pub nodes: Vec<Binary>,
    /// The registry's namespace in Redis.
    pub ns: String,
    _db: TestDb,
}

impl Cluster {
    /// `n` nodes on `redis`, each test in a namespace of its own.
    pub async fn start(redis: Redis, n: usize, extra: &[(&str, &str)]) -> Cluster {
        match redis {
            Redis::One => Self::start_on("redis://127.0.0.1:6379", n, extra).await,
            Redis::Cluster => {
                let shared = crate::redis_cluster::shared_async().await;
                Self::start_on_cluster(shared, n, extra).await
            }
        }
    }

    /// `n` nodes on the Redis at `url`.
    pub async fn start_on(url: &str, n: usize, extra: &[(&str, &str)]) -> Cluster {
        let urls = vec![url.to_owned(); n];
        Self::start_each(&urls, extra).await
    }

    /// One node on each Redis URL of `urls` (the same Redis, reached through a proxy by some).
    pub async fn start_each(urls: &[String], extra: &[(&str, &str)]) -> Cluster {
        let redis = |i: usize| ("IMLOGIN__REGISTRY__REDIS_URL", urls[i].clone());
        Self::start_with(redis, urls.len(), extra, random_ns()).await
    }

    /// `n` nodes on a Redis Cluster.
    pub async fn start_on_cluster(
        redis: &LocalRedisCluster,
        n: usize,
        extra: &[(&str, &str)],
    ) -> Cluster {
        Self::start_on_cluster_in(redis, n, extra, random_ns()).await
    }

    /// `n` nodes in namespace `ns` on a Redis Cluster that they know by the seed nodes `seeds` only
    /// (`["redis://…", …]`).
    pub async fn start_on_seeds(seeds: &str, n: usize, ns: String) -> Cluster {
        let seeds = |_| ("IMLOGIN__REGISTRY__REDIS_CLUSTER_NODES", seeds.to_owned());
        Self::start_with(seeds, n, &[], ns).await
    }

    /// The same in namespace `ns` (where the keys a test looks at fall depends on it).
    pub async fn start_on_cluster_in(
        redis: &LocalRedisCluster,
        n: usize,
        extra: &[(&str, &str)],
        ns: String,
    ) -> Cluster {
        let seeds = |_| ("IMLOGIN__REGISTRY__REDIS_CLUSTER_NODES", redis.seeds_env());
        Self::start_with(seeds, n, extra, ns).await
    }

    async fn start_with(
        redis: impl Fn(usize) -> (&'static str, String),
        n: usize,
        extra: &[(&str, &str)],
        ns: String,
    ) -> Cluster {
        let db = TestDb::new(Backend::Postgres).await;
        let mut env: Vec<(&str, String)> = vec![
            ("IMLOGIN__DATABASE__URL", db.url()),
            ("IMLOGIN__REGISTRY__BACKEND", "redis".into()),
            ("IMLOGIN__REGISTRY__NAMESPACE", ns.clone()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let on = |i: usize| {
            let mut env = env.clone();
            env.push(redis(i));
            env
        };
        // The first node migrates the database; the others start beside it.
        let mut nodes = vec![start_binary(&on(0))];
        for i in 1..n {
            nodes.push(start_binary(&on(i)));
        }
        Cluster { nodes, ns, _db: db }
    }

    pub fn ws(&self, node: usize) -> String {
        format!("ws://{}/v1/ws", self.nodes[node].addr)
    }

    pub async fn connect(&self, node: usize) -> Client {
        Client::connect(&self.ws(node)).await.unwrap()
    }

    /// A native admin call on `node` with the demo app's key.
    pub async fn admin(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("http://{}/admin/v1/apps/{APP}{path}", self.nodes[node].addr);
        let mut req = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sets the app's policy through `node` and waits until every node applies it.
    pub async fn set_policy(&self, node: usize, policy: Value) {
        let (status, body) = self
            .admin(node, reqwest::Method::PUT, "/policy", Some(policy.clone()))
            .await;
        assert_eq!(status, 200, "{body}");
        for n in 0..self.nodes.len() {
            eventually("every node has the policy", || async {
                let (_, body) = self.admin(n, reqwest::Method::GET, "/policy", None).await;
                body["mode"] == policy["mode"]
            })
            .await;
        }
    }

    /// The user's instances as any node sees them.
    pub async fn instances(&self, node: usize, user: &str) -> Vec<Value> {
        let (status, body) = self
            .admin(node, reqwest::Method::GET, &format!("/users/{user}"), None)
            .await;
        if status == 404 {
            return Vec::new();
        }
        body["instances"].as_array().cloned().unwrap_or_default()
    }
}

/// A namespace of a test's own.
pub fn random_ns() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// The next event, within 5 s.
async fn next(c: &mut Client) -> ClientEvent {
    crate::helpers::event(c).await
}

/// The kick the client was sent, and then the close.
pub async fn kicked(c: &mut Client) -> (u32, String) {
    let (code, reason) = match next(c).await {
        ClientEvent::KickedOffline { code, reason, .. } => (code, reason),
        other => panic!("expected kicked_offline, got {other:?}"),
    };
    match next(c).await {
        ClientEvent::Closed {
            code: Some(4001), ..
        } => {}
        other => panic!("expected close 4001, got {other:?}"),
    }
    (code, reason)
}

async fn thirty_logins_of_one_user_over_three_nodes_keep_the_policy_and_kick_each_loser_once(
    redis: Redis,
) {
    let cluster = Cluster::start(redis, 3, &[]).await;
    let clients: Vec<Client> = join_all((0..30).map(|i| cluster.connect(i % 3))).await;
    // All at once: the demo policy (dual) allows one web instance.
    let p = params("racer", "web");
    let logins = join_all(clients.iter().map(|c| c.login(&p))).await;
    let ids: Vec<String> = logins
        .into_iter()
        .map(|r| r.expect("every login succeeds").instance_id)
        .collect();
    let mut clients = clients;
    let mut kicked_ids = Vec::new();
    let mut survivors = Vec::new();
    for (c, id) in clients.iter_mut().zip(&ids) {
        match tokio::time::timeout(Duration::from_secs(5), c.next_event()).await {
            Ok(Some(ClientEvent::KickedOffline { reason, code, .. })) => {
                assert_eq!((reason.as_str(), code), ("multi_terminal", 6208));
                kicked_ids.push(id.clone());
                match next(c).await {
                    ClientEvent::Closed {
                        code: Some(4001), ..
                    } => {}
                    other => panic!("after kicked_offline: {other:?}"),
                }
                // Exactly once: nothing more comes.
                assert!(c.try_next_event().is_none());
            }
            Err(_) => survivors.push(id.clone()),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        survivors.len(),
        1,
        "one web instance survives: {survivors:?}"
    );
    assert_eq!(kicked_ids.len(), 29);
    for node in 0..3 {
        let instances = cluster.instances(node, "racer").await;
        assert_eq!(instances.len(), 1, "node {node} sees {instances:?}");
        assert_eq!(instances[0]["instance_id"], survivors[0].as_str());
    }
}

async fn a_login_on_one_node_kicks_the_instance_on_another(redis: Redis) {
    let cluster = Cluster::start(redis, 3, &[]).await;
    let mut first = cluster.connect(0).await;
    first.login(&params("crossed", "web")).await.unwrap();
    let second = cluster.connect(1).await;
    second.login(&params("crossed", "web")).await.unwrap();
    match next(&mut first).await {
        ClientEvent::KickedOffline {
            code,
            reason,
            by_platform,
        } => {
            assert_eq!(
                (code, reason.as_str(), by_platform.as_deref()),
                (6208, "multi_terminal", Some("web"))
            );
        }
        other => panic!("{other:?}"),
    }
    // Another platform class on a third node leaves web alone.
    let phone = cluster.connect(2).await;
    phone.login(&params("crossed", "android")).await.unwrap();
    assert_eq!(second.status().await.unwrap(), 1);
    assert_eq!(cluster.instances(2, "crossed").await.len(), 2);
}

async fn resume_works_on_any_node_and_closes_the_old_connection_with_4002(redis: Redis) {
    let cluster = Cluster::start(redis, 3, &[]).await;
    let lost = cluster.connect(0).await;
    let login = lost.login(&params("roamer", "web")).await.unwrap();
    drop(lost);
    eventually("the instance is disconnected", || async {
        cluster
            .instances(1, "roamer")
            .await
            .first()
            .is_some_and(|i| i["state"] == "disconnected")
    })
    .await;
    let back = cluster.connect(1).await;
    let resumed = back.resume(&login.session_token).await.unwrap();
    assert_eq!(resumed.instance_id, login.instance_id);
    assert_eq!(cluster.instances(2, "roamer").await[0]["state"], "online");

    // A half-open connection elsewhere (still open on node 1) is closed with 4002 when node 2 resumes.
    let mut half_open = back;
    let again = cluster.connect(2).await;
    again.resume(&login.session_token).await.unwrap();
    match next(&mut half_open).await {
        ClientEvent::Closed { code, .. } => assert_eq!(code, Some(4002)),
        other => panic!("{other:?}"),
    }
    assert_eq!(again.status().await.unwrap(), 1);
}

async fn admin_kick_and_disable_reach_every_node_and_every_cache(redis: Redis) {
    let cluster = Cluster::start(redis, 3, &[]).await;
    // Every platform class at once, one node each.
    let policy = json!({"mode": "multi", "web_instances": 1, "instances_per_platform": 1});
    cluster.set_policy(2, policy).await;
    let mut on0 = cluster.connect(0).await;
    on0.login(&params("governed", "web")).await.unwrap();
    let mut on1 = cluster.connect(1).await;
    on1.login(&params("governed", "android")).await.unwrap();
    // Node 2 holds one too (and caches the account).
    let mut on2 = cluster.connect(2).await;
    on2.login(&params("governed", "windows")).await.unwrap();

    // Kick with revocation through node 2: both clients are told 70052, and old tickets fail on every node.
    let old_ticket = params("governed", "web");
    let (status, body) = cluster
        .admin(
            2,
            reqwest::Method::POST,
            "/users/governed/kick",
            Some(json!({"revoke_sigs": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kicked(&mut on0).await, (70052, "admin_kick".into()));
    assert_eq!(kicked(&mut on1).await, (70052, "admin_kick".into()));
    assert_eq!(kicked(&mut on2).await, (70052, "admin_kick".into()));
    for node in 0..3 {
        let c = cluster.connect(node).await;
        assert_eq!(
            c.login(&old_ticket).await.unwrap_err().code(),
            Some(70052),
            "node {node}"
        );
    }

    // A fresh ticket logs in (next second); disabling through node 1 kicks it on node 0 and every node refuses.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut fresh = cluster.connect(0).await;
    fresh.login(&params("governed", "web")).await.unwrap();
    let (status, _) = cluster
        .admin(1, reqwest::Method::POST, "/users/governed/disable", None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(kicked(&mut fresh).await, (70051, "account_disabled".into()));
    for node in 0..3 {
        let c = cluster.connect(node).await;
        let e = c.login(&params("governed", "web")).await.unwrap_err();
        assert_eq!(e.code(), Some(70051), "node {node}");
    }
}

async fn a_policy_set_on_one_node_applies_on_every_node(redis: Redis) {
    let cluster = Cluster::start(redis, 3, &[]).await;
    let policy = json!({"mode": "multi", "web_instances": 3, "instances_per_platform": 1});
    cluster.set_policy(0, policy).await;
    let mut clients = Vec::new();
    for node in 0..3 {
        let c = cluster.connect(node).await;
        c.login(&params("many-tabs", "web")).await.unwrap();
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in &mut clients {
        assert!(
            c.try_next_event().is_none(),
            "three web instances are allowed everywhere"
        );
    }
    assert_eq!(cluster.instances(1, "many-tabs").await.len(), 3);
}

async fn a_node_killed_with_sigkill_leaves_its_users_resumable_elsewhere_then_frees_them(
    redis: Redis,
) {
    let cluster = Cluster::start(
        redis,
        3,
        &[
            ("IMLOGIN__REGISTRY__NODE_TIMEOUT_SECS", "3"),
            ("IMLOGIN__SESSION__RECONNECT_GRACE_SECS", "6"),
        ],
    )
    .await;
    let mut cluster = cluster;
    let resumer = cluster.connect(0).await;
    let login = resumer.login(&params("survivor", "web")).await.unwrap();
    let abandoned = cluster.connect(0).await;
    abandoned.login(&params("abandoned", "web")).await.unwrap();
    signal(&cluster.nodes[0].child, "KILL");
    cluster.nodes[0].child.wait().unwrap();
    drop((resumer, abandoned));
    eventually("the dead node's instances become disconnected", || async {
        let s = cluster.instances(1, "survivor").await;
        let a = cluster.instances(1, "abandoned").await;
        s.first().is_some_and(|i| i["state"] == "disconnected")
            && a.first().is_some_and(|i| i["state"] == "disconnected")
    })
    .await;
    let back = cluster.connect(2).await;
    let resumed = back.resume(&login.session_token).await.unwrap();
    assert!(resumed.resumed);
    // The other user's instance goes after the grace: the user is not locked out, and a new login is alone.
    let mut waited = 0;
    while !cluster.instances(1, "abandoned").await.is_empty() {
        assert!(
            waited < 200,
            "the abandoned instance is removed after the grace"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let mut again = cluster.connect(1).await;
    again.login(&params("abandoned", "web")).await.unwrap();
    assert!(again.try_next_event().is_none());
    assert_eq!(cluster.instances(2, "survivor").await[0]["state"], "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_logins_answer_70169_connected_clients_stay_and_are_put_back() {
    let mut redis = PrivateRedis::start();
    let cluster = Cluster::start_on(&redis.url(), 2, &[]).await;
    let connected = cluster.connect(0).await;
    let login = connected.login(&params("steady", "web")).await.unwrap();
    redis.stop();

    let refused = cluster.connect(1).await;
    let e = refused.login(&params("newcomer", "web")).await.unwrap_err();
    assert_eq!(e.code(), Some(70169), "{e}");
    let ready = reqwest::get(format!("http://{}/readyz", cluster.nodes[1].addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["registry"], "unreachable");
    // The connected client is still connected and answered.
    connected.ping().await.unwrap();

    // Redis comes back (empty: it keeps nothing on disk).
    redis.restart();
    eventually("both nodes are ready again", || async {
        let mut ok = true;
        for b in &cluster.nodes {
            ok &= reqwest::get(format!("http://{}/readyz", b.addr))
                .await
                .unwrap()
                .status()
                == 200;
        }
        ok
    })
    .await;
    let c = cluster.connect(1).await;
    eventually("logins work again", || async {
        match c.login(&params("newcomer", "web")).await {
            Ok(_) => true,
            Err(ClientError::Server { code: 70169, .. }) => false,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    // The client whose instance Redis lost stays logged in: its node puts the instance back (the user's record
    // is older than what Redis had acknowledged to it), so a resume elsewhere finds it.
    eventually(
        "the connected client's instance is back in the registry",
        || async { !cluster.instances(1, "steady").await.is_empty() },
    )
    .await;
    connected.ping().await.unwrap();
    let again = cluster.connect(1).await;
    again.resume(&login.session_token).await.unwrap();
}
