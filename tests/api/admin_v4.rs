//! PROTOCOL §7, the Tencent-compatible REST API: authentication by the query string, every command with its
//! success and its documented errors, on both stores.

use imlogin::client::ClientEvent;
use imlogin::usersig::tls;
use serde_json::{json, Value};

use crate::helpers::{
    event, params, sig, spawn_on, Backend, APP, OTHER_APP, OTHER_APP_ENV, OTHER_KEY,
};

crate::both_configs!(
    the_query_string_is_checked_in_order,
    account_import_is_idempotent_and_takes_the_legacy_field,
    multiaccount_import_takes_both_forms,
    account_delete_reports_each_and_kicks,
    account_check_reports_each,
    kick_revokes_every_ticket_issued_so_far,
    query_online_status_reports_online_pushonline_offline,
    frequency_limits_answer_60007,
    bad_tickets_from_one_address_never_refuse_a_valid_ticket,
    clients_written_for_the_cloud_send_get_and_querystate,
);

fn code(v: &Value) -> u64 {
    v["ErrorCode"].as_u64().unwrap()
}

fn assert_ok(v: &Value) {
    assert_eq!(
        (v["ActionStatus"].as_str(), code(v), v["ErrorInfo"].as_str()),
        (Some("OK"), 0, Some("")),
        "{v}"
    );
    assert!(v["RequestId"].as_str().is_some_and(|r| !r.is_empty()));
}

fn assert_fail(v: &Value, expected: u64) {
    assert_eq!(
        (v["ActionStatus"].as_str(), code(v)),
        (Some("FAIL"), expected),
        "{v}"
    );
    assert!(v["ErrorInfo"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn the_query_string_is_checked_in_order(backend: Backend) {
    let env: Vec<(&str, &str)> = OTHER_APP_ENV.to_vec();
    let (_db, app) = spawn_on(backend, &env).await;
    let good = sig("administrator", None, 3600);
    let now = imlogin::runtime::clock::unix_now() as u64;
    let other_apps_admin = tls::generate(OTHER_APP, OTHER_KEY, "administrator", 3600, now);
    let cases: Vec<(String, u64)> = vec![
        ("identifier=administrator&usersig=x&random=1&contenttype=json".into(), 60012),
        (format!("sdkappid=abc&identifier=administrator&usersig={good}&random=1&contenttype=json"), 60006),
        (format!("sdkappid=7&identifier=administrator&usersig={good}&random=1&contenttype=json"), 60006),
        (format!("sdkappid={APP}&usersig={good}&random=1&contenttype=json"), 60004),
        (format!("sdkappid={APP}&identifier=administrator&random=1&contenttype=json"), 60005),
        (format!("sdkappid={APP}&identifier=administrator&usersig={good}&random=1"), 60002),
        (format!("sdkappid={APP}&identifier=administrator&usersig={good}&random=-1&contenttype=json"), 60002),
        (format!("sdkappid={APP}&identifier=alice&usersig={}&random=1&contenttype=json", sig("alice", None, 3600)), 60010),
        (format!("sdkappid={APP}&identifier=administrator&usersig=garbage&random=1&contenttype=json"), 70003),
        (format!("sdkappid={APP}&identifier=administrator&usersig={}&random=1&contenttype=json",
            tls::generate(APP, "wrong-key", "administrator", 3600, now)), 70009),
        (format!("sdkappid={APP}&identifier=administrator&usersig={}&random=1&contenttype=json",
            sig("administrator", Some(now - 100), 10)), 70001),
        // Another app's admin ticket names that app: it cannot act on this one.
        (format!("sdkappid={APP}&identifier=administrator&usersig={other_apps_admin}&random=1&contenttype=json"), 70014),
    ];
    for (query, expected) in cases {
        let v = app
            .v4_with(
                "im_open_login_svc/account_check",
                &query,
                r#"{"CheckItem":[{"UserID":"a"}]}"#,
            )
            .await;
        assert_fail(&v, expected);
    }
    let q = app.v4_query();
    assert_fail(
        &app.v4_with("im_open_login_svc/unknown_cmd", &q, "{}").await,
        60009,
    );
    assert_fail(
        &app.v4_with("nosuchsvc/account_check", &q, "{}").await,
        60009,
    );
    assert_fail(
        &app.v4_with("im_open_login_svc/account_check", &q, "not json")
            .await,
        60003,
    );
    assert_fail(
        &app.v4_with("im_open_login_svc/account_check", &q, "[1]")
            .await,
        60003,
    );
    assert_fail(
        &app.v4_with("openim/query_online_status", &q, "not json")
            .await,
        90001,
    );
    // The other app's admin works on its own app only.
    let other_q = format!(
        "sdkappid={OTHER_APP}&identifier=administrator&usersig={other_apps_admin}&random=1&contenttype=json"
    );
    assert_ok(
        &app.v4_with(
            "im_open_login_svc/account_import",
            &other_q,
            r#"{"UserID":"theirs"}"#,
        )
        .await,
    );
    let mine = app
        .v4(
            "im_open_login_svc/account_check",
            json!({"CheckItem": [{"UserID": "theirs"}]}),
        )
        .await;
    assert_eq!(
        mine["ResultItem"][0]["AccountStatus"], "NotImported",
        "apps are isolated"
    );
}

async fn account_import_is_idempotent_and_takes_the_legacy_field(backend: Backend) {
    let (db, app) = spawn_on(backend, &[]).await;
    let path = "im_open_login_svc/account_import";
    assert_ok(
        &app.v4(
            path,
            json!({"UserID": "imported", "Nick": "Imp", "FaceUrl": "http://x/y.png"}),
        )
        .await,
    );
    assert_ok(&app.v4(path, json!({"UserID": "imported"})).await);
    assert_ok(&app.v4(path, json!({"Identifier": "legacy"})).await);
    let a = db
        .store()
        .await
        .get(APP, "imported")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.nick.as_str(), a.face_url.as_str()),
        ("Imp", "http://x/y.png"),
        "kept"
    );
    assert!(db.store().await.get(APP, "legacy").await.unwrap().is_some());
    for bad in [
        json!({}),
        json!({"UserID": 5}),
        json!({"UserID": "@TIM#x"}),
        json!({"UserID": "n", "Nick": "x".repeat(501)}),
    ] {
        assert_fail(&app.v4(path, bad).await, 70402);
    }
    // An imported account logs in as any other.
    app.connect()
        .await
        .login(&params("imported", "web"))
        .await
        .unwrap();
}

async fn multiaccount_import_takes_both_forms(backend: Backend) {
    let (db, app) = spawn_on(backend, &[]).await;
    let path = "im_open_login_svc/multiaccount_import";
    let v = app
        .v4(path, json!({"Accounts": ["m1", "m2", "@TLS#bad"]}))
        .await;
    assert_ok(&v);
    assert_eq!(v["FailAccounts"], json!(["@TLS#bad"]));
    let v = app
        .v4(
            path,
            json!({"AccountList": [{"UserID": "m3", "Nick": "Three"}, {"UserID": "m1"}]}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(v["FailAccounts"], json!([]));
    let store = db.store().await;
    assert_eq!(store.get(APP, "m3").await.unwrap().unwrap().nick, "Three");
    assert!(store.get(APP, "m2").await.unwrap().is_some());
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    assert_fail(&app.v4(path, json!({"Accounts": many})).await, 70206);
    assert_fail(&app.v4(path, json!({"Accounts": []})).await, 70206);
    assert_fail(&app.v4(path, json!({"Accounts": [1, 2]})).await, 70402);
    assert_fail(
        &app.v4(path, json!({"AccountList": [{"Nick": "no id"}]}))
            .await,
        70402,
    );
}

async fn account_delete_reports_each_and_kicks(backend: Backend) {
    let (db, app) = spawn_on(backend, &[]).await;
    let mut c = app.connect().await;
    c.login(&params("doomed", "android")).await.unwrap();
    let v = app
        .v4(
            "im_open_login_svc/account_delete",
            json!({"DeleteItem": [{"UserID": "doomed"}, {"UserID": "never"}]}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(
        v["ResultItem"],
        json!([
            {"ResultCode": 0, "ResultInfo": "", "UserID": "doomed"},
            {"ResultCode": 70107, "ResultInfo": "Err_TLS_PT_Open_Login_Account_Not_Exist", "UserID": "never"}
        ])
    );
    assert_eq!(
        event(&mut c).await,
        ClientEvent::KickedOffline {
            code: 70107,
            reason: "account_deleted".into(),
            by_platform: None
        }
    );
    assert!(db.store().await.get(APP, "doomed").await.unwrap().is_none());
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"UserID": format!("u{i}")}))
        .collect();
    assert_fail(
        &app.v4(
            "im_open_login_svc/account_delete",
            json!({"DeleteItem": many}),
        )
        .await,
        70206,
    );
    assert_fail(
        &app.v4(
            "im_open_login_svc/account_delete",
            json!({"DeleteItem": [{}]}),
        )
        .await,
        70402,
    );
}

async fn account_check_reports_each(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    app.v4(
        "im_open_login_svc/account_import",
        json!({"UserID": "here"}),
    )
    .await;
    let v = app
        .v4(
            "im_open_login_svc/account_check",
            json!({"CheckItem": [{"UserID": "here"}, {"UserID": "gone"}]}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(
        v["ResultItem"],
        json!([
            {"UserID": "here", "ResultCode": 0, "ResultInfo": "", "AccountStatus": "Imported"},
            {"UserID": "gone", "ResultCode": 0, "ResultInfo": "", "AccountStatus": "NotImported"}
        ])
    );
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"UserID": format!("u{i}")}))
        .collect();
    assert_fail(
        &app.v4(
            "im_open_login_svc/account_check",
            json!({"CheckItem": many}),
        )
        .await,
        70206,
    );
    assert_fail(
        &app.v4("im_open_login_svc/account_check", json!({"CheckItem": "x"}))
            .await,
        70402,
    );
}

async fn kick_revokes_every_ticket_issued_so_far(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut phone = app.connect().await;
    let mut web = app.connect().await;
    let p = params("kicked", "android");
    phone.login(&p).await.unwrap();
    web.login(&params("kicked", "web")).await.unwrap();
    assert_ok(
        &app.v4("im_open_login_svc/kick", json!({"UserID": "kicked"}))
            .await,
    );
    for c in [&mut phone, &mut web] {
        assert_eq!(
            event(c).await,
            ClientEvent::KickedOffline {
                code: 70052,
                reason: "admin_kick".into(),
                by_platform: None
            }
        );
        assert!(matches!(
            event(c).await,
            ClientEvent::Closed {
                code: Some(4001),
                ..
            }
        ));
    }
    // The old ticket is revoked; one issued after the kick's second logs in.
    let again = app.connect().await;
    assert_eq!(again.login(&p).await.unwrap_err().code(), Some(70052));
    let mut fresh = params("kicked", "android");
    fresh.user_sig = sig(
        "kicked",
        Some(imlogin::runtime::clock::unix_now() as u64 + 1),
        3600,
    );
    again.login(&fresh).await.unwrap();
    assert_ok(
        &app.v4("im_open_login_svc/kick", json!({"Identifier": "kicked"}))
            .await,
    );
    assert_fail(
        &app.v4("im_open_login_svc/kick", json!({"UserID": "nobody"}))
            .await,
        70107,
    );
    assert_fail(&app.v4("im_open_login_svc/kick", json!({})).await, 70402);
}

async fn query_online_status_reports_online_pushonline_offline(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("APPS__0__POLICY__MODE", "multi")]).await;
    let on = app.connect().await;
    let on_login = on.login(&params("on", "iphone")).await.unwrap();
    let dropped = app.connect().await;
    dropped.login(&params("dropped", "android")).await.unwrap();
    dropped.close();
    drop(dropped);
    app.v4("im_open_login_svc/account_import", json!({"UserID": "off"}))
        .await;
    crate::helpers::eventually("the dropped instance is disconnected", || async {
        let i = app
            .state
            .sessions
            .user_instances(APP, "dropped")
            .await
            .unwrap();
        i.len() == 1 && !i[0].is_online()
    })
    .await;
    let path = "openim/query_online_status";
    let v = app
        .v4(
            path,
            json!({"To_Account": ["on", "dropped", "off", "stranger", "@TLS#x", "x".repeat(33)]}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(
        v["QueryResult"],
        json!([
            {"To_Account": "on", "Status": "Online"},
            {"To_Account": "dropped", "Status": "PushOnline"},
            {"To_Account": "off", "Status": "Offline"}
        ])
    );
    assert_eq!(
        v["ErrorList"],
        json!([
            {"To_Account": "stranger", "ErrorCode": 70107},
            // Not UserIDs at all (PROTOCOL §1): 70402, each in its own entry.
            {"To_Account": "@TLS#x", "ErrorCode": 70402},
            {"To_Account": "x".repeat(33), "ErrorCode": 70402}
        ])
    );
    let v = app
        .v4(
            path,
            json!({"To_Account": ["on"], "IsNeedDetail": 1, "IsReturnInstid": 1}),
        )
        .await;
    assert_eq!(
        v["QueryResult"][0]["Detail"],
        json!([{"Platform": "iPhone", "Status": "Online", "InstID": on_login.instance_id}])
    );
    let v = app
        .v4(path, json!({"To_Account": ["dropped"], "IsNeedDetail": 1}))
        .await;
    assert_eq!(
        v["QueryResult"][0]["Detail"],
        json!([{"Platform": "Android", "Status": "PushOnline"}])
    );
    let many: Vec<String> = (0..501).map(|i| format!("u{i}")).collect();
    assert_fail(&app.v4(path, json!({"To_Account": many})).await, 90011);
    assert_fail(&app.v4(path, json!({"To_Account": []})).await, 90001);
    assert_fail(&app.v4(path, json!({})).await, 90001);
    assert_fail(&app.v4(path, json!({"To_Account": [1]})).await, 90003);
    assert_fail(
        &app.v4(path, json!({"To_Account": ["on"], "IsNeedDetail": 2}))
            .await,
        90001,
    );
}

async fn frequency_limits_answer_60007(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("APPS__0__REST_LIMITS__ACCOUNT_CHECK", "2")]).await;
    let body = json!({"CheckItem": [{"UserID": "a"}]});
    let path = "im_open_login_svc/account_check";
    let results = futures_util::future::join_all((0..4).map(|_| app.v4(path, body.clone()))).await;
    let limited = results.iter().filter(|v| code(v) == 60007).count();
    assert!(limited >= 2, "at most 2 calls a second: {results:?}");
    // Another command keeps its own budget.
    assert_ok(
        &app.v4("openim/query_online_status", json!({"To_Account": ["a"]}))
            .await,
    );
}

/// An HTTP client whose requests come from `from` (a loopback address).
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap()
}

/// `account_check` by the demo app's admin with `usersig`, sent from `from`.
async fn check_as_admin(app: &crate::helpers::TestApp, from: [u8; 4], usersig: &str) -> Value {
    let http = client_from(from);
    let query = format!(
        "sdkappid={APP}&identifier=administrator&usersig={usersig}&random=1&contenttype=json"
    );
    http.post(app.url(&format!("/v4/im_open_login_svc/account_check?{query}")))
        .body(r#"{"CheckItem":[{"UserID":"a"}]}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// PROTOCOL §7: failed admin authentication is throttled per source address, and a valid ticket is never
/// refused for failures someone else caused (loopback has all of 127/8: each address is another client).
async fn bad_tickets_from_one_address_never_refuse_a_valid_ticket(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("LIMITS__LOGIN_FAILURES_PER_MINUTE", "3")]).await;
    let now = imlogin::runtime::clock::unix_now() as u64;
    let forged = tls::generate(APP, "a-guessed-key", "administrator", 3600, now);
    const STRANGER: [u8; 4] = [127, 0, 0, 2];
    const ADMIN: [u8; 4] = [127, 0, 0, 1];
    for _ in 0..4 {
        assert_fail(&check_as_admin(&app, STRANGER, &forged).await, 70009);
    }
    // The stranger's address is throttled, whatever ticket it forges next.
    assert_fail(&check_as_admin(&app, STRANGER, &forged).await, 70050);
    assert_fail(&check_as_admin(&app, STRANGER, "garbage").await, 70050);
    // The admin, elsewhere, is not: a valid ticket works, a bad one gets its own code.
    let good = sig("administrator", None, 3600);
    assert_ok(&check_as_admin(&app, ADMIN, &good).await);
    assert_fail(&check_as_admin(&app, ADMIN, &forged).await, 70009);
    // Nor is a valid ticket refused from the throttled address (one address may be many callers: a NAT, or a
    // proxy not listed in `server.trusted_proxies`).
    assert_ok(&check_as_admin(&app, STRANGER, &good).await);
    // Failed admin calls are not failed logins: a user at the stranger's address still logs in.
    let login: Value = client_from(STRANGER)
        .post(app.url("/v1/login"))
        .json(&params("a-user", "web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["code"], 0, "{login}");
}

/// A REST client published for the cloud (on PyPI) sends `account_check` as GET with a JSON body, and asks the
/// online status as `openim/querystate`, the international edition's name: every login-side command answers
/// alike by either method, and `querystate` as `query_online_status` (plus the `State` older clients read).
async fn clients_written_for_the_cloud_send_get_and_querystate(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    c.login(&params("present", "web")).await.unwrap();
    let get = |path: &str, body: Value| {
        let url = app.url(&format!("/v4/{path}?{}", app.v4_query()));
        let request = app.http.get(url).body(body.to_string());
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200, "the REST API always answers 200");
            r.json::<Value>().await.unwrap()
        }
    };
    let check = json!({"CheckItem": [{"UserID": "present"}, {"UserID": "absent"}]});
    let v = get("im_open_login_svc/account_check", check.clone()).await;
    assert_ok(&v);
    assert_eq!(v["ResultItem"][0]["AccountStatus"], "Imported");
    assert_eq!(v["ResultItem"][1]["AccountStatus"], "NotImported");
    assert_eq!(
        v["ResultItem"],
        app.v4("im_open_login_svc/account_check", check).await["ResultItem"]
    );
    for (path, body) in [
        (
            "im_open_login_svc/account_import",
            json!({"UserID": "by-get"}),
        ),
        (
            "im_open_login_svc/multiaccount_import",
            json!({"Accounts": ["by-get-2"]}),
        ),
        (
            "im_open_login_svc/account_delete",
            json!({"DeleteItem": [{"UserID": "by-get-2"}]}),
        ),
        ("im_open_login_svc/kick", json!({"UserID": "by-get"})),
        (
            "openim/query_online_status",
            json!({"To_Account": ["present"]}),
        ),
    ] {
        assert_ok(&get(path, body).await);
    }
    for v in [
        get(
            "openim/querystate",
            json!({"To_Account": ["present", "by-get", "nobody"]}),
        )
        .await,
        app.v4(
            "openim/querystate",
            json!({"To_Account": ["present", "by-get", "nobody"]}),
        )
        .await,
    ] {
        assert_ok(&v);
        assert_eq!(
            v["QueryResult"],
            json!([
                {"To_Account": "present", "Status": "Online", "State": "Online"},
                {"To_Account": "by-get", "Status": "Offline", "State": "Offline"}
            ])
        );
        assert_eq!(
            v["ErrorList"],
            json!([{"To_Account": "nobody", "ErrorCode": 70107}])
        );
    }
    let detail = app
        .v4(
            "openim/querystate",
            json!({"To_Account": ["present"], "IsNeedDetail": 1}),
        )
        .await;
    assert_eq!(
        detail["QueryResult"][0]["Detail"],
        json!([{"Platform": "Web", "Status": "Online"}])
    );
    assert_fail(&app.v4("openim/querystate", json!({})).await, 90001);
    // Any other method is not the REST API's: HEAD neither (axum would run the GET handler for it, unseen).
    let import = format!("/v4/im_open_login_svc/account_import?{}", app.v4_query());
    for method in [reqwest::Method::PUT, reqwest::Method::HEAD] {
        let r = app
            .http
            .request(method.clone(), app.url(&import))
            .body(json!({"UserID": "by-head"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
    }
    let check = json!({"CheckItem": [{"UserID": "by-head"}]});
    let v = app.v4("im_open_login_svc/account_check", check).await;
    assert_eq!(v["ResultItem"][0]["AccountStatus"], "NotImported");
    // A body over the limit is answered in the envelope, by either method.
    let huge = format!(r#"{{"UserID": "x", "Nick": "{}"}}"#, "n".repeat(300 * 1024));
    for v in [
        app.v4_with("im_open_login_svc/account_import", &app.v4_query(), &huge)
            .await,
        get(
            "im_open_login_svc/account_import",
            Value::String(huge.clone()),
        )
        .await,
    ] {
        assert_fail(&v, 60003);
    }
}
