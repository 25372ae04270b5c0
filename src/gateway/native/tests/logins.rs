//! Logins on a connection: the UserSig's notice and expiry, requests that wait behind a login in progress, a
//! kick that overtakes its answer, a resume of an expired instance.

use super::*;

#[tokio::test]
async fn the_usersig_notice_then_expiry_then_a_new_login() {
    let s = sessions(&["exp"]).await;
    let limits = Limits {
        heartbeat: Duration::from_secs(3600),
        ..LIMITS
    };
    let mut c = connect(&s, limits);
    // Expires at T0 + 400: the notice is due 300 s before, at T0 + 100.
    c.login(1, "exp", "android", 400);
    assert_eq!(c.json().await["data"]["sig_expires_at"], T0 + 400);
    tokio::time::advance(Duration::from_secs(99)).await;
    c.quiet().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        c.json().await,
        json!({"event": "user_sig_expiring", "expires_at": T0 + 400})
    );
    // Expired once now > expires_at: one second past it.
    tokio::time::advance(Duration::from_secs(300)).await;
    c.quiet().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        c.json().await,
        json!({"event": "user_sig_expired", "code": 6206})
    );
    assert!(s.user_instances(APP, "exp").await.unwrap().is_empty());
    c.send(json!({"id": 2, "op": "get_login_status"}));
    assert_eq!(c.json().await["data"]["status"], 3);
    // A ticket with less than the notice left is noticed at once. The user's cached login state is older than
    // its 5 minutes by now, so this login reads the account from the database: real I/O, which a paused clock
    // would let the frame's timeout overtake (it auto-advances while the runtime waits).
    tokio::time::resume();
    c.send(
        json!({"id": 3, "op": "login", "sdkappid": APP, "user_id": "exp",
        "user_sig": tls::generate(APP, KEY, "exp", 200, (T0 + 401) as u64), "platform": "android"}),
    );
    assert_eq!(c.json().await["code"], 0);
    assert_eq!(c.json().await["event"], "user_sig_expiring");
}

#[tokio::test]
async fn requests_behind_a_login_wait_and_are_answered_in_order() {
    let s = sessions(&["busy"]).await;
    let _stuck = stuck_instance(&s, "busy").await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "busy", "web", 3600);
    settle().await;
    // While the login waits for the stuck instance's kick: status, user and ping at once; another login or a
    // resume 7501; logout and renew_sig wait.
    c.send(json!({"id": 2, "op": "logout"}));
    c.send(json!({"id": 3, "op": "get_login_status"}));
    c.send(json!({"id": 4, "op": "get_login_user"}));
    c.send(json!({"id": 5, "op": "ping"}));
    c.send(json!({"id": 6, "op": "resume", "session_token": "x"}));
    c.login(7, "other", "web", 3600);
    c.send(json!({"id": 8, "op": "renew_sig", "user_sig": ticket("busy", 7200)}));
    let answer = |v: Value| (v["id"].as_u64().unwrap(), v["code"].as_u64().unwrap());
    assert_eq!(c.json().await["data"]["status"], 2);
    assert_eq!(c.json().await["data"]["user_id"], "");
    assert_eq!(answer(c.json().await), (5, 0));
    assert_eq!(answer(c.json().await), (6, 7501));
    assert_eq!(answer(c.json().await), (7, 7501));
    c.quiet().await;
    // The kick timeout passes; then the login, the logout and the renew_sig, in order.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(answer(c.json().await), (1, 0));
    assert_eq!(answer(c.json().await), (2, 0));
    assert_eq!(answer(c.json().await), (8, 6014));
}

#[tokio::test]
async fn more_than_64_requests_behind_a_login_close_1008() {
    let s = sessions(&["flood"]).await;
    let _stuck = stuck_instance(&s, "flood").await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "flood", "web", 3600);
    settle().await;
    for id in 2..=(2 + MAX_QUEUED as u64) {
        c.send(json!({"id": id, "op": "logout"}));
    }
    assert_eq!(c.closed_with().await, close::POLICY);
}

#[tokio::test]
async fn a_kick_that_arrives_during_the_login_is_delivered_after_its_answer() {
    let s = sessions(&["racer"]).await;
    let _stuck = stuck_instance(&s, "racer").await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "racer", "web", 3600);
    settle().await;
    // Another web login of the same user takes the slot of the instance this login just admitted.
    let (other, _mailbox) = s.hub().register();
    s.login(login_request("racer", "web"), IP, Some(other))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    let answer = c.json().await;
    assert_eq!(answer["code"], 0);
    assert_eq!(
        c.json().await,
        json!({"event": "kicked_offline", "code": 6208, "reason": "multi_terminal", "by_platform": "web"})
    );
    assert_eq!(c.closed_with().await, close::KICKED);
    c.task.await.unwrap();
}

#[tokio::test]
async fn resume_of_an_instance_whose_usersig_expired_is_refused_without_moving_it() {
    let s = sessions(&["late"]).await;
    let (holder, _holder_mailbox) = s.hub().register();
    let body = json!({"sdkappid": APP, "user_id": "late", "user_sig": ticket("late", 10), "platform": "web"});
    let request = LoginRequest::from_fields(Fields::parse(body.to_string().as_bytes()).unwrap());
    let ok = s.login(request, IP, Some(holder)).await.unwrap();
    let key = ok.instance.key();
    tokio::time::advance(Duration::from_secs(11)).await;
    let (other, _other_mailbox) = s.hub().register();
    let refused = s.resume(&ok.session_token, other, IP).await.unwrap_err();
    assert_eq!(refused.code, Code::NoPreviousLogin);
    assert_eq!(
        s.instance(&key).await.unwrap().unwrap().conn,
        Some(holder),
        "left on the connection it is on, which tells its client when its timer fires"
    );
    // Disconnected, it is removed by the attempt.
    s.detach(&key, holder, crate::model::Cause::Disconnect)
        .await;
    let refused = s.resume(&ok.session_token, other, IP).await.unwrap_err();
    assert_eq!(refused.code, Code::NoPreviousLogin);
    assert!(s.instance(&key).await.unwrap().is_none());
}
