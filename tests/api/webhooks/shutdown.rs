//! PROTOCOL §10: at SIGTERM the real binary makes every attempt that falls due within
//! `server.shutdown_grace_secs` (retries included), leaves the rest in the outbox, and exits within the grace.

use std::time::{Duration, Instant};

use super::{Mode, Receiver};
use crate::helpers::{eventually, params, Backend};
use crate::server::{sigterm, wait_exit};

/// The `Cause` of each event of `user` the receiver accepted, in arrival order.
fn delivered_causes(r: &Receiver, user: &str) -> Vec<String> {
    r.delivered(user)
        .iter()
        .map(|e| e["Cause"].as_str().unwrap_or_default().to_owned())
        .collect()
}

crate::both_configs!(
    a_failed_attempt_is_retried_within_the_grace,
    what_is_not_due_within_the_grace_stays_in_the_outbox,
);

async fn a_failed_attempt_is_retried_within_the_grace(backend: Backend) {
    let r = Receiver::start(Mode::Fail).await;
    let grace = Duration::from_secs(5);
    let (db, mut b) = super::binary_on(
        backend,
        &r.url(),
        &[("IMLOGIN__SERVER__SHUTDOWN_GRACE_SECS", "5")],
    )
    .await;
    let c = imlogin::client::Client::connect(&format!("ws://{}/v1/ws", b.addr))
        .await
        .unwrap();
    c.login(&params("retried", "web")).await.unwrap();
    eventually("the first attempt reached the receiver", || async {
        !r.hits().is_empty()
    })
    .await;
    // That attempt is answered 500 (the receiver chose before this); the next ones are accepted.
    r.set(Mode::Ok);
    let asked = Instant::now();
    sigterm(&b.child);
    let status = wait_exit(&mut b.child).await;
    let took = asked.elapsed();
    assert!(status.success(), "{status}");
    assert!(!r.hits()[0].delivered, "the first attempt failed");
    assert_eq!(
        delivered_causes(&r, "retried"),
        ["login", "disconnect"],
        "the retry (due 1 s after the failure) and the disconnection behind it arrived before the exit; \
         the server said:\n{}",
        b.log()
    );
    // Generous: the bound is the grace; the rest is the process starting and exiting.
    assert!(
        took < grace + Duration::from_secs(3),
        "exited {took:?} after SIGTERM"
    );
    let outbox = db.database().await.outbox;
    assert_eq!(outbox.outbox_pending().await.unwrap(), 0, "nothing left");
}

async fn what_is_not_due_within_the_grace_stays_in_the_outbox(backend: Backend) {
    let r = Receiver::start(Mode::Fail).await;
    let grace = Duration::from_secs(3);
    let (db, mut b) = super::binary_on(
        backend,
        &r.url(),
        &[("IMLOGIN__SERVER__SHUTDOWN_GRACE_SECS", "3")],
    )
    .await;
    let login = reqwest::Client::new()
        .post(format!("http://{}/v1/login", b.addr))
        .json(&params("left", "web"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    eventually("the first attempt failed", || async {
        !r.hits().is_empty()
    })
    .await;
    let asked = Instant::now();
    sigterm(&b.child);
    let status = wait_exit(&mut b.child).await;
    let took = asked.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < grace + Duration::from_secs(3),
        "exited {took:?} after SIGTERM: it does not wait for retries beyond the grace"
    );
    // The retry 1 s after the failure falls due within the grace; the one 2 s later hardly can.
    assert!(
        r.hits().len() >= 2,
        "the retry due within the grace was made; the server said:\n{}",
        b.log()
    );
    let db = db.database().await;
    assert_eq!(
        db.outbox.outbox_pending().await.unwrap(),
        1,
        "the event waits in the outbox for the next start"
    );
    let dead = db
        .outbox
        .dead_letters(crate::helpers::APP, 0, 10)
        .await
        .unwrap();
    assert!(dead.is_empty(), "not dead-lettered: it has attempts left");
}

/// At SIGTERM, what can be delivered is delivered before the process exits (the disconnections too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_outbox() {
    let r = Receiver::start(Mode::Ok).await;
    let (_db, mut b) = super::binary_on(Backend::Sqlite, &r.url(), &[]).await;
    let c = imlogin::client::Client::connect(&format!("ws://{}/v1/ws", b.addr))
        .await
        .unwrap();
    c.login(&params("flushed", "web")).await.unwrap();
    sigterm(&b.child);
    let status = wait_exit(&mut b.child).await;
    assert!(status.success());
    assert_eq!(
        delivered_causes(&r, "flushed"),
        ["login", "disconnect"],
        "delivered before the exit; the server said:\n{}",
        b.log()
    );
}
