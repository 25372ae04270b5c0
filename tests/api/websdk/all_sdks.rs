//! Frames every SDK version tested reads alike (docs/websdk.md): tim-js-sdk 2.x, @tencentcloud/chat 3.x and
//! @tencentcloud/lite-chat 4.x. A kick is one `im_open_status.stat_forceoffline` push with the `KickType` of who
//! kicked, live and on the resume after a kick while away, and nothing after it reads as another kick; the
//! purchase bits are at both levels of the body.

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{instances, kick_type, Sdk};
use crate::helpers::{params, sig, spawn_on, Backend, TestApp};

crate::both_configs!(
    a_kick_is_one_push_and_what_follows_is_no_other_kick,
    a_resume_after_a_kick_while_away_is_told_the_kick_type_of_who_kicked,
    the_purchase_bits_are_at_both_levels_of_the_body,
);

const SINGLE: &str = r#"{"mode":"single","web_instances":1,"instances_per_platform":1}"#;

async fn single_policy(app: &TestApp) {
    let policy: Value = serde_json::from_str(SINGLE).unwrap();
    let (s, body) = app.native(Method::PUT, "/policy", Some(policy)).await;
    assert_eq!(s, 200, "{body}");
}

/// An SDK logged in as `user`; its login answer.
async fn logged_in(app: &TestApp, user: &str) -> (Sdk, Value) {
    let mut sdk = Sdk::open(app).await;
    let ok = sdk.login(user, &sig(user, None, 3600)).await;
    assert_eq!(ok["ActionStatus"], "OK", "{ok}");
    (sdk, ok)
}

/// Who kicks, how, and what the kicked SDK must be told: its `KickType` and the code of later answers.
#[derive(Clone, Copy, Debug)]
enum Kicker {
    /// Another web login (here through the SDK's frames): `multipleAccount`.
    Web,
    /// An Android login under the single policy: `multipleDevice`.
    Android,
    /// An admin's kick: `REST_API_Kick`.
    Admin,
    /// An admin disabling the account: `REST_API_Kick` too.
    Disable,
}

impl Kicker {
    const ALL: [Kicker; 4] = [Kicker::Web, Kicker::Android, Kicker::Admin, Kicker::Disable];

    fn kick_type(self) -> i64 {
        match self {
            Kicker::Web => 1,
            Kicker::Android => 2,
            Kicker::Admin | Kicker::Disable => 3,
        }
    }

    /// The kick's own code, which no SDK takes for a kick or an expiry.
    fn code(self) -> i64 {
        match self {
            Kicker::Disable => 70051,
            _ => 6208,
        }
    }

    /// Kicks `user`'s instance. What it returns is kept for the length of the test (a native client).
    async fn kick(self, app: &TestApp, user: &str) -> Option<impl Sized> {
        match self {
            Kicker::Web => return Some((Some(logged_in(app, user).await.0), None)),
            Kicker::Android => {
                let native = app.connect().await;
                native.login(&params(user, "android")).await.unwrap();
                return Some((None, Some(native)));
            }
            Kicker::Admin => {
                let path = format!("/users/{user}/kick");
                let (s, body) = app.native(Method::POST, &path, Some(json!({}))).await;
                assert_eq!(s, 200, "{body}");
            }
            Kicker::Disable => {
                let path = format!("/users/{user}/disable");
                let (s, body) = app.native(Method::POST, &path, None).await;
                assert!(s == 200 || s == 204, "{s} {body}");
            }
        }
        None
    }
}

/// After a kick was told: a `wshello` hears the kick's own code (not 70001, which every SDK takes for
/// `userSigExpired`, nor 1002), and the SDK's `wslogout` is answered.
async fn nothing_more_reads_as_a_kick(sdk: &mut Sdk, kicker: Kicker) {
    sdk.no_more_pushes().await;
    let hello = sdk
        .call("im_open_status.wshello", json!({}), json!({}))
        .await;
    assert_eq!(hello["ErrorCode"], kicker.code(), "{kicker:?}: {hello}");
    sdk.no_more_pushes().await;
    let out = sdk
        .call(
            "im_open_status.wslogout",
            json!({}),
            json!({"wslogout_type": 1}),
        )
        .await;
    assert_eq!(out["ActionStatus"], "OK", "{out}");
}

async fn a_kick_is_one_push_and_what_follows_is_no_other_kick(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    single_policy(&app).await;
    for (i, kicker) in Kicker::ALL.into_iter().enumerate() {
        let user = format!("live-{i}");
        let (mut sdk, _) = logged_in(&app, &user).await;
        let _kicker = kicker.kick(&app, &user).await;
        let push = sdk.push().await;
        assert_eq!(kick_type(&push), kicker.kick_type(), "{kicker:?}");
        nothing_more_reads_as_a_kick(&mut sdk, kicker).await;
    }
}

async fn a_resume_after_a_kick_while_away_is_told_the_kick_type_of_who_kicked(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    single_policy(&app).await;
    for (i, kicker) in Kicker::ALL.into_iter().enumerate() {
        let user = format!("away-{i}");
        let (sdk, ok) = logged_in(&app, &user).await;
        let (a2, tiny) = (
            ok["A2Key"].as_str().unwrap(),
            ok["TinyId"].as_str().unwrap(),
        );
        drop(sdk);
        crate::helpers::eventually("the instance to be disconnected", || async {
            instances(&app, &user)
                .await
                .first()
                .map(|i| i["state"].clone())
                == Some(json!("disconnected"))
        })
        .await;
        let _kicker = kicker.kick(&app, &user).await;
        // Back with its A2Key: the kick comes first, as the push every SDK reads (lite-chat ignores 1002, and
        // 2.x and 3.x ignore lite-chat's codes), then the resume refused with the kick's own code.
        let mut back = Sdk::open(&app).await;
        let r = back.resume(a2, tiny).await;
        assert_eq!(back.pushes.len(), 1, "{kicker:?}: {:?}", back.pushes);
        let push = back.push().await;
        assert_eq!(kick_type(&push), kicker.kick_type(), "{kicker:?}");
        assert_eq!(r["ActionStatus"], "FAIL", "{r}");
        assert_eq!(r["ErrorCode"], kicker.code(), "{kicker:?}: {r}");
        assert!(r.get("KickType").is_none(), "{r}");
        nothing_more_reads_as_a_kick(&mut back, kicker).await;
    }
}

async fn the_purchase_bits_are_at_both_levels_of_the_body(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let (mut sdk, _) = logged_in(&app, "bits").await;
    let body = sdk
        .call(
            "im_sdk_config_mgr.fetch_imsdk_purchase_bitsv2",
            json!({}),
            json!({"uint32_sdkappid": crate::helpers::APP}),
        )
        .await;
    assert_eq!(
        (&body["ActionStatus"], &body["ErrorCode"]),
        (&json!("OK"), &json!(0))
    );
    // In the body (2.x and 3.x) and in `body.body` (lite-chat 4.x): no features ("0", valid bits), for a day
    // (every SDK reads the time as seconds from now, and asks again then).
    for (level, bits) in [("body", &body), ("body.body", &body["body"])] {
        assert_eq!(bits["int32_error_code"], 0, "{level}: {body}");
        assert_eq!(bits["str_purchase_bits"], "0", "{level}: {body}");
        assert_eq!(bits["uint32_expired_time"], 86_400, "{level}: {body}");
    }
}
