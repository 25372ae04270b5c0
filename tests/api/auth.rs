//! Every check of PROTOCOL §2, in its order, through the login authenticator with a real store.

use std::net::{IpAddr, Ipv4Addr};

use imlogin::config::apps::SdkApps;
use imlogin::login::auth::Authenticator;
use imlogin::login::request::{Fields, LoginRequest};
use imlogin::model::Code;
use imlogin::runtime::clock::{unix_now, Clock};
use imlogin::usersig::tls;
use serde_json::{json, Value};

use crate::helpers::{accounts, sig, test_settings, Backend, Proxy, TestDb, APP, KEY};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

crate::both_configs!(
    first_login_registers_durably,
    every_code_in_order,
    revocation_is_by_whole_seconds,
    throttle_answers_70050_before_anything_else,
);

async fn authenticator(db: &TestDb, failures_per_minute: u32) -> Authenticator {
    let settings = test_settings(&db.url());
    Authenticator::new(
        SdkApps::from_config(&settings.apps),
        accounts(db.store().await),
        failures_per_minute,
        Clock::system(),
    )
}

fn req(v: Value) -> LoginRequest {
    LoginRequest::from_fields(Fields::parse(v.to_string().as_bytes()).unwrap())
}

fn login(user: &str, usersig: &str) -> LoginRequest {
    req(json!({"sdkappid": APP, "user_id": user, "user_sig": usersig, "platform": "android"}))
}

async fn first_login_registers_durably(backend: Backend) {
    let db = TestDb::new(backend).await;
    let auth = authenticator(&db, 100).await;
    let ok = auth
        .login(&login("newbie", &sig("newbie", None, 3600)), IP)
        .await
        .unwrap();
    assert!(ok.registered);
    assert_eq!(ok.app.sdkappid, APP);
    // Durable before success: a separate connection finds it.
    assert!(db.store().await.get(APP, "newbie").await.unwrap().is_some());
    let again = auth
        .login(&login("newbie", &sig("newbie", None, 3600)), IP)
        .await
        .unwrap();
    assert!(!again.registered);
}

async fn every_code_in_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let auth = authenticator(&db, 1000).await;
    let now = unix_now();
    let t = now as u64;
    let good = |u: &str| sig(u, None, 3600);
    let store = db.store().await;
    store.register(APP, "revoked", 1).await.unwrap();
    store.revoke(APP, "revoked", now + 10).await.unwrap();
    store.register(APP, "disabled", 1).await.unwrap();
    store.set_disabled(APP, "disabled", true).await.unwrap();
    // Each case fails two checks at once: the earlier one in §2's order must answer.
    let cases: Vec<(&str, LoginRequest, Code)> = vec![
        (
            "missing user_sig",
            req(json!({"sdkappid": APP, "user_id": "@TIM#x", "platform": "x"})),
            Code::InvalidParameters,
        ),
        (
            "sdkappid as string",
            req(
                json!({"sdkappid": "1400000000", "user_id": "u", "user_sig": "", "platform": "web"}),
            ),
            Code::InvalidParameters,
        ),
        (
            "sdkappid too large",
            req(
                json!({"sdkappid": 4294967296u64, "user_id": "u", "user_sig": "", "platform": "web"}),
            ),
            Code::InvalidParameters,
        ),
        (
            "user_id a number",
            req(json!({"sdkappid": APP, "user_id": 5, "user_sig": "", "platform": "web"})),
            Code::InvalidParameters,
        ),
        (
            "bad device_id",
            req(
                json!({"sdkappid": APP, "user_id": "u", "user_sig": "x", "platform": "web", "device_id": ""}),
            ),
            Code::InvalidParameters,
        ),
        (
            "bad user id before bad platform",
            req(json!({"sdkappid": APP, "user_id": "", "user_sig": "", "platform": "x"})),
            Code::InvalidIdentifier,
        ),
        (
            "33-byte user id",
            login(&"u".repeat(33), ""),
            Code::InvalidIdentifier,
        ),
        (
            "bad platform before empty ticket",
            req(json!({"sdkappid": APP, "user_id": "u", "user_sig": "", "platform": "iPhone"})),
            Code::InvalidParameters,
        ),
        (
            "empty ticket, unknown app",
            req(json!({"sdkappid": 1, "user_id": "u", "user_sig": "", "platform": "web"})),
            Code::UserSigEmpty,
        ),
        (
            "garbage ticket, unknown app",
            req(json!({"sdkappid": 1, "user_id": "u", "user_sig": "garbage!", "platform": "web"})),
            Code::UserSigCheckFailed,
        ),
        (
            "userbuf ticket",
            login(
                "u",
                &tls::generate_with_userbuf(APP, KEY, "u", 3600, t, b"abc"),
            ),
            Code::UserSigCheckFailed,
        ),
        (
            "JWT to an app without JWT keys",
            login(
                "u",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln",
            ),
            Code::UserSigCheckFailed,
        ),
        (
            "unknown app before mismatch",
            req(
                json!({"sdkappid": 1, "user_id": "u", "user_sig": good("other"), "platform": "web"}),
            ),
            Code::SdkAppIdNotFound,
        ),
        (
            "ticket of another app",
            login("u", &tls::generate(APP + 1, KEY, "other", 3600, t)),
            Code::UserSigMismatchSdkAppId,
        ),
        (
            "ticket of another user, wrong key",
            login("u", &tls::generate(APP, "wrong", "other", 3600, t)),
            Code::UserSigMismatchId,
        ),
        (
            "wrong key, expired",
            login("u", &tls::generate(APP, "wrong-key", "u", 1, t - 100)),
            Code::UserSigMismatchKey,
        ),
        (
            "expired, revoked",
            login("revoked", &sig("revoked", Some(t - 100), 1)),
            Code::UserSigExpired,
        ),
        (
            "revoked, disabled",
            login("revoked", &good("revoked")),
            Code::UserSigRevoked,
        ),
        (
            "disabled",
            login("disabled", &good("disabled")),
            Code::AccountDisabled,
        ),
    ];
    for (what, request, code) in cases {
        let got = auth.login(&request, IP).await.err().map(|f| f.code);
        assert_eq!(got, Some(code), "{what}");
    }
    // None of the failures registered anyone.
    assert_eq!(store.get(APP, "u").await.unwrap(), None);
    assert!(auth.login(&login("fine", &good("fine")), IP).await.is_ok());
}

async fn revocation_is_by_whole_seconds(backend: Backend) {
    let db = TestDb::new(backend).await;
    let auth = authenticator(&db, 1000).await;
    let now = unix_now();
    let t = now as u64;
    auth.accounts()
        .get_or_register(APP, "kicked", now)
        .await
        .unwrap();
    auth.accounts().revoke(APP, "kicked", now).await.unwrap();
    let same_second = auth
        .login(&login("kicked", &sig("kicked", Some(t), 60)), IP)
        .await;
    assert_eq!(
        same_second.err().map(|f| f.code),
        Some(Code::UserSigRevoked)
    );
    let next_second = auth
        .login(&login("kicked", &sig("kicked", Some(t + 1), 60)), IP)
        .await;
    assert!(
        next_second.is_ok(),
        "a ticket generated after the kick logs in"
    );
}

async fn throttle_answers_70050_before_anything_else(backend: Backend) {
    let db = TestDb::new(backend).await;
    let auth = authenticator(&db, 3).await;
    let now = unix_now();
    let bad = login(
        "victim",
        &tls::generate(APP, "wrong-key", "victim", 3600, now as u64),
    );
    for _ in 0..4 {
        assert_eq!(
            auth.login(&bad, IP).await.unwrap_err().code,
            Code::UserSigMismatchKey
        );
    }
    // Now even a valid ticket is refused for this user, from any IP, with the wait in the message.
    let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    let f = auth
        .login(&login("victim", &sig("victim", None, 3600)), other_ip)
        .await
        .unwrap_err();
    assert_eq!(f.code, Code::FrequencyLimit);
    assert!(
        f.message.contains("retry after") && f.message.contains("seconds"),
        "{}",
        f.message
    );
    // And the IP is throttled for other users; malformed requests get 70050 too (it is checked first).
    assert_eq!(
        auth.login(&login("someone", &sig("someone", None, 3600)), IP)
            .await
            .unwrap_err()
            .code,
        Code::FrequencyLimit
    );
    assert_eq!(
        auth.login(&req(json!({"garbage": true})), IP)
            .await
            .unwrap_err()
            .code,
        Code::FrequencyLimit
    );
    // Another user from another IP is unaffected.
    assert!(auth
        .login(&login("bystander", &sig("bystander", None, 3600)), other_ip,)
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_new_users_get_70169_cached_users_log_in_and_it_recovers() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(db.pg_addr.unwrap()).await;
    let settings = test_settings(&db.url());
    let auth = Authenticator::new(
        SdkApps::from_config(&settings.apps),
        accounts(db.store_via(Some(proxy.addr)).await),
        1000,
        Clock::system(),
    );
    auth.login(&login("known", &sig("known", None, 3600)), IP)
        .await
        .unwrap();

    proxy.cut();
    let f = auth
        .login(&login("stranger", &sig("stranger", None, 3600)), IP)
        .await
        .unwrap_err();
    assert_eq!(f.code, Code::InternalTimeout);
    assert!(
        auth.login(&login("known", &sig("known", None, 3600)), IP)
            .await
            .is_ok(),
        "cached user logs in"
    );
    assert_eq!(
        db.store().await.get(APP, "stranger").await.unwrap(),
        None,
        "no account without success"
    );

    proxy.restore();
    crate::helpers::eventually("logins recover once the database is back", || async {
        auth.login(&login("stranger", &sig("stranger", None, 3600)), IP)
            .await
            .is_ok()
    })
    .await;
    assert!(db
        .store()
        .await
        .get(APP, "stranger")
        .await
        .unwrap()
        .is_some());
}
