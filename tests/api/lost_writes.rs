//! A node that missed pushes, or whose Redis lost writes (a failover promotes a replica that had not received
//! them), checks its connections against the registry: the instance ends on the connection its client resumed
//! it on last, whichever of the two was lost; the other connection is closed with 4002; and losing one instance's
//! writes does not decide for another instance of the same user (PROTOCOL §4, docs/operations.md).

use std::time::{Duration, Instant};

use imlogin::client::{Client, ClientEvent};
use redis::aio::MultiplexedConnection;

use crate::cluster::{Cluster, PrivateRedis};
use crate::helpers::{params, Proxy, APP};

/// How long a push nobody heard is published again (2 s), and a margin.
const UNHEARD_KEPT: Duration = Duration::from_millis(2500);

/// Two nodes on a Redis of their own (the tests cut every subscription to it), node 0 behind a proxy that can
/// cut it off (so pushes to it are lost), and a connection to Redis that makes it forget writes as a failover
/// does.
struct Lossy {
    proxy: Proxy,
    /// When node 0 was cut off.
    cut_at: Option<Instant>,
    cluster: Cluster,
    redis: MultiplexedConnection,
    _server: PrivateRedis,
}

impl Lossy {
    async fn start() -> Lossy {
        let server = PrivateRedis::start();
        let proxy = Proxy::start(format!("127.0.0.1:{}", server.port).parse().unwrap()).await;
        let urls = [format!("redis://{}", proxy.addr), server.url()];
        let cluster = Cluster::start_each(&urls, &[]).await;
        let redis = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Lossy {
            proxy,
            cut_at: None,
            cluster,
            redis,
            _server: server,
        }
    }

    /// A client logged in as `user` on `platform` through `node`: its connection and its session token.
    async fn log_in(&self, node: usize, user: &str, platform: &str) -> (Client, String) {
        let c = self.cluster.connect(node).await;
        let token = c
            .login(&params(user, platform))
            .await
            .unwrap()
            .session_token;
        (c, token)
    }

    /// A connection to `node` that resumed the session `token`.
    async fn resume(&self, node: usize, token: &str) -> Client {
        let c = self.cluster.connect(node).await;
        c.resume(token).await.unwrap();
        c
    }

    fn key(&self, user: &str) -> String {
        format!("{}:u:{APP}:{user}", self.cluster.ns)
    }

    /// The user's record now.
    async fn record(&mut self, user: &str) -> Vec<(String, String)> {
        let key = self.key(user);
        redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut self.redis)
            .await
            .unwrap()
    }

    /// Redis forgets every write to the user since `record` was read (empty: the user's whole record).
    async fn forget_since(&mut self, user: &str, record: &[(String, String)]) {
        let key = self.key(user);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key);
        if !record.is_empty() {
            pipe.hset_multiple(&key, record).expire(&key, 3600);
        }
        let _: () = pipe.query_async(&mut self.redis).await.unwrap();
    }

    /// Node 0 is cut off from Redis: pushes to it go unheard.
    fn cut(&mut self) {
        self.proxy.cut();
        self.cut_at = Some(Instant::now());
    }

    /// Node 0 is back, once the pushes sent to it meanwhile are lost: other nodes publish a push nobody heard
    /// again for a while (docs/operations.md), and these tests are about what a node does after losing them.
    async fn restore(&mut self) {
        if let Some(at) = self.cut_at.take() {
            tokio::time::sleep_until((at + UNHEARD_KEPT).into()).await;
        }
        self.proxy.restore();
    }

    /// Node 0 is back, and every node subscribes again (as after a failover) and checks its connections.
    async fn recover(&mut self) {
        self.restore().await;
        self.cut_subscriptions().await;
    }

    /// Every subscription to Redis is cut: each node that reaches Redis subscribes again and checks.
    async fn cut_subscriptions(&mut self) {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut self.redis)
            .await
            .unwrap();
    }

    /// The instances of the user, as node 1 lists them: every one online.
    async fn all_online(&self, user: &str, n: usize) {
        let listed = self.cluster.instances(1, user).await;
        assert_eq!(listed.len(), n, "{listed:?}");
        assert!(listed.iter().all(|i| i["state"] == "online"), "{listed:?}");
    }
}

async fn closed_with_4002(c: &mut Client) {
    match tokio::time::timeout(Duration::from_secs(15), c.next_event()).await {
        Ok(Some(ClientEvent::Closed { code, .. })) => assert_eq!(code, Some(4002)),
        other => panic!("the connection the client left is closed with 4002: {other:?}"),
    }
}

/// The connections the client uses now stay, after the checks have run.
async fn still_open(clients: &mut [&mut Client]) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    for c in clients.iter_mut() {
        assert!(
            c.try_next_event().is_none(),
            "a connection in use was closed"
        );
        assert_eq!(c.status().await.unwrap(), 1);
    }
}

/// The push is lost: node 0 was cut off when its client resumed on node 1. Node 0's check leaves the instance
/// where the client resumed it, and closes the old connection, as the push would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_push_leaves_the_instance_where_its_client_resumed_it() {
    let mut t = Lossy::start().await;
    let (mut old, login) = t.log_in(0, "mover", "web").await;
    t.cut();
    let mut moved = t.resume(1, &login).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.recover().await;

    closed_with_4002(&mut old).await;
    still_open(&mut [&mut moved]).await;
    t.all_online("mover", 1).await;
}

/// The resume is lost too (the record still names the old connection): the connection that resumed takes the
/// instance back, as the record is older than its resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_resume_is_taken_back_by_the_connection_that_made_it() {
    let mut t = Lossy::start().await;
    let (mut old, login) = t.log_in(0, "forgotten", "web").await;
    let before = t.record("forgotten").await;
    t.cut();
    let mut moved = t.resume(1, &login).await;
    t.forget_since("forgotten", &before).await;
    t.recover().await;

    closed_with_4002(&mut old).await;
    still_open(&mut [&mut moved]).await;
    t.all_online("forgotten", 1).await;
}

/// After the loss and before the checks, another instance of the same user logs in: that change to the user is
/// not a later attachment of the lost one, which is still taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_resume_is_taken_back_after_another_instance_of_the_user_logged_in() {
    let mut t = Lossy::start().await;
    let (mut old, login) = t.log_in(0, "busy", "web").await;
    let before = t.record("busy").await;
    t.cut();
    let mut moved = t.resume(1, &login).await;
    t.forget_since("busy", &before).await;
    let (mut phone, _) = t.log_in(1, "busy", "android").await;
    t.recover().await;

    closed_with_4002(&mut old).await;
    still_open(&mut [&mut moved, &mut phone]).await;
    t.all_online("busy", 2).await;
}

/// Two instances of one user resumed on node 1, both resumes lost: each is taken back (the first taking back
/// does not make the second look newer elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lost_resumes_of_one_user_are_both_taken_back() {
    let mut t = Lossy::start().await;
    let (mut old_web, web) = t.log_in(0, "twice", "web").await;
    let (mut old_android, android) = t.log_in(0, "twice", "android").await;
    let before = t.record("twice").await;
    t.cut();
    let mut moved_web = t.resume(1, &web).await;
    let mut moved_android = t.resume(1, &android).await;
    t.forget_since("twice", &before).await;
    t.recover().await;

    closed_with_4002(&mut old_web).await;
    closed_with_4002(&mut old_android).await;
    still_open(&mut [&mut moved_web, &mut moved_android]).await;
    t.all_online("twice", 2).await;
}

/// One instance's resume and another's login lost together: the resume is taken back and the login put back,
/// whichever the node checks first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_resume_and_a_lost_login_of_one_user_are_both_restored() {
    let mut t = Lossy::start().await;
    let (mut old, login) = t.log_in(0, "mixed", "web").await;
    let before = t.record("mixed").await;
    t.cut();
    let mut moved = t.resume(1, &login).await;
    let (mut phone, _) = t.log_in(1, "mixed", "android").await;
    t.forget_since("mixed", &before).await;
    t.recover().await;

    closed_with_4002(&mut old).await;
    still_open(&mut [&mut moved, &mut phone]).await;
    t.all_online("mixed", 2).await;
}

/// One instance resumed twice (A on node 0, then B on node 1), both resumes lost, and node 0 checks first: it
/// takes the instance back from the login's connection under A's own number, still older than B's, so node 1's
/// check takes it to B, where the client is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_lost_resumes_of_one_instance_the_later_wins() {
    let mut t = Lossy::start().await;
    let (mut first, login) = t.log_in(0, "bounce", "web").await;
    let before = t.record("bounce").await;
    let mut a = t.resume(0, &login).await;
    closed_with_4002(&mut first).await;
    t.cut();
    let mut b = t.resume(1, &login).await;
    t.forget_since("bounce", &before).await;
    // Node 0 comes back first (its bus reconnects and it checks A), then every node checks.
    t.restore().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.recover().await;

    closed_with_4002(&mut a).await;
    still_open(&mut [&mut b]).await;
    t.all_online("bounce", 1).await;
}

/// The login lost too (the user's record with it), and node 0 checks first: it puts the instance back under its
/// login's number, older than B's resume, so node 1's check takes it to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_login_and_its_lost_resume_end_on_the_resume() {
    let mut t = Lossy::start().await;
    let (mut a, login) = t.log_in(0, "bounce2", "web").await;
    t.cut();
    let mut b = t.resume(1, &login).await;
    t.forget_since("bounce2", &[]).await;
    t.restore().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.recover().await;

    closed_with_4002(&mut a).await;
    still_open(&mut [&mut b]).await;
    t.all_online("bounce2", 1).await;
}

/// A resume of a disconnected instance and another device's login lost together: the check that attaches the
/// instance again marks it as a put-back, so the lost login is still put back, whichever is checked first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_attaching_a_disconnected_instance_again_lets_a_lost_login_be_put_back() {
    for round in 0..3 {
        let user = format!("detached{round}");
        let mut t = Lossy::start().await;
        let (first, login) = t.log_in(1, &user, "web").await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = t.record(&user).await;
        let mut moved = t.resume(1, &login).await;
        let (mut phone, _) = t.log_in(1, &user, "android").await;
        t.forget_since(&user, &before).await;
        t.recover().await;
        still_open(&mut [&mut moved, &mut phone]).await;
        t.all_online(&user, 2).await;
    }
}

/// The client resumes on node 1 while node 0 is cut off, Redis forgets that resume, and the client then resumes
/// on its first connection again (which the record still names): that resume is its latest attachment, so the
/// connection on node 1 is closed with 4002 and the first one kept, whichever node checks first (node 0's
/// check; or node 1's while node 0 is still cut off, its close arriving late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_the_connection_the_record_names_is_the_latest_whichever_node_checks_first() {
    for node_1_first in [false, true] {
        let user = format!("back{}", u8::from(node_1_first));
        let mut t = Lossy::start().await;
        let (mut first, login) = t.log_in(0, &user, "web").await;
        let before = t.record(&user).await;
        t.cut();
        let mut moved = t.resume(1, &login).await;
        t.forget_since(&user, &before).await;
        t.restore().await;
        // Node 0 reconnects to Redis first (70169 until then).
        let mut tries = 0;
        while let Err(e) = first.resume(&login).await {
            assert_eq!(e.code(), Some(70169), "{e}");
            tries += 1;
            assert!(tries < 100, "node 0 reaches Redis again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if node_1_first {
            t.cut();
            // Node 1's subscription is cut (node 0's already is): node 1 checks first.
            t.cut_subscriptions().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            t.proxy.restore();
            t.cut_at = None;
        }
        t.recover().await;

        closed_with_4002(&mut moved).await;
        still_open(&mut [&mut first]).await;
        t.all_online(&user, 1).await;
    }
}

/// An admin disabled, deleted or revoked the account through node 1, and Redis then lost the kick (a failover):
/// the old session is still refused with the admin action's code, over HTTP and in a resume on either node, since
/// the database keeps what the admin did; and the instance is gone from the registry again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_redis_lost_an_admin_actions_kick_is_refused() {
    use reqwest::Method;
    let mut t = Lossy::start().await;
    let actions = [
        ("lost-disable", Method::POST, "/disable", None, 70051),
        ("lost-delete", Method::DELETE, "", None, 70107),
        (
            "lost-revoke",
            Method::POST,
            "/kick",
            Some(serde_json::json!({"revoke_sigs": true})),
            70052,
        ),
    ];
    for (user, method, action, body, code) in actions {
        let (mut c, token) = t.log_in(0, user, "web").await;
        let before = t.record(user).await;
        let path = format!("/users/{user}{action}");
        let (status, reply) = t.cluster.admin(1, method, &path, body).await;
        assert!(status == 200 || status == 204, "{status} {reply}");
        assert_eq!(crate::cluster::kicked(&mut c).await.0, code, "{user}");
        t.forget_since(user, &before).await;

        // Read over HTTP with the session token, then resumed on each node.
        let url = format!("http://{}/v1/session", t.cluster.nodes[0].addr);
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let read: serde_json::Value = r.json().await.unwrap();
        assert_eq!(read["code"], code, "{user}: {read}");
        for node in [1, 0, 1] {
            let c = t.cluster.connect(node).await;
            let e = c.resume(&token).await.unwrap_err();
            assert_eq!(e.code(), Some(code), "{user} on node {node}: {e}");
        }
        assert!(t
            .record(user)
            .await
            .iter()
            .all(|(f, _)| !f.starts_with("i:")));
    }
}

/// Node 0 missed the message that an account was disabled (its subscription was cut while node 1 disabled it),
/// and holds no connection of the user: once subscribed again it reads every account anew, so the user's next login there is refused (70051), not let
/// in on what node 0 had cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_an_accounts_change_reads_it_again_once_subscribed() {
    let mut t = Lossy::start().await;
    // Node 0 caches the account; no connection of the user is left there for its check to look at.
    let (c, _) = t.log_in(0, "missed", "web").await;
    c.logout().await.unwrap();
    t.cut();
    let (status, reply) = t
        .cluster
        .admin(1, reqwest::Method::POST, "/users/missed/disable", None)
        .await;
    assert_eq!(status, 204, "{reply}");
    t.recover().await;
    crate::helpers::eventually("node 0 refuses the disabled account", || async {
        let c = t.cluster.connect(0).await;
        match c.login(&params("missed", "web")).await {
            Err(e) => e.code() == Some(70051),
            Ok(_) => false,
        }
    })
    .await;
}
