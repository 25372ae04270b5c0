//! The Web SDK gateway (`/tim/binfo`, `/tim/info`) frame by frame, with a client that speaks the SDK's frames
//! (`client`; what every SDK version tested reads: `all_sdks`); and the real SDKs in Chromium (`tests/websdk`,
//! run from here so the README's one test command runs them).

mod all_sdks;
mod client;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use imlogin::client::ClientEvent;
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{event, params, sig, spawn_on, Backend};
use client::{instances, kick_type, Sdk};

crate::both_configs!(
    a_login_answers_what_the_sdk_needs_and_is_an_instance_like_any_other,
    every_command_gets_an_answer,
    login_failures_come_in_the_sdk_shape,
    kicks_reach_the_sdk_with_their_kick_type,
    an_a2key_resumes_and_a_lost_one_asks_for_a_new_login,
    an_expired_usersig_is_told_on_the_next_request,
    oversize_frames_close_1009_and_info_speaks_text,
);

async fn a_login_answers_what_the_sdk_needs_and_is_an_instance_like_any_other(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut sdk = Sdk::open(&app).await;
    let before = imlogin::runtime::clock::unix_now();
    let ok = sdk.login("sdk-user", &sig("sdk-user", None, 3600)).await;
    assert_eq!(ok["ActionStatus"], "OK", "{ok}");
    assert_eq!(ok["ErrorCode"], 0);
    assert!(!ok["A2Key"].as_str().unwrap().is_empty());
    let tiny = ok["TinyId"].as_str().unwrap().to_owned();
    assert!(tiny.parse::<u64>().unwrap() > 0, "a decimal TinyId");
    assert!(ok["InstId"].as_u64().unwrap() > 0, "a non-zero InstId");
    assert!(ok["HelloInterval"].as_u64().unwrap() > 0);
    assert!(ok["TimeStamp"].as_i64().unwrap() >= before);
    // Auto-registered, and listed by the admin API as a web instance, online.
    let (status, _) = app.native(Method::GET, "/users/sdk-user", None).await;
    assert_eq!(status, 200);
    let inst = instances(&app, "sdk-user").await;
    assert_eq!(inst.len(), 1);
    assert_eq!(inst[0]["platform"], "web");
    assert_eq!(inst[0]["state"], "online");
    // The TinyId is the user's: the same on another login, another user's differs.
    let mut other = Sdk::open(&app).await;
    let again = other.login("sdk-user", &sig("sdk-user", None, 3600)).await;
    assert_eq!(again["TinyId"], tiny);
    assert_ne!(again["InstId"], ok["InstId"]);
    assert_eq!(
        kick_type(&sdk.push().await),
        1,
        "web 1: the first is kicked"
    );
    let third = other
        .login("sdk-user-2", &sig("sdk-user-2", None, 3600))
        .await;
    assert_ne!(third["TinyId"], tiny);
    // Switching users on one connection logs the first out.
    assert!(instances(&app, "sdk-user").await.is_empty());
    // Daily actives count SDK logins (written a moment after the login: PROTOCOL §8 gives it a second).
    let day = chrono_today();
    let path = format!("/stats/dau?from={day}&to={day}");
    crate::helpers::eventually("both SDK users count as active today", || async {
        app.native(Method::GET, &path, None).await.1["days"][0]["users"] == 2
    })
    .await;
}

fn chrono_today() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn every_command_gets_an_answer(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut sdk = Sdk::open(&app).await;
    // Before login: the heartbeat is answered; wshello says there is no session here, with a code no SDK takes
    // for an expiry or a kick (an SDK sends again what was in flight on a new socket, before it resumes).
    let alive = sdk.call("heartbeat.alive", json!({}), json!({})).await;
    assert_eq!(alive["ErrorCode"], 0);
    let hello = sdk
        .call("im_open_status.wshello", json!({}), json!({}))
        .await;
    assert_eq!(hello["ErrorCode"], 6014, "{hello}");
    sdk.login("cmds", &sig("cmds", None, 3600)).await;
    for servcmd in [
        "heartbeat.alive",
        "im_open_status.wshello",
        "openim.ws_msg_push_ack",
    ] {
        let r = sdk.call(servcmd, json!({}), json!({})).await;
        assert_eq!(r["ActionStatus"], "OK", "{servcmd}: {r}");
    }
    let page = sdk
        .call("recentcontact.page_get", json!({}), json!({}))
        .await;
    assert_eq!(page["CompleteFlag"], 1);
    assert_eq!(page["SessionItem"], json!([]));
    let bits = sdk
        .call(
            "im_sdk_config_mgr.fetch_imsdk_purchase_bitsv2",
            json!({}),
            json!({}),
        )
        .await;
    assert_eq!(bits["ErrorCode"], 0);
    assert_eq!(bits["int32_error_code"], 0);
    for servcmd in [
        "profile.portrait_get_all",
        "sns.black_list_get",
        "openim.sendmsg",
        "x",
    ] {
        let r = sdk.call(servcmd, json!({}), json!({})).await;
        assert_eq!(r["ActionStatus"], "FAIL");
        assert_eq!(r["ErrorCode"], 60020, "{servcmd}: {r}");
        assert!(r["ErrorInfo"].as_str().unwrap().contains(servcmd));
    }
    // Frames that are no request get a frame the SDK can read (with a servcmd), and the connection goes on.
    for bad in [
        &b"not json"[..],
        br#"[1]"#,
        br#"{"body":{}}"#,
        br#"{"head":{"seq":5}}"#,
        br#"{"head":{"servcmd":7}}"#,
        &[0xff, 0xfe],
    ] {
        sdk.send_raw(bad.to_vec()).await;
        let v = sdk.next().await.unwrap();
        assert_eq!(v["head"]["servcmd"], "imlogin.bad_frame");
        assert_eq!(v["body"]["ErrorCode"], 6017);
    }
    // A text frame on /binfo is read all the same (answered in binary).
    sdk.ws
        .send(Message::Text(
            r#"{"head":{"servcmd":"heartbeat.alive","seq":1}}"#.into(),
        ))
        .await
        .unwrap();
    let v = sdk.next().await.unwrap();
    assert_eq!(v["head"]["seq"], 1);
    // Logout answers OK, removes the instance, and the socket stays open.
    let out = sdk
        .call(
            "im_open_status.wslogout",
            json!({}),
            json!({"wslogout_type": 0}),
        )
        .await;
    assert_eq!(out["ActionStatus"], "OK");
    assert!(instances(&app, "cmds").await.is_empty());
    let alive = sdk.call("heartbeat.alive", json!({}), json!({})).await;
    assert_eq!(alive["ErrorCode"], 0);
}

async fn login_failures_come_in_the_sdk_shape(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut sdk = Sdk::open(&app).await;
    let now = imlogin::runtime::clock::unix_now() as u64;
    let cases = [
        (
            json!({"identifier":"u1","usersig": sig("u1", Some(now - 7200), 60)}),
            70001,
        ),
        (json!({"identifier":"u1","usersig": "garbage"}), 70003),
        (json!({"identifier":"u1","usersig": ""}), 70002),
        (
            json!({"identifier":"u2","usersig": sig("u1", None, 60)}),
            70013,
        ),
        (
            json!({"identifier":"@TIM#admin","usersig": sig("u1", None, 60)}),
            7003,
        ),
        (json!({"identifier":"u1"}), 6017),
        (
            json!({"identifier":"u1","usersig": sig("u1", None, 60), "sdkappid": 42}),
            70020,
        ),
        (
            json!({"identifier":"u1","usersig": sig("u1", None, 60), "sdkappid": "x"}),
            6017,
        ),
    ];
    for (head, code) in cases {
        let r = sdk
            .call("im_open_status.wslogin", head.clone(), json!({}))
            .await;
        assert_eq!(r["ActionStatus"], "FAIL", "{head}");
        assert_eq!(r["ErrorCode"], code, "{head}: {r}");
        assert!(!r["ErrorInfo"].as_str().unwrap().is_empty());
    }
    // Nothing was registered by the failures, and a good login still works on the same connection.
    let (status, _) = app.native(Method::GET, "/users/u1", None).await;
    assert_eq!(status, 404);
    let ok = sdk.login("u1", &sig("u1", None, 60)).await;
    assert_eq!(ok["ActionStatus"], "OK", "{ok}");
}

async fn kicks_reach_the_sdk_with_their_kick_type(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    // Another web login (here through /v1/ws) → 1.
    let mut sdk = Sdk::open(&app).await;
    sdk.login("kt", &sig("kt", None, 3600)).await;
    let web = app.connect().await;
    web.login(&params("kt", "web")).await.unwrap();
    assert_eq!(kick_type(&sdk.push().await), 1);
    // The SDK answers a kick with wslogout type 1; it is answered, and the socket is still open.
    let out = sdk
        .call(
            "im_open_status.wslogout",
            json!({}),
            json!({"wslogout_type": 1}),
        )
        .await;
    assert_eq!(out["ActionStatus"], "OK");
    // An SDK login kicks the /v1/ws web instance the same way as a native one would.
    let mut web = web;
    sdk.login("kt", &sig("kt", None, 3600)).await;
    match event(&mut web).await {
        ClientEvent::KickedOffline { reason, .. } => assert_eq!(reason, "multi_terminal"),
        e => panic!("{e:?}"),
    }
    // Another platform under `single` → 2.
    let (s, _) = app
        .native(
            Method::PUT,
            "/policy",
            Some(json!({"mode":"single","web_instances":1,"instances_per_platform":1})),
        )
        .await;
    assert_eq!(s, 200);
    let android = app.connect().await;
    android.login(&params("kt", "android")).await.unwrap();
    assert_eq!(kick_type(&sdk.push().await), 2);
    assert_eq!(instances(&app, "kt").await.len(), 1, "removed at once");
    // The server (an admin kick, disable, delete) → 3.
    for (i, action) in ["kick", "disable", "delete"].into_iter().enumerate() {
        let user = format!("kt-{i}");
        let mut sdk = Sdk::open(&app).await;
        sdk.login(&user, &sig(&user, None, 3600)).await;
        let (status, body) = match action {
            "kick" => {
                app.native(
                    Method::POST,
                    &format!("/users/{user}/kick"),
                    Some(json!({})),
                )
                .await
            }
            "disable" => {
                app.native(Method::POST, &format!("/users/{user}/disable"), None)
                    .await
            }
            _ => {
                app.native(Method::DELETE, &format!("/users/{user}"), None)
                    .await
            }
        };
        assert!(status == 200 || status == 204, "{action}: {status} {body}");
        assert_eq!(kick_type(&sdk.push().await), 3, "{action}");
        assert!(instances(&app, &user).await.is_empty(), "{action}");
    }
}

async fn an_a2key_resumes_and_a_lost_one_asks_for_a_new_login(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut sdk = Sdk::open(&app).await;
    let ok = sdk.login("res", &sig("res", None, 3600)).await;
    let (a2, tiny) = (
        ok["A2Key"].as_str().unwrap().to_owned(),
        ok["TinyId"].as_str().unwrap().to_owned(),
    );
    let id = instances(&app, "res").await[0]["instance_id"].clone();
    drop(sdk);
    crate::helpers::eventually("the instance to be disconnected", || async {
        instances(&app, "res").await[0]["state"] == "disconnected"
    })
    .await;
    // Back on a new socket with the A2Key: the same instance, online again.
    let mut back = Sdk::open(&app).await;
    let r = back.resume(&a2, &tiny).await;
    assert_eq!(r["ActionStatus"], "OK", "{r}");
    assert_eq!(r["InstId"], ok["InstId"]);
    assert_eq!(r["A2Key"], a2.as_str());
    let now = instances(&app, "res").await;
    assert_eq!(now.len(), 1);
    assert_eq!(
        (&now[0]["instance_id"], &now[0]["state"]),
        (&id, &json!("online"))
    );
    // Again on the connection that holds it: answered, nothing changes.
    let r = back.resume(&a2, &tiny).await;
    assert_eq!(r["ActionStatus"], "OK");
    // A forged or unknown A2Key: 70001, which the SDK turns into a new login by the app.
    let mut other = Sdk::open(&app).await;
    for bad in ["forged", &format!("{a2}x")] {
        let r = other.resume(bad, &tiny).await;
        assert_eq!(r["ErrorCode"], 70001, "{r}");
    }
    // (Kicked while away: websdk::all_sdks.) Logged out: gone, 70001.
    let mut sdk = Sdk::open(&app).await;
    let ok = sdk.login("res2", &sig("res2", None, 3600)).await;
    sdk.call("im_open_status.wslogout", json!({}), json!({}))
        .await;
    let r = other
        .resume(
            ok["A2Key"].as_str().unwrap(),
            ok["TinyId"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r["ErrorCode"], 70001);
}

async fn an_expired_usersig_is_told_on_the_next_request(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut sdk = Sdk::open(&app).await;
    let ok = sdk.login("exp", &sig("exp", None, 1)).await;
    assert_eq!(ok["ActionStatus"], "OK", "{ok}");
    // The server removes the instance once the ticket is past; the SDK's next request but the keepalive hears
    // 70001, once (lite-chat fires userSigExpired at each 70001, and reconnects on a failed keepalive).
    crate::helpers::eventually("the instance to expire", || async {
        instances(&app, "exp").await.is_empty()
    })
    .await;
    let alive = sdk.call("heartbeat.alive", json!({}), json!({})).await;
    assert_eq!(alive["ErrorCode"], 0, "{alive}");
    let hello = sdk
        .call("im_open_status.wshello", json!({}), json!({}))
        .await;
    assert_eq!(hello["ErrorCode"], 70001, "{hello}");
    for servcmd in ["im_open_status.wshello", "heartbeat.alive"] {
        let r = sdk.call(servcmd, json!({}), json!({})).await;
        assert_ne!(r["ErrorCode"], 70001, "told once: {servcmd}: {r}");
    }
    // A new login on the same socket works again.
    let ok = sdk.login("exp", &sig("exp", None, 3600)).await;
    assert_eq!(ok["ActionStatus"], "OK");
    let r = sdk.call("heartbeat.alive", json!({}), json!({})).await;
    assert_eq!(r["ErrorCode"], 0);
}

async fn oversize_frames_close_1009_and_info_speaks_text(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut info = Sdk::open_at(&app, "info").await;
    let ok = info.login("txt", &sig("txt", None, 3600)).await;
    assert_eq!(ok["ActionStatus"], "OK");
    let mut sdk = Sdk::open(&app).await;
    let _ = sdk
        .ws
        .send(Message::Binary(vec![b' '; 1 << 20].into()))
        .await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sdk.ws.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1009);
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("expected close 1009, got {other:?}"),
        }
    }
}

/// The real SDKs in Chromium against the real binary (tests/websdk; `npm ci` there first, as scripts/test.sh
/// does): tim-js-sdk 2.27.6, @tencentcloud/chat 3.6.6 and @tencentcloud/lite-chat 4.2.1, eleven scenarios each.
#[test]
fn the_official_web_sdk_logs_in_unchanged() {
    let text = crate::helpers::node_suite("tests/websdk", "@tencentcloud/lite-chat");
    assert!(text.contains("# pass 33"), "all 33 ran:\n{text}");
}
