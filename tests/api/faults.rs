//! Faults on the real binary: killed with SIGKILL in the middle of a storm of new users' logins, nothing it
//! acknowledged is lost.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;

use crate::helpers::{params, Backend, TestDb, APP};
use crate::server::start_binary;

crate::both_stores!(every_login_acknowledged_before_a_sigkill_is_in_the_database);

async fn every_login_acknowledged_before_a_sigkill_is_in_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut b = start_binary(&[
        ("IMLOGIN__DATABASE__URL", db.url()),
        // Each client logs in as fast as it is answered: more frames a second than a real client sends.
        ("IMLOGIN__LIMITS__FRAMES_PER_SECOND", "100000".into()),
    ]);
    let url = format!("ws://{}/v1/ws", b.addr);
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    // 40 clients, each logging in new users one after another until the server is gone.
    let mut clients = Vec::new();
    for task in 0..40 {
        let (url, acknowledged) = (url.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            let Ok(c) = imlogin::client::Client::connect(&url).await else {
                return;
            };
            for i in 0.. {
                let user = format!("storm-{task}-{i}");
                match tokio::time::timeout(Duration::from_secs(5), c.login(&params(&user, "web")))
                    .await
                {
                    Ok(Ok(_)) => {
                        acknowledged.lock().unwrap().insert(user);
                    }
                    _ => return,
                }
            }
        }));
    }
    // Killed once a good number of registrations were acknowledged, with more in flight.
    crate::helpers::eventually("500 registrations to be acknowledged", || {
        let acknowledged = acknowledged.clone();
        async move { acknowledged.lock().unwrap().len() >= 500 }
    })
    .await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    for c in clients {
        let _ = c.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored: BTreeSet<String> = match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            sqlx::query_scalar("SELECT user_id FROM accounts WHERE sdkappid = $1")
                .bind(i64::from(APP))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url()).await.unwrap();
            sqlx::query_scalar("SELECT user_id FROM accounts WHERE sdkappid = ?")
                .bind(i64::from(APP))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    }
    .into_iter()
    .collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged registrations are not in the database: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    assert!(acknowledged.len() >= 500);
}
