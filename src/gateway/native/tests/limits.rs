//! The limits and timers of a connection: heartbeat, login deadline, frame rate and size, a client that does not
//! read, and the memory an idle connection keeps.

use super::*;

#[tokio::test]
async fn silence_for_the_heartbeat_closes_4003_and_any_frame_resets_it() {
    let s = sessions(&["hb"]).await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "hb", "web", 3600);
    assert_eq!(c.json().await["code"], 0);
    tokio::time::advance(Duration::from_secs(60)).await;
    c.tx.send(Inbound::Control).unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(89)).await;
    c.quiet().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(c.closed_with().await, close::HEARTBEAT_TIMEOUT);
    c.task.await.unwrap();
    // The instance stays, disconnected, resumable for the grace.
    let left = s.user_instances(APP, "hb").await.unwrap();
    assert!(left.len() == 1 && left[0].conn.is_none());
}

#[tokio::test]
async fn a_connection_that_does_not_log_in_in_time_is_closed_1008() {
    let s = sessions(&["late"]).await;
    let mut idle = connect(&s, LIMITS);
    let mut busy = connect(&s, LIMITS);
    // Frames other than a login do not count: only a login does.
    busy.tx
        .send(Inbound::Text(r#"{"id":1,"op":"ping"}"#.into()))
        .unwrap();
    assert_eq!(busy.json().await["code"], 0);
    let mut on_time = connect(&s, LIMITS);
    tokio::time::advance(Duration::from_secs(29)).await;
    on_time.login(1, "late", "web", 3600);
    assert_eq!(on_time.json().await["code"], 0);
    idle.quiet().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(idle.closed_with().await, close::POLICY);
    assert_eq!(busy.closed_with().await, close::POLICY);
    // Logged in, the connection outlives the login timeout (up to its heartbeat).
    tokio::time::advance(Duration::from_secs(60)).await;
    on_time.quiet().await;
}

#[tokio::test]
async fn frames_faster_than_the_limit_close_1008_after_the_burst() {
    let s = sessions(&[]).await;
    let limits = Limits {
        frames_per_second: 5,
        ..LIMITS
    };
    let mut steady = connect(&s, limits);
    // 5 a second for a while is fine.
    for _ in 0..20 {
        steady.tx.send(Inbound::Control).unwrap();
        tokio::time::advance(Duration::from_millis(200)).await;
    }
    steady.quiet().await;
    // A burst of twice the rate is fine; one more is not.
    let mut flood = connect(&s, limits);
    for _ in 0..10 {
        flood.tx.send(Inbound::Control).unwrap();
    }
    settle().await;
    flood.quiet().await;
    flood.tx.send(Inbound::Control).unwrap();
    assert_eq!(flood.closed_with().await, close::POLICY);
}

#[tokio::test]
async fn a_message_over_the_limit_closes_1009() {
    let s = sessions(&[]).await;
    let mut c = connect(&s, LIMITS);
    c.send(json!({"id": 1, "op": "ping", "pad": "x".repeat(900)}));
    assert_eq!(c.json().await["code"], 0, "up to the limit is fine");
    c.send(json!({"id": 2, "op": "ping", "pad": "x".repeat(1100)}));
    assert_eq!(c.closed_with().await, close::TOO_LARGE);
    c.task.await.unwrap();
    // The transport's own limit (a frame announced too large) closes the same way.
    let mut c = connect(&s, LIMITS);
    c.tx.send(Inbound::TooLarge).unwrap();
    assert_eq!(c.closed_with().await, close::TOO_LARGE);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_not_read_and_is_dropped_after_the_write_timeout() {
    let s = sessions(&["deaf"]).await;
    let mut c = connect(&s, LIMITS);
    c.login(1, "deaf", "web", 3600);
    assert_eq!(c.json().await["code"], 0);
    c.blocked.store(true, Ordering::Relaxed);
    let sent = 5000;
    for id in 0..sent {
        c.send(json!({"id": id, "op": "ping"}));
    }
    settle().await;
    let read = c.read.load(Ordering::Relaxed);
    assert!(
        read < sent as usize / 2,
        "it stops reading once {OUT_HIGH_WATER} bytes wait to be sent (read {read} of {sent})"
    );
    tokio::time::advance(LIMITS.write_timeout - Duration::from_millis(1)).await;
    settle().await;
    assert!(!c.task.is_finished());
    tokio::time::advance(Duration::from_millis(2)).await;
    settle().await;
    assert!(c.task.is_finished(), "dropped at the write deadline");
    let left = s.user_instances(APP, "deaf").await.unwrap();
    assert!(left.len() == 1 && left[0].conn.is_none(), "left resumable");
}

#[tokio::test]
async fn the_heartbeat_fires_while_a_write_is_pending() {
    let s = sessions(&[]).await;
    let limits = Limits {
        heartbeat: Duration::from_secs(3),
        write_timeout: Duration::from_secs(60),
        ..LIMITS
    };
    let c = connect(&s, limits);
    c.blocked.store(true, Ordering::Relaxed);
    c.send(json!({"id": 1, "op": "ping"}));
    settle().await;
    // (Tokio's timers fire on whole milliseconds: a millisecond more than the heartbeat.)
    tokio::time::advance(Duration::from_millis(3001)).await;
    settle().await;
    assert!(
        c.task.is_finished(),
        "closed at the heartbeat, not at the write deadline"
    );
}

/// Every idle session keeps its connection's future resident: a buffer or a future held across an await in
/// it costs that much per session (docs/benchmarks.md, memory per idle session).
#[tokio::test]
async fn the_connection_future_stays_small() {
    let s = sessions(&[]).await;
    let size = connection_future_size::<Native>(s);
    assert!(size <= 1024, "the connection future takes {size} bytes");
}

/// The same for a connection of the Web SDK's gateway, over the same loop and instance state.
#[tokio::test]
async fn the_web_sdk_connection_future_stays_small() {
    let s = sessions(&[]).await;
    let size = connection_future_size::<crate::gateway::websdk::connection::WebSdk>(s);
    assert!(size <= 1024, "the connection future takes {size} bytes");
}

/// The size of the future of a connection speaking `D`.
fn connection_future_size<D: crate::gateway::driver::Dialect + Send>(s: Arc<Sessions>) -> usize {
    let (_tx, inbound) = mpsc::unbounded_channel();
    let (outbound, _rx) = mpsc::unbounded_channel();
    let mut io = TestIo {
        inbound,
        outbound,
        blocked: Default::default(),
        read: Default::default(),
    };
    let serve = driver::serve::<_, D>(&mut io, s, IP, &LIMITS);
    std::mem::size_of_val(&serve)
}
