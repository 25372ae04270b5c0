//! The account store contract, run against PostgreSQL and SQLite alike.

use std::sync::Arc;

use imlogin::accounts::{AccountStore, Profile};

use crate::helpers::{Backend, TestDb};

crate::both_configs!(
    register_is_idempotent_and_durable,
    concurrent_first_registrations_create_one_account,
    apps_are_isolated,
    profile_upsert_creates_then_updates_given_fields,
    delete_then_register_creates_anew,
    disable_and_revoke,
    list_pages_in_byte_order,
    register_many_creates_each_once_in_order,
    concurrent_first_logins_share_commits_and_create_each_once,
);

async fn register_is_idempotent_and_durable(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (a, created) = store.register(1, "alice", 100).await.unwrap();
    assert!(created);
    assert_eq!(
        (
            a.sdkappid,
            a.user_id.as_str(),
            a.created_at,
            a.disabled,
            a.revoked_at
        ),
        (1, "alice", 100, false, 0)
    );
    let (again, created) = store.register(1, "alice", 200).await.unwrap();
    assert!(!created);
    assert_eq!(again, a, "a second registration changes nothing");
    drop(store);
    // A new pool (as after a restart) sees what was acknowledged.
    let reopened = db.store().await;
    assert_eq!(reopened.get(1, "alice").await.unwrap(), Some(a));
    assert_eq!(
        reopened.get(1, "Alice").await.unwrap(),
        None,
        "UserIDs are case-sensitive"
    );
}

async fn concurrent_first_registrations_create_one_account(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store: Arc<dyn AccountStore> = store.clone();
            tokio::spawn(async move { store.register(7, "racer", 1000 + i).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    let mut created_at = std::collections::HashSet::new();
    for t in tasks {
        let (account, c) = t.await.unwrap();
        created += usize::from(c);
        created_at.insert(account.created_at);
    }
    assert_eq!(created, 1, "exactly one call creates the account");
    assert_eq!(created_at.len(), 1, "every caller sees the same account");
    assert_eq!(store.list(7, None, 100).await.unwrap().len(), 1);
}

async fn apps_are_isolated(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.register(1, "bob", 1).await.unwrap();
    assert_eq!(store.get(2, "bob").await.unwrap(), None);
    let (_, created) = store.register(2, "bob", 2).await.unwrap();
    assert!(created, "the same UserID in another app is another account");
    assert!(store.set_disabled(2, "bob", true).await.unwrap());
    assert!(!store.get(1, "bob").await.unwrap().unwrap().disabled);
    assert!(store.delete(1, "bob").await.unwrap());
    assert!(store.get(2, "bob").await.unwrap().is_some());
    assert_eq!(store.list(1, None, 10).await.unwrap().len(), 0);
    assert_eq!(store.list(2, None, 10).await.unwrap().len(), 1);
    // The full u32 range of SDKAppIDs round-trips.
    store.register(u32::MAX, "max", 3).await.unwrap();
    assert_eq!(
        store.get(u32::MAX, "max").await.unwrap().unwrap().sdkappid,
        u32::MAX
    );
}

async fn profile_upsert_creates_then_updates_given_fields(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (a, created) = store
        .upsert_profile(
            1,
            "carol",
            Profile {
                nick: Some("Carol"),
                face_url: None,
            },
            10,
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (a.nick.as_str(), a.face_url.as_str(), a.created_at),
        ("Carol", "", 10)
    );
    let (b, created) = store
        .upsert_profile(
            1,
            "carol",
            Profile {
                nick: None,
                face_url: Some("https://x/c.png"),
            },
            20,
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        (b.nick.as_str(), b.face_url.as_str(), b.created_at),
        ("Carol", "https://x/c.png", 10)
    );
}

async fn delete_then_register_creates_anew(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.register(1, "dave", 1).await.unwrap();
    store.revoke(1, "dave", 50).await.unwrap();
    assert!(store.delete(1, "dave").await.unwrap());
    assert!(
        !store.delete(1, "dave").await.unwrap(),
        "deleting twice finds nothing"
    );
    let (fresh, created) = store.register(1, "dave", 99).await.unwrap();
    assert!(created);
    assert_eq!(
        (fresh.created_at, fresh.revoked_at, fresh.disabled),
        (99, 0, false)
    );
}

async fn disable_and_revoke(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    assert!(!store.set_disabled(1, "nobody", true).await.unwrap());
    assert!(!store.revoke(1, "nobody", 5).await.unwrap());
    store.register(1, "erin", 1).await.unwrap();
    assert!(store.set_disabled(1, "erin", true).await.unwrap());
    assert!(store.get(1, "erin").await.unwrap().unwrap().disabled);
    assert!(store.set_disabled(1, "erin", false).await.unwrap());
    assert!(!store.get(1, "erin").await.unwrap().unwrap().disabled);
    assert!(store.revoke(1, "erin", 500).await.unwrap());
    assert!(store.revoke(1, "erin", 400).await.unwrap());
    assert_eq!(
        store.get(1, "erin").await.unwrap().unwrap().revoked_at,
        500,
        "revocation never moves back"
    );
}

async fn list_pages_in_byte_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let ids = ["b", "B", "a", "_x", "A1", "a b", "~", "0"];
    for id in ids {
        store.register(3, id, 1).await.unwrap();
    }
    let mut expected: Vec<&str> = ids.to_vec();
    expected.sort(); // bytewise
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list(3, cursor.as_deref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        cursor = Some(page.last().unwrap().user_id.clone());
        seen.extend(page.into_iter().map(|a| a.user_id));
    }
    assert_eq!(seen, expected);
}

async fn register_many_creates_each_once_in_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.register(1, "old", 5).await.unwrap();
    let items: Vec<(u32, String)> = [
        (1, "new-a"),
        (1, "old"),
        (2, "new-a"),
        (1, "new-a"),
        (1, "new-b"),
    ]
    .iter()
    .map(|(a, u)| (*a, u.to_string()))
    .collect();
    let got = store.register_many(&items, 50).await.unwrap();
    let summary: Vec<(u32, &str, bool, i64)> = got
        .iter()
        .map(|(a, c)| (a.sdkappid, a.user_id.as_str(), *c, a.created_at))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "new-a", true, 50),
            (1, "old", false, 5),
            (2, "new-a", true, 50),
            (1, "new-a", false, 50),
            (1, "new-b", true, 50)
        ]
    );
    assert_eq!(store.list(1, None, 10).await.unwrap().len(), 3);
}

async fn concurrent_first_logins_share_commits_and_create_each_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let accounts = crate::helpers::accounts(db.store().await);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                accounts
                    .get_or_register(9, &format!("user-{}", i % 30), 1)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap().1);
    }
    assert_eq!(created, 30, "each of the 30 users is created exactly once");
    // Durable: another connection sees them.
    assert_eq!(db.store().await.list(9, None, 100).await.unwrap().len(), 30);
}
