//! PROTOCOL §4 and §5 over real WebSockets: kicks, switching, repeat login, resume, grace, UserSig expiry.

use std::time::Duration;

use imlogin::client::{ClientEvent, Reconnecting};
use imlogin::model::KickReason;
use serde_json::json;

use crate::helpers::{
    event, eventually, other_params, params, sig, spawn_on, Backend, APP, OTHER_APP, OTHER_APP_ENV,
};

crate::both_configs!(
    a_second_login_kicks_the_first_before_its_answer,
    switching_users_logs_the_old_instance_out_silently,
    repeat_login_answers_the_current_instance,
    same_device_replaces_its_instance,
    dropped_connection_resumes_within_the_grace,
    resume_moves_a_half_open_instance_and_closes_the_old_connection_4002,
    resume_of_kicked_or_gone_instances,
    the_grace_ends_and_the_slot_frees,
    sig_expiry_notice_then_expiry_then_login_again,
    renew_sig_extends_and_rearms,
    logout_keeps_the_connection_open,
    reconnecting_client_resumes_by_itself,
    a_removed_apps_session_tokens_are_refused,
);

async fn instances(app: &crate::helpers::TestApp, user: &str) -> Vec<imlogin::model::Instance> {
    app.state.sessions.user_instances(APP, user).await.unwrap()
}

async fn a_second_login_kicks_the_first_before_its_answer(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut first = app.connect().await;
    let web = app.connect().await;
    let a = first.login(&params("kim", "android")).await.unwrap();
    web.login(&params("kim", "web")).await.unwrap();
    let second = app.connect().await;
    let b = second.login(&params("kim", "iphone")).await.unwrap();
    assert_ne!(a.instance_id, b.instance_id);
    assert_eq!(
        event(&mut first).await,
        ClientEvent::KickedOffline {
            code: 6208,
            reason: "multi_terminal".into(),
            by_platform: Some("iphone".into())
        }
    );
    assert!(matches!(
        event(&mut first).await,
        ClientEvent::Closed {
            code: Some(4001),
            ..
        }
    ));
    // Dual mode: web stays.
    assert_eq!(web.status().await.unwrap(), 1);
    let left: Vec<String> = instances(&app, "kim")
        .await
        .into_iter()
        .map(|i| i.platform.to_string())
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"web".to_string()) && left.contains(&"iphone".to_string()));
}

async fn switching_users_logs_the_old_instance_out_silently(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut c = app.connect().await;
    let a = c.login(&params("sw-a", "windows")).await.unwrap();
    let b = c.login(&params("sw-b", "windows")).await.unwrap();
    assert!(!b.repeat_login);
    assert_eq!(c.login_user().await.unwrap(), "sw-b");
    assert!(
        instances(&app, "sw-a").await.is_empty(),
        "the old user's instance is gone"
    );
    // The same user on another platform is a switch too.
    let c2 = c.login(&params("sw-b", "mac")).await.unwrap();
    assert_ne!(c2.instance_id, b.instance_id);
    assert_eq!(instances(&app, "sw-b").await.len(), 1);
    // No event reached this connection.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c.next_event())
            .await
            .is_err()
    );
    let other = app.connect().await;
    assert_eq!(
        other.resume(&a.session_token).await.unwrap_err().code(),
        Some(6026)
    );
}

async fn repeat_login_answers_the_current_instance(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    let first = c.login(&params("rep", "linux")).await.unwrap();
    let again = c.login(&params("rep", "linux")).await.unwrap();
    assert!(again.repeat_login);
    assert_eq!(
        (again.instance_id.as_str(), again.sig_expires_at),
        (first.instance_id.as_str(), first.sig_expires_at)
    );
    assert_eq!(instances(&app, "rep").await.len(), 1);
    // A bad ticket on a repeat login is refused, and the session is untouched.
    let mut bad = params("rep", "linux");
    bad.user_sig = imlogin::usersig::tls::generate(APP, "wrong-key", "rep", 60, 1_800_000_000);
    assert_eq!(c.login(&bad).await.unwrap_err().code(), Some(70009));
    assert_eq!(c.status().await.unwrap(), 1);
}

async fn same_device_replaces_its_instance(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("APPS__0__POLICY__INSTANCES_PER_PLATFORM", "3")]).await;
    let mut a = app.connect().await;
    let b = app.connect().await;
    let mut pa = params("dev", "android");
    pa.device_id = Some("phone-1".into());
    let mut pb = params("dev", "android");
    pb.device_id = Some("phone-2".into());
    a.login(&pa).await.unwrap();
    b.login(&pb).await.unwrap();
    assert_eq!(
        instances(&app, "dev").await.len(),
        2,
        "two devices fit under the limit of 3"
    );
    let a2 = app.connect().await;
    a2.login(&pa).await.unwrap();
    assert_eq!(
        event(&mut a).await,
        ClientEvent::KickedOffline {
            code: 6208,
            reason: "same_device".into(),
            by_platform: Some("android".into())
        }
    );
    assert_eq!(b.status().await.unwrap(), 1);
    assert_eq!(instances(&app, "dev").await.len(), 2);
}

async fn dropped_connection_resumes_within_the_grace(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    let login = c.login(&params("roamer", "ipad")).await.unwrap();
    c.close();
    drop(c);
    eventually("the instance is disconnected", || async {
        instances(&app, "roamer")
            .await
            .first()
            .is_some_and(|i| !i.is_online())
    })
    .await;
    let back = app.connect().await;
    let r = back.resume(&login.session_token).await.unwrap();
    assert!(r.resumed && !r.repeat_login);
    assert_eq!(
        (r.instance_id, r.session_token),
        (login.instance_id.clone(), login.session_token.clone())
    );
    assert_eq!(back.status().await.unwrap(), 1);
    assert_eq!(back.login_user().await.unwrap(), "roamer");
    assert!(instances(&app, "roamer").await[0].is_online());
}

async fn resume_moves_a_half_open_instance_and_closes_the_old_connection_4002(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut old = app.connect().await;
    let login = old.login(&params("halfopen", "web")).await.unwrap();
    let new = app.connect().await;
    let r = new.resume(&login.session_token).await.unwrap();
    assert_eq!(r.instance_id, login.instance_id);
    assert!(matches!(
        event(&mut old).await,
        ClientEvent::Closed {
            code: Some(4002),
            ..
        }
    ));
    // The move did not disconnect it, even once the old connection has ended on the server too.
    crate::helpers::eventually("only the new connection is left", || async {
        app.state.gateway.connections().len() == 1
    })
    .await;
    let inst = instances(&app, "halfopen").await;
    assert_eq!(inst.len(), 1);
    assert!(inst[0].is_online());
    assert_eq!(new.status().await.unwrap(), 1);
}

async fn resume_of_kicked_or_gone_instances(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    let kicked = c.login(&params("rk", "android")).await.unwrap();
    c.close();
    let d = app.connect().await;
    d.login(&params("rk", "android")).await.unwrap();
    let e = app.connect().await;
    assert_eq!(
        e.resume(&kicked.session_token).await.unwrap_err().code(),
        Some(6208)
    );
    for (reason, code) in [
        (KickReason::AdminKickRevoked, 70052),
        (KickReason::AccountDeleted, 70107),
        (KickReason::AccountDisabled, 70051),
        (KickReason::AdminKick, 6208),
    ] {
        let user = format!("rk-{code}-{reason:?}");
        let mut c = app.connect().await;
        let l = c.login(&params(&user, "mac")).await.unwrap();
        assert_eq!(
            app.state
                .sessions
                .kick_user(APP, &user, reason, std::net::Ipv4Addr::LOCALHOST.into())
                .await
                .unwrap(),
            1
        );
        match event(&mut c).await {
            ClientEvent::KickedOffline {
                code: got,
                reason: r,
                by_platform,
            } => {
                assert_eq!(
                    (got, r.as_str(), by_platform),
                    (code, reason.as_str(), None)
                );
            }
            other => panic!("{other:?}"),
        }
        let f = app.connect().await;
        assert_eq!(
            f.resume(&l.session_token).await.unwrap_err().code(),
            Some(code),
            "{reason:?}"
        );
    }
    let g = app.connect().await;
    let l = g.login(&params("rk-gone", "mac")).await.unwrap();
    g.logout().await.unwrap();
    assert_eq!(
        g.resume(&l.session_token).await.unwrap_err().code(),
        Some(6026)
    );
    assert_eq!(
        g.resume("forged.token").await.unwrap_err().code(),
        Some(6026)
    );
    let other_secret = imlogin::login::tokens::TokenSigner::new("not-the-server-secret-at-all");
    let forged = other_secret.sign(&imlogin::model::InstanceKey {
        sdkappid: APP,
        user_id: "rk-gone".parse().unwrap(),
        instance_id: l.instance_id.clone(),
    });
    assert_eq!(g.resume(&forged).await.unwrap_err().code(), Some(6026));
}

async fn the_grace_ends_and_the_slot_frees(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("SESSION__RECONNECT_GRACE_SECS", "1")]).await;
    let c = app.connect().await;
    let l = c.login(&params("graceful", "windows")).await.unwrap();
    c.close();
    eventually("the instance is removed after the grace", || async {
        instances(&app, "graceful").await.is_empty()
    })
    .await;
    let d = app.connect().await;
    assert_eq!(
        d.resume(&l.session_token).await.unwrap_err().code(),
        Some(6026)
    );
}

async fn sig_expiry_notice_then_expiry_then_login_again(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("SESSION__SIG_EXPIRY_NOTICE_SECS", "300")]).await;
    let mut c = app.connect().await;
    let mut p = params("shortlived", "web");
    let now = imlogin::runtime::clock::unix_now() as u64;
    p.user_sig = sig("shortlived", Some(now), 2);
    let l = c.login(&p).await.unwrap();
    assert_eq!(l.sig_expires_at, now as i64 + 2);
    // Less than the notice is left: the notice comes at once.
    assert_eq!(
        event(&mut c).await,
        ClientEvent::UserSigExpiring {
            expires_at: now as i64 + 2
        }
    );
    assert_eq!(
        event(&mut c).await,
        ClientEvent::UserSigExpired { code: 6206 }
    );
    assert!(
        imlogin::runtime::clock::unix_now() > l.sig_expires_at,
        "not before now > expires_at"
    );
    assert_eq!(c.status().await.unwrap(), 3);
    assert!(instances(&app, "shortlived").await.is_empty());
    // The connection stays open for a new login.
    c.login(&params("shortlived", "web")).await.unwrap();
    assert_eq!(c.status().await.unwrap(), 1);
}

async fn renew_sig_extends_and_rearms(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[("SESSION__SIG_EXPIRY_NOTICE_SECS", "300")]).await;
    let mut c = app.connect().await;
    let now = imlogin::runtime::clock::unix_now() as u64;
    let mut p = params("renewer", "mac");
    p.user_sig = sig("renewer", Some(now), 200);
    c.login(&p).await.unwrap();
    assert_eq!(
        event(&mut c).await,
        ClientEvent::UserSigExpiring {
            expires_at: now as i64 + 200
        }
    );
    let wrong = sig("someone-else", None, 3600);
    assert_eq!(c.renew_sig(&wrong).await.unwrap_err().code(), Some(70013));
    let exp = c.renew_sig(&sig("renewer", Some(now), 250)).await.unwrap();
    assert_eq!(exp, now as i64 + 250);
    // Re-armed: still within the notice window, so the notice comes again.
    assert_eq!(
        event(&mut c).await,
        ClientEvent::UserSigExpiring {
            expires_at: now as i64 + 250
        }
    );
    let exp = c.renew_sig(&sig("renewer", Some(now), 7200)).await.unwrap();
    assert_eq!(instances(&app, "renewer").await[0].sig_expires_at, exp);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.next_event())
            .await
            .is_err(),
        "no notice now"
    );
}

async fn logout_keeps_the_connection_open(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let c = app.connect().await;
    c.login(&params("leaver", "linux")).await.unwrap();
    c.logout().await.unwrap();
    assert_eq!(c.status().await.unwrap(), 3);
    assert_eq!(c.login_user().await.unwrap(), "");
    assert!(instances(&app, "leaver").await.is_empty());
    assert_eq!(c.request("logout", json!({})).await.unwrap().code, 6014);
    c.login(&params("leaver", "linux")).await.unwrap();
}

async fn reconnecting_client_resumes_by_itself(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut r = Reconnecting::login(
        &app.ws_url(),
        &params("phoenix", "android"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let instance = r.login_data().instance_id.clone();
    // The connection ends without a logout (as when the network drops): the client resumes by itself.
    let conn = r.client().await;
    conn.close();
    assert_eq!(event_r(&mut r).await, ClientEvent::Reconnected);
    let now = r.client().await;
    assert_eq!(now.status().await.unwrap(), 1);
    assert_eq!(instances(&app, "phoenix").await[0].instance_id, instance);
    // A kick is terminal: the client reports it and stops.
    let other = app.connect().await;
    other.login(&params("phoenix", "android")).await.unwrap();
    assert!(matches!(
        event_r(&mut r).await,
        ClientEvent::KickedOffline { code: 6208, .. }
    ));
    assert!(matches!(
        event_r(&mut r).await,
        ClientEvent::Closed {
            code: Some(4001),
            ..
        }
    ));
}

async fn event_r(r: &mut Reconnecting) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(5), r.next_event())
        .await
        .expect("an event")
        .expect("open")
}

/// An instance the registry still holds after its app was removed (a login that was in flight during the reload,
/// past the reload's kicks): its session token neither resumes, reads the session nor logs out (70020, as its
/// tickets).
async fn a_removed_apps_session_tokens_are_refused(backend: Backend) {
    let (_db, app) = spawn_on(backend, &OTHER_APP_ENV).await;
    let c = app.connect().await;
    let token = c
        .login(&other_params("left-behind", "android"))
        .await
        .unwrap()
        .session_token;
    drop(c);
    let mut apps = app.state.settings.apps.clone();
    apps.retain(|a| a.sdkappid != OTHER_APP);
    app.state.sessions.auth().apps().replace(&apps);
    let c = app.connect().await;
    assert_eq!(c.resume(&token).await.unwrap_err().code(), Some(70020));
    // The HTTP uses of the token, reading the session and logging out, answer the same.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/session"),
        (reqwest::Method::POST, "/v1/logout"),
    ] {
        let r = app
            .http
            .request(method, app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], 70020, "{path}");
    }
}
