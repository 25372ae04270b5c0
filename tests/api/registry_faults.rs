//! The Redis registry answering late (behind a proxy that holds its replies back past the client's timeout) or
//! not at all: a login or resume answered with an error leaves no instance behind, and an instance whose
//! connection ended while Redis could not be told is still disconnected, then removed after the grace
//! (PROTOCOL §4). Redis only: the memory registry cannot fail.

use std::time::Duration;

use imlogin::client::ClientEvent;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{
    eventually, other_params, params, spawn_behind_proxy, Backend, Proxy, TestApp, TestDb, APP,
    OTHER_APP, OTHER_APP_ENV,
};

/// Redis holds every reply back this long: past the client's timeout (1 s), so the request's outcome is unknown.
const LATE: Duration = Duration::from_millis(2500);

/// The production configuration with the registry's Redis behind a proxy, and a reconnect grace of `grace` s.
async fn behind_a_slow_redis(grace: &str) -> (TestDb, Proxy, TestApp) {
    behind_a_slow_redis_with(grace, &[]).await
}

async fn behind_a_slow_redis_with(grace: &str, extra: &[(&str, &str)]) -> (TestDb, Proxy, TestApp) {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let redis = format!("redis://{}", proxy.addr);
    let mut env = vec![
        ("REGISTRY__REDIS_URL", redis.as_str()),
        ("SESSION__RECONNECT_GRACE_SECS", grace),
    ];
    env.extend_from_slice(extra);
    let settings = db.settings(&env);
    assert_eq!(settings.registry.redis_url.expose(), redis);
    let app = TestApp::spawn(settings, db.database().await).await;
    (db, proxy, app)
}

/// The user's instances as the native admin API lists them: (instance_id, state); `None` while it answers
/// 503 (Redis is slow).
async fn try_instances(app: &TestApp, user: &str) -> Option<Vec<(String, String)>> {
    let (status, body) = app
        .native(Method::GET, &format!("/users/{user}"), None)
        .await;
    if status == 503 {
        return None;
    }
    assert_eq!(status, 200, "{body}");
    let list = body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i: &Value| {
            let field = |f: &str| i[f].as_str().unwrap().to_owned();
            (field("instance_id"), field("state"))
        })
        .collect();
    Some(list)
}

async fn instances(app: &TestApp, user: &str) -> Vec<(String, String)> {
    try_instances(app, user)
        .await
        .expect("the admin API answers")
}

/// Whether every instance of the user is disconnected (and there is one).
async fn all_disconnected(app: &TestApp, user: &str) -> bool {
    try_instances(app, user)
        .await
        .is_some_and(|l| !l.is_empty() && l.iter().all(|(_, s)| s == "disconnected"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_answered_70169_leaves_no_instance_behind() {
    let (_db, proxy, app) = behind_a_slow_redis("120").await;
    let c = app.connect().await;
    // Registered first, so that the late login is a known user's: only the registry is slow.
    c.login(&params("ghost", "android")).await.unwrap();
    c.logout().await.unwrap();

    proxy.delay(LATE);
    let refused = c.login(&params("ghost", "android")).await.unwrap_err();
    assert_eq!(refused.code(), Some(70169));
    proxy.delay(Duration::ZERO);

    // The admission Redis ran after the node gave up on it is undone.
    eventually("the refused login's instance is gone", || async {
        try_instances(&app, "ghost").await == Some(Vec::new())
    })
    .await;
    // The same connection logs in again, and is the user's only instance.
    let ok = c.login(&params("ghost", "android")).await.unwrap();
    assert_eq!(
        instances(&app, "ghost").await,
        [(ok.instance_id, "online".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_answered_70169_leaves_the_instance_resumable_and_not_attached() {
    let (_db, proxy, app) = behind_a_slow_redis("120").await;
    let first = app.connect().await;
    let token = first
        .login(&params("comeback", "web"))
        .await
        .unwrap()
        .session_token;
    drop(first);
    eventually("the instance is disconnected", || async {
        all_disconnected(&app, "comeback").await
    })
    .await;

    let second = app.connect().await;
    proxy.delay(LATE);
    assert_eq!(second.resume(&token).await.unwrap_err().code(), Some(70169));
    proxy.delay(Duration::ZERO);
    // The attachment Redis made after the node gave up is undone: nobody holds it, so it is not online.
    tokio::time::sleep(LATE).await;
    eventually("the instance is disconnected again", || async {
        all_disconnected(&app, "comeback").await
    })
    .await;
    let resumed = second.resume(&token).await.unwrap();
    assert_eq!(
        instances(&app, "comeback").await,
        [(resumed.instance_id, "online".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_ends_while_redis_is_slow_is_disconnected_then_removed() {
    let (_db, proxy, app) = behind_a_slow_redis("2").await;
    let c = app.connect().await;
    c.login(&params("leaver", "iphone")).await.unwrap();
    // Redis is out of reach when the connection ends: its end is not written then. (The node also sweeps when
    // its bus comes back, which catches this too.)
    proxy.cut();
    drop(c);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();
    // It is written once Redis answers, and the grace (2 s) then ends.
    eventually("the instance is removed after the grace", || async {
        try_instances(&app, "leaver").await == Some(Vec::new())
    })
    .await;
}

/// A login that Redis ran after the node gave up on it kicked the instance it displaced: that instance's client
/// is told (`kicked_offline`), as for any kick (PROTOCOL §5), once the node learns the login ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_kicked_by_a_login_that_ran_late_is_told() {
    let (_db, proxy, app) = behind_a_slow_redis("120").await;
    let mut first = app.connect().await;
    first.login(&params("displaced", "web")).await.unwrap();
    let second = app.connect().await;
    proxy.delay(LATE);
    // The demo app allows one web instance: this login, had it been answered, would have kicked the first.
    let late = second.login(&params("displaced", "web")).await.unwrap_err();
    assert_eq!(late.code(), Some(70169));
    proxy.delay(Duration::ZERO);
    match tokio::time::timeout(Duration::from_secs(15), first.next_event()).await {
        Ok(Some(ClientEvent::KickedOffline { code, reason, .. })) => {
            assert_eq!((code, reason.as_str()), (6208, "multi_terminal"))
        }
        other => panic!("the displaced instance is told: {other:?}"),
    }
    eventually("neither instance is left", || async {
        try_instances(&app, "displaced").await == Some(Vec::new())
    })
    .await;
}

/// A reload that removes an app while Redis does not answer kicks the app's users once it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_apps_users_are_kicked_once_redis_answers() {
    let (_db, proxy, app) = behind_a_slow_redis_with("120", &OTHER_APP_ENV).await;
    let mut c = app.connect().await;
    c.login(&other_params("orphan", "android")).await.unwrap();
    let mut apps = app.state.settings.apps.clone();
    apps.retain(|a| a.sdkappid != OTHER_APP);
    let sessions = &app.state.sessions;
    sessions.auth().apps().replace(&apps);
    proxy.delay(LATE);
    assert_eq!(
        sessions.end_app(OTHER_APP).await,
        0,
        "Redis does not answer in time"
    );
    proxy.delay(Duration::ZERO);
    match tokio::time::timeout(Duration::from_secs(15), c.next_event()).await {
        Ok(Some(ClientEvent::KickedOffline { code, reason, .. })) => {
            assert_eq!((code, reason.as_str()), (70020, "app_removed"))
        }
        other => panic!("the removed app's user is kicked: {other:?}"),
    }
}

/// A login still running when a reload removed its app (its registration waited on the database) is answered
/// 70020, not admitted past the reload's kicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_outlives_its_apps_removal_is_refused_and_leaves_nothing() {
    let (_db, db_proxy, app) = spawn_behind_proxy().await;
    let c = app.connect().await;
    db_proxy.delay(Duration::from_millis(700));
    let newcomer = params("newcomer", "web");
    let login = c.login(&newcomer);
    let remove = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut apps = app.state.settings.apps.clone();
        apps.retain(|a| a.sdkappid != APP);
        app.state.sessions.auth().apps().replace(&apps);
        app.state.sessions.end_app(APP).await
    };
    let (answer, kicked) = tokio::join!(login, remove);
    assert_eq!(kicked, 0, "nothing was admitted yet when the reload kicked");
    assert_eq!(answer.unwrap_err().code(), Some(70020));
    db_proxy.delay(Duration::ZERO);
    let left = app
        .state
        .sessions
        .user_instances(APP, "newcomer")
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// A check of the node's connections that Redis does not answer in time is made again at a later sweep, once it
/// answers: an instance its client resumed elsewhere meanwhile (as the record now says) has its old connection
/// closed with 4002. (Only a bus that reconnects made the node check again before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_redis_did_not_answer_is_made_again() {
    let (_db, proxy, app) = behind_a_slow_redis("120").await;
    let mut c = app.connect().await;
    let login = c.login(&params("checked", "web")).await.unwrap();
    // The record says another connection (of another node) attached the instance since.
    let ns = &app.state.settings.registry.namespace;
    let key = format!("{ns}:u:{APP}:checked");
    let mut redis = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let field = format!("i:{}", login.instance_id);
    let value: String = redis::cmd("HGET")
        .arg(&key)
        .arg(&field)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut f: Vec<&str> = value.split('|').collect();
    (f[4], f[5]) = ("abc", "1");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg(&field)
        .arg(f.join("|"))
        .arg(format!("a:{}", login.instance_id))
        .arg("fffffffffffff")
        .query_async(&mut redis)
        .await
        .unwrap();

    proxy.delay(LATE);
    app.state.sessions.reconcile().await;
    // Every try of the check has timed out by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(c.try_next_event().is_none(), "checked while Redis was slow");
    proxy.delay(Duration::ZERO);
    // The settler's next sweep checks every connection again; sweeps are a minute apart at most once the first
    // (made while Redis was still slow) has run.
    match tokio::time::timeout(Duration::from_secs(75), c.next_event()).await {
        Ok(Some(ClientEvent::Closed { code, .. })) => assert_eq!(code, Some(4002)),
        other => panic!("the connection is checked again and closed with 4002: {other:?}"),
    }
}
