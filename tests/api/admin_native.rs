//! PROTOCOL §7, the native admin API: one authentication table over every route of the OpenAPI document, and
//! each endpoint's success and documented errors, on both stores.

use imlogin::client::ClientEvent;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    event, other_params, params, spawn_on, Backend, TestApp, TestDb, ADMIN_KEY, APP,
    OTHER_ADMIN_KEY, OTHER_APP, OTHER_APP_ENV,
};

crate::both_configs!(
    users_are_created_listed_paged_and_deleted,
    disable_and_enable,
    kick_one_instance_or_all_with_or_without_revocation,
    instances_and_online_counts,
    daily_active_users_over_a_range,
    policy_set_by_an_admin_applies_at_once_and_survives_a_restart,
    every_route_refuses_missing_wrong_and_other_apps_keys,
    every_user_route_takes_the_user_id_in_the_query_string_too,
    what_postgresql_cannot_store_is_refused_alike_on_both_stores,
);

/// Every operation of the OpenAPI document, with its path parameters filled in.
async fn operations(app: &TestApp) -> Vec<(Method, String)> {
    let doc: Value = app
        .http
        .get(app.url("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let p = path
                .replace("{sdkappid}", &APP.to_string())
                .replace("{user_id}", "someone")
                .replace("{event_id}", "e1");
            ops.push((m, p));
        }
    }
    ops
}

async fn every_route_refuses_missing_wrong_and_other_apps_keys(backend: Backend) {
    let env: Vec<(&str, &str)> = OTHER_APP_ENV.to_vec();
    let (_db, app) = spawn_on(backend, &env).await;
    let ops = operations(&app).await;
    assert!(ops.len() >= 22, "every route is documented: {ops:?}");
    for (method, path) in &ops {
        let url = app.url(path);
        let none = app.http.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a key");
        let body: Value = none.json().await.unwrap();
        assert_eq!(body["code"], 70403);
        for (key, status) in [("wrong-key-wrong-key", 401), (OTHER_ADMIN_KEY, 403)] {
            let r = app
                .http
                .request(method.clone(), &url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{method} {path} with {key}");
        }
        // And the right key gets past the check (whatever the route then answers).
        let r = app
            .http
            .request(method.clone(), &url)
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert!(
            ![401, 403].contains(&r.status().as_u16()),
            "{method} {path}"
        );
    }
    // The document itself needs no key.
    assert_eq!(app.status_of("/admin/v1/openapi.json").await, 200);
}

async fn users_are_created_listed_paged_and_deleted(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let (s, u) = app
        .native(
            Method::PUT,
            "/users/ann",
            Some(json!({"nick": "Ann", "face_url": "http://f/a.png"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            u["user_id"].as_str(),
            u["nick"].as_str(),
            u["disabled"].as_bool()
        ),
        (Some("ann"), Some("Ann"), Some(false))
    );
    let (s, u) = app
        .native(
            Method::PUT,
            "/users/ann",
            Some(json!({"face_url": "http://f/b.png"})),
        )
        .await;
    assert_eq!(
        (s, u["nick"].as_str(), u["face_url"].as_str()),
        (200, Some("Ann"), Some("http://f/b.png"))
    );
    for id in ["bob", "cid", "dan", "eve"] {
        assert_eq!(
            app.native(Method::PUT, &format!("/users/{id}"), Some(json!({})))
                .await
                .0,
            200
        );
    }
    // A UserID with a space and a slash, percent-encoded in the path.
    assert_eq!(
        app.native(Method::PUT, "/users/a%20b%2Fc", Some(json!({})))
            .await
            .0,
        200
    );
    let (s, u) = app.native(Method::GET, "/users/a%20b%2Fc", None).await;
    assert_eq!((s, u["user_id"].as_str()), (200, Some("a b/c")));
    // Pages of two, in UserID order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/users?limit=2&cursor={c}"),
            None => "/users?limit=2".into(),
        };
        let (s, page) = app.native(Method::GET, &q, None).await;
        assert_eq!(s, 200);
        for u in page["users"].as_array().unwrap() {
            seen.push(u["user_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["a b/c", "ann", "bob", "cid", "dan", "eve"]);
    // A user with an instance.
    let c = app.connect().await;
    let l = c.login(&params("bob", "web")).await.unwrap();
    let (_, u) = app.native(Method::GET, "/users/bob", None).await;
    assert_eq!(u["instances"][0]["instance_id"], json!(l.instance_id));
    assert_eq!(u["instances"][0]["state"], "online");
    // Deleted: 204, then 404; gone from the list.
    assert_eq!(app.native(Method::DELETE, "/users/cid", None).await.0, 204);
    let (s, e) = app.native(Method::GET, "/users/cid", None).await;
    assert_eq!((s, e["code"].as_u64()), (404, Some(70107)));
    assert_eq!(app.native(Method::DELETE, "/users/cid", None).await.0, 404);
    // Bad input: 400 with 70402.
    for (method, path, body) in [
        (Method::PUT, "/users/%40TIM%23x", Some(json!({}))),
        (Method::PUT, "/users/ann", Some(json!({"nick": 5}))),
        (
            Method::PUT,
            "/users/ann",
            Some(json!({"nick": "x".repeat(501)})),
        ),
        (Method::GET, "/users?limit=0", None),
        (Method::GET, "/users?cursor=%21%21", None),
    ] {
        let (s, e) = app.native(method.clone(), path, body).await;
        assert_eq!(
            (s, e["code"].as_u64()),
            (400, Some(70402)),
            "{method} {path}"
        );
    }
}

async fn disable_and_enable(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut c = app.connect().await;
    c.login(&params("dis", "mac")).await.unwrap();
    assert_eq!(
        app.native(Method::POST, "/users/dis/disable", None).await.0,
        204
    );
    assert_eq!(
        event(&mut c).await,
        ClientEvent::KickedOffline {
            code: 70051,
            reason: "account_disabled".into(),
            by_platform: None
        }
    );
    let again = app.connect().await;
    assert_eq!(
        again.login(&params("dis", "mac")).await.unwrap_err().code(),
        Some(70051)
    );
    let (_, u) = app.native(Method::GET, "/users/dis", None).await;
    assert_eq!(u["disabled"], true);
    assert_eq!(
        app.native(Method::POST, "/users/dis/enable", None).await.0,
        204
    );
    again.login(&params("dis", "mac")).await.unwrap();
    assert_eq!(
        app.native(Method::POST, "/users/nobody/disable", None)
            .await
            .0,
        404
    );
}

async fn kick_one_instance_or_all_with_or_without_revocation(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("APPS__0__POLICY__MODE", "multi")]).await;
    let mut a = app.connect().await;
    let mut b = app.connect().await;
    let la = a.login(&params("kk", "android")).await.unwrap();
    let lb = b.login(&params("kk", "web")).await.unwrap();
    let (s, k) = app
        .native(
            Method::POST,
            "/users/kk/kick",
            Some(json!({"instance_id": la.instance_id})),
        )
        .await;
    assert_eq!((s, k["kicked"].as_u64()), (200, Some(1)));
    assert_eq!(
        event(&mut a).await,
        ClientEvent::KickedOffline {
            code: 6208,
            reason: "admin_kick".into(),
            by_platform: None
        }
    );
    assert_eq!(b.status().await.unwrap(), 1, "the other instance stays");
    // The same ticket still works after a kick without revocation.
    app.connect()
        .await
        .login(&params("kk", "android"))
        .await
        .unwrap();
    // A ticket issued before the revocation (one made after it, in a later second, would be valid).
    let old_ticket = params("kk", "web");
    let (s, k) = app
        .native(
            Method::POST,
            "/users/kk/kick",
            Some(json!({"revoke_sigs": true})),
        )
        .await;
    assert_eq!((s, k["kicked"].as_u64()), (200, Some(2)));
    assert_eq!(
        event(&mut b).await,
        ClientEvent::KickedOffline {
            code: 70052,
            reason: "admin_kick".into(),
            by_platform: None
        }
    );
    let c = app.connect().await;
    assert_eq!(
        c.resume(&lb.session_token).await.unwrap_err().code(),
        Some(70052)
    );
    assert_eq!(c.login(&old_ticket).await.unwrap_err().code(), Some(70052));
    // No body: every instance, no revocation.
    let (s, k) = app.native(Method::POST, "/users/kk/kick", None).await;
    assert_eq!((s, k["kicked"].as_u64()), (200, Some(0)));
    assert_eq!(
        app.native(Method::POST, "/users/nobody/kick", None).await.0,
        404
    );
}

/// Counted among other apps' users (the same UserIDs in another app), and, in the production configuration,
/// beside other deployments' keys in the same Redis (see `helpers::crowd_redis`).
async fn instances_and_online_counts(backend: Backend) {
    let mut env = OTHER_APP_ENV.to_vec();
    env.push(("APPS__0__POLICY__MODE", "multi"));
    let (db, app) = spawn_on(backend, &env).await;
    if let Some(ns) = &db.redis_ns {
        // Keys of another kind under the registry's prefix (written by something else): passed over.
        let client = redis::Client::open(crate::helpers::REDIS_URL).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for key in [format!("{ns}:u:{APP}:evil"), format!("{ns}:u:junk")] {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("x")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    let mut clients = Vec::new();
    for user in ["i1", "o2"] {
        let c = app.connect().await;
        c.login(&other_params(user, "web")).await.unwrap();
        clients.push(c);
    }
    for (user, platform) in [
        ("i1", "web"),
        ("i1", "android"),
        ("i2", "web"),
        ("i3", "ipad"),
    ] {
        let c = app.connect().await;
        c.login(&params(user, platform)).await.unwrap();
        clients.push(c);
    }
    let (s, stats) = app.native(Method::GET, "/stats/online", None).await;
    assert_eq!(s, 200);
    assert_eq!(stats["total"], 4);
    assert_eq!(stats["by_platform"]["web"], 2);
    assert_eq!(stats["by_platform"]["linux"], 0);
    let (_, page) = app
        .native(Method::GET, "/instances?platform=web", None)
        .await;
    let users: Vec<&str> = page["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["i1", "i2"]);
    let (_, first) = app.native(Method::GET, "/instances?limit=3", None).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .native(
            Method::GET,
            &format!("/instances?limit=3&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(
        first["instances"].as_array().unwrap().len() + rest["instances"].as_array().unwrap().len(),
        4
    );
    assert!(rest["next_cursor"].is_null());
    let (s, e) = app
        .native(Method::GET, "/instances?platform=ios", None)
        .await;
    assert_eq!((s, e["code"].as_u64()), (400, Some(70402)));
    let other = app
        .http
        .get(app.url(&format!("/admin/v1/apps/{OTHER_APP}/stats/online")))
        .bearer_auth(OTHER_ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let other: Value = other.json().await.unwrap();
    assert_eq!(
        (&other["total"], &other["by_platform"]["web"]),
        (&json!(2), &json!(2))
    );
    // The scan a node's death costs lists this node's instances as usual.
    let mine = app.state.sessions.node_instances().await.unwrap();
    assert_eq!(mine.len(), if db.redis_ns.is_some() { 6 } else { 0 });
}

async fn daily_active_users_over_a_range(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    c.login(&params("d1", "web")).await.unwrap();
    c.login(&params("d2", "web")).await.unwrap();
    let today = imlogin::runtime::clock::unix_now();
    let (from, to) = (
        imlogin::runtime::clock::utc_date(today - 86400),
        imlogin::runtime::clock::utc_date(today),
    );
    crate::helpers::eventually("both logins are written", || async {
        let (_, d) = app
            .native(
                Method::GET,
                &format!("/stats/dau?from={from}&to={to}"),
                None,
            )
            .await;
        d["days"] == json!([{"date": from, "users": 0}, {"date": to, "users": 2}])
    })
    .await;
    for q in [
        "/stats/dau?from=2026-13-01&to=2026-12-01",
        "/stats/dau?from=2026-02-01&to=2026-01-01",
        "/stats/dau?from=2020-01-01&to=2026-01-01",
        "/stats/dau",
    ] {
        let (s, e) = app.native(Method::GET, q, None).await;
        assert_eq!((s, e["code"].as_u64()), (400, Some(70402)), "{q}");
    }
}

async fn policy_set_by_an_admin_applies_at_once_and_survives_a_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let settings = db.settings(&[]);
    let app = TestApp::spawn(settings.clone(), db.database().await).await;
    let (s, p) = app.native(Method::GET, "/policy", None).await;
    assert_eq!(
        (s, p),
        (
            200,
            json!({"mode": "dual", "web_instances": 1, "instances_per_platform": 1})
        )
    );
    let multi = json!({"mode": "multi", "web_instances": 2, "instances_per_platform": 2});
    let (s, p) = app
        .native(Method::PUT, "/policy", Some(multi.clone()))
        .await;
    assert_eq!((s, &p), (200, &multi));
    // Two web tabs fit now.
    let mut tab1 = app.connect().await;
    tab1.login(&params("pol", "web")).await.unwrap();
    app.connect()
        .await
        .login(&params("pol", "web"))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), tab1.next_event())
            .await
            .is_err()
    );
    for bad in [
        json!({"mode": "quad", "web_instances": 1, "instances_per_platform": 1}),
        json!({"mode": "multi", "web_instances": 11, "instances_per_platform": 1}),
        json!({"mode": "multi", "web_instances": 1, "instances_per_platform": 4}),
        json!({"mode": "multi"}),
    ] {
        let (s, e) = app.native(Method::PUT, "/policy", Some(bad.clone())).await;
        assert_eq!((s, e["code"].as_u64()), (400, Some(70402)), "{bad}");
    }
    drop(app);
    // Persisted: a restarted server on the same database applies it.
    let app = TestApp::spawn(settings, db.database().await).await;
    assert_eq!(app.native(Method::GET, "/policy", None).await.1, multi);
    let (s, p) = app.native(Method::DELETE, "/policy", None).await;
    assert_eq!(
        (s, p["mode"].as_str()),
        (200, Some("dual")),
        "back to the file's"
    );
}

/// `?user_id=…` with the UserID percent-encoded as a query value.
fn user_query(user_id: &str) -> String {
    serde_urlencoded::to_string([("user_id", user_id)]).unwrap()
}

/// UserIDs `.` and `..` cannot be carried in a path (clients resolve them as dot segments): every user route has
/// a sibling under `/user` that takes the UserID in the query string, with the same answers.
async fn every_user_route_takes_the_user_id_in_the_query_string_too(backend: Backend) {
    let (db, app) = spawn_on(backend, &[]).await;
    for id in [".", "..", "a/b?c#d%e&f=g+h"] {
        let q = user_query(id);
        let mut c = app.connect().await;
        let login = c.login(&params(id, "web")).await.unwrap();
        let (s, u) = app.native(Method::GET, &format!("/user?{q}"), None).await;
        assert_eq!((s, u["user_id"].as_str()), (200, Some(id)), "{id}: {u}");
        assert_eq!(u["instances"][0]["instance_id"], login.instance_id.as_str());
        let (s, k) = app
            .native(Method::POST, &format!("/user/kick?{q}"), Some(json!({})))
            .await;
        assert_eq!((s, k["kicked"].as_u64()), (200, Some(1)), "{id}");
        assert!(matches!(
            event(&mut c).await,
            ClientEvent::KickedOffline { code: 6208, .. }
        ));
        let (s, _) = app
            .native(Method::POST, &format!("/user/disable?{q}"), None)
            .await;
        assert_eq!(s, 204);
        let (_, u) = app.native(Method::GET, &format!("/user?{q}"), None).await;
        assert_eq!(u["disabled"], true, "{id}");
        let (s, _) = app
            .native(Method::POST, &format!("/user/enable?{q}"), None)
            .await;
        assert_eq!(s, 204);
        let (s, u) = app
            .native(
                Method::PUT,
                &format!("/user?{q}"),
                Some(json!({"nick": "Dot"})),
            )
            .await;
        assert_eq!(
            (s, u["nick"].as_str(), u["disabled"].as_bool()),
            (200, Some("Dot"), Some(false))
        );
        let (s, _) = app
            .native(Method::DELETE, &format!("/user?{q}"), None)
            .await;
        assert_eq!(s, 204);
        assert!(
            db.store().await.get(APP, id).await.unwrap().is_none(),
            "{id} deleted"
        );
        let (s, e) = app.native(Method::GET, &format!("/user?{q}"), None).await;
        assert_eq!((s, e["code"].as_u64()), (404, Some(70107)), "{id}");
    }
    // Percent-encoded dots are dots; a missing or invalid UserID is 400.
    let (s, u) = app
        .native(Method::PUT, "/user?user_id=%2E%2e", Some(json!({})))
        .await;
    assert_eq!((s, u["user_id"].as_str()), (200, Some("..")));
    for bad in [
        "/user",
        "/user?userid=x",
        "/user?user_id=",
        "/user?user_id=%40TLS%23x",
    ] {
        let (s, e) = app.native(Method::GET, bad, None).await;
        assert_eq!((s, e["code"].as_u64()), (400, Some(70402)), "{bad}: {e}");
    }
}

/// A NUL reaches PostgreSQL as an error, not an empty answer: a cursor, a dead letter's id or a profile field
/// holding one is refused as bad input (never 503 "unreachable"), on both stores alike.
async fn what_postgresql_cannot_store_is_refused_alike_on_both_stores(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    // "AA" is the cursor of a NUL.
    let (s, e) = app.native(Method::GET, "/users?cursor=AA", None).await;
    assert_eq!((s, e["code"].as_u64()), (400, Some(70402)), "{e}");
    for (method, path) in [
        (Method::POST, "/webhooks/dead_letters/%00/retry"),
        (Method::DELETE, "/webhooks/dead_letters/%00"),
        (Method::DELETE, "/webhooks/dead_letters/a%20b"),
    ] {
        assert_eq!(app.native(method, path, None).await.0, 404, "{path}");
    }
    for body in [json!({"nick": "a\0b"}), json!({"face_url": "\0"})] {
        let (s, e) = app.native(Method::PUT, "/users/nul", Some(body)).await;
        assert_eq!((s, e["code"].as_u64()), (400, Some(70402)), "{e}");
    }
    let v = app
        .v4(
            "im_open_login_svc/account_import",
            json!({"UserID": "nul", "Nick": "a\0b"}),
        )
        .await;
    assert_eq!(v["ErrorCode"], 70402, "{v}");
}
