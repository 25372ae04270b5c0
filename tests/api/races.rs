//! PROTOCOL §5 under contention: many logins of one user racing over real WebSockets.

use std::collections::HashSet;

use imlogin::client::{Client, ClientEvent};

use crate::helpers::{event, params, spawn_on, Backend, APP};

crate::both_configs!(
    fifty_racing_logins_leave_one_per_slot,
    racing_logins_respect_per_platform_limits,
    a_resume_of_the_current_instance_racing_a_resume_elsewhere_leaves_one_connection,
    a_logout_behind_a_resume_that_lost_the_race_leaves_the_winners_session,
);

/// Logs `n` connections in as one user on `platform` at once; returns the clients and their instance ids.
async fn race(
    app: &crate::helpers::TestApp,
    user: &str,
    platform: &str,
    n: usize,
) -> Vec<(Client, String)> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(app.connect().await);
    }
    let tickets: Vec<_> = (0..n).map(|_| params(user, platform)).collect();
    let logins = clients.iter().zip(&tickets).map(|(c, p)| c.login(p));
    let results = futures_util::future::join_all(logins).await;
    clients
        .into_iter()
        .zip(results)
        .map(|(c, r)| {
            let id = r.expect("every racing login succeeds").instance_id;
            (c, id)
        })
        .collect()
}

async fn check(
    app: &crate::helpers::TestApp,
    user: &str,
    clients: &mut [(Client, String)],
    slots: usize,
) {
    let survivors: HashSet<String> = app
        .state
        .sessions
        .user_instances(APP, user)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    assert_eq!(survivors.len(), slots, "exactly the slots survive");
    // Every kick was written before the answer of the login that caused it, and every login has answered.
    for (c, id) in clients.iter_mut() {
        if survivors.contains(id) {
            // Whatever reached this connection before, its answer to this ping comes after it.
            assert_eq!(c.status().await.unwrap(), 1);
            assert_eq!(c.try_next_event(), None, "a survivor was told something");
        } else {
            assert!(
                matches!(
                    event(c).await,
                    ClientEvent::KickedOffline { code: 6208, .. }
                ),
                "every displaced instance gets kicked_offline"
            );
            assert!(
                matches!(
                    event(c).await,
                    ClientEvent::Closed {
                        code: Some(4001),
                        ..
                    }
                ),
                "exactly once, then the close"
            );
        }
    }
}

async fn fifty_racing_logins_leave_one_per_slot(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    let mut clients = race(&app, "racer", "android", 50).await;
    check(&app, "racer", &mut clients, 1).await;
}

async fn racing_logins_respect_per_platform_limits(backend: Backend) {
    let (_db, app) = spawn_on(
        backend,
        &[
            ("APPS__0__POLICY__MODE", "multi"),
            ("APPS__0__POLICY__INSTANCES_PER_PLATFORM", "3"),
            ("APPS__0__POLICY__WEB_INSTANCES", "10"),
        ],
    )
    .await;
    let mut phones = race(&app, "crowd", "iphone", 30).await;
    check(&app, "crowd", &mut phones, 3).await;
    let mut tabs = race(&app, "tabs", "web", 40).await;
    check(&app, "tabs", &mut tabs, 10).await;
}

/// How a connection ended within 300 ms, if it did: `Some(close code)`.
pub async fn ended(c: &mut Client) -> Option<Option<u16>> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_millis(300), c.next_event()).await {
            Ok(Some(ClientEvent::Closed { code, .. })) => return Some(code),
            Ok(None) => return Some(None),
            Ok(Some(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// The two connections after a race of resumes of one instance: exactly one holds it (and says so), the other
/// was closed with 4002.
pub async fn one_holds(a: &mut Client, b: &mut Client, round: usize) {
    let (ea, eb) = (ended(a).await, ended(b).await);
    let open: Vec<&mut Client> = [(a, ea), (b, eb)]
        .into_iter()
        .filter_map(|(c, e)| e.is_none().then_some(c))
        .collect();
    assert_eq!(
        open.len(),
        1,
        "round {round}: one connection holds the instance ({ea:?}, {eb:?})"
    );
    assert_eq!(open[0].status().await.unwrap(), 1, "round {round}");
    for e in [ea, eb].into_iter().flatten() {
        assert_eq!(
            e,
            Some(4002),
            "round {round}: the other is told it resumed elsewhere"
        );
    }
}

/// A connection logged in as `user` on web, its session token, and another connection.
async fn logged_in_and_another(
    app: &crate::helpers::TestApp,
    user: &str,
) -> (Client, String, Client) {
    let a = app.connect().await;
    let token = a.login(&params(user, "web")).await.unwrap().session_token;
    (a, token, app.connect().await)
}

/// A connection resumes its own instance while another connection resumes it at the same moment: each resume
/// tells the other connection, and whichever attached it last keeps it (never both, never neither).
async fn a_resume_of_the_current_instance_racing_a_resume_elsewhere_leaves_one_connection(
    backend: Backend,
) {
    let (_db, app) = spawn_on(backend, &[]).await;
    for round in 0..30 {
        let (mut a, token, mut b) = logged_in_and_another(&app, &format!("racer{round}")).await;
        let _ = tokio::join!(a.resume(&token), b.resume(&token));
        one_holds(&mut a, &mut b, round).await;
    }
}

/// A connection resumes its own instance with a `logout` queued behind it, while another connection resumes the
/// instance at the same moment. If the other one attached it last, it keeps it: the first connection's logout
/// (handled before it hears that the instance moved) does not remove the session the other one holds.
async fn a_logout_behind_a_resume_that_lost_the_race_leaves_the_winners_session(backend: Backend) {
    let (_db, app) = spawn_on(backend, &[]).await;
    for round in 0..30 {
        let (mut a, token, mut b) = logged_in_and_another(&app, &format!("quitter{round}")).await;
        let (_, _, resumed) = tokio::join!(a.resume(&token), a.logout(), b.resume(&token));
        if resumed.is_err() || ended(&mut b).await.is_some() {
            continue;
        }
        let _ = ended(&mut a).await;
        // B is open and holds the instance: it is still there (a third connection can take it over).
        assert_eq!(b.status().await.unwrap(), 1, "round {round}");
        let third = app.connect().await;
        let taken = third.resume(&token).await;
        assert!(
            taken.is_ok(),
            "round {round}: the session B holds is there: {taken:?}"
        );
    }
}
