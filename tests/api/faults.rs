//! Faults on the real binary, under a storm of new users' logins: killed with SIGKILL (nothing it acknowledged
//! is lost); PostgreSQL restarted (new users get a clear 70169 meanwhile, known users still log in, and it
//! recovers by itself); the SQLite disk full (the same, and no corruption).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::Connection;

use crate::helpers::{params, Backend, TestDb, APP};
use crate::server::start_binary;

crate::both_configs!(every_login_acknowledged_before_a_sigkill_is_in_the_database);

/// What the storm's logins got.
#[derive(Debug, Default, Clone)]
struct Seen {
    acknowledged: BTreeSet<String>,
    /// Refusals by code.
    codes: BTreeMap<u32, usize>,
    /// Logins not answered within 5 s.
    timeouts: usize,
}

/// Clients each logging in new users one after another, as soon as the last was answered, until stopped or the
/// server is gone.
struct Storm {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Storm {
    async fn start(url: &str, clients: usize, prefix: &str) -> Storm {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for task in 0..clients {
            let (url, seen, stop) = (url.to_owned(), seen.clone(), stop.clone());
            let prefix = prefix.to_owned();
            tasks.push(tokio::spawn(async move {
                let Ok(c) = imlogin::client::Client::connect(&url).await else {
                    return;
                };
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let user = format!("{prefix}-{task}-{i}");
                    let answer = tokio::time::timeout(
                        Duration::from_secs(5),
                        c.login(&params(&user, "web")),
                    )
                    .await;
                    let mut s = seen.lock().unwrap();
                    match answer {
                        Ok(Ok(_)) => {
                            s.acknowledged.insert(user);
                        }
                        Ok(Err(e)) => match e.code() {
                            Some(code) => *s.codes.entry(code).or_default() += 1,
                            None => return, // the server is gone
                        },
                        Err(_) => s.timeouts += 1,
                    }
                }
            }));
        }
        Storm { seen, stop, tasks }
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (up to 60 s) until what the storm saw satisfies `check`.
    async fn until(&self, what: &str, check: impl Fn(&Seen) -> bool) {
        for _ in 0..1200 {
            if check(&self.seen()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting until {what}: {:?}", self.summary());
    }

    fn summary(&self) -> (usize, BTreeMap<u32, usize>, usize) {
        let s = self.seen();
        (s.acknowledged.len(), s.codes, s.timeouts)
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}

/// The UserIDs of the demo app's accounts in the database at `url`.
async fn stored_users(backend: Backend, url: &str) -> BTreeSet<String> {
    let users: Vec<String> = match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar("SELECT user_id FROM accounts WHERE sdkappid = $1")
                .bind(i64::from(APP))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar("SELECT user_id FROM accounts WHERE sdkappid = ?")
                .bind(i64::from(APP))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    };
    users.into_iter().collect()
}

fn assert_none_lost(acknowledged: &BTreeSet<String>, stored: &BTreeSet<String>) {
    let lost: Vec<_> = acknowledged.difference(stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged registrations are not in the database: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

async fn every_login_acknowledged_before_a_sigkill_is_in_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut env = db.binary_env();
    // Each client logs in as fast as it is answered: more frames a second than a real client sends.
    env.push(("IMLOGIN__LIMITS__FRAMES_PER_SECOND", "100000".into()));
    let mut b = start_binary(&env);
    let storm = Storm::start(&format!("ws://{}/v1/ws", b.addr), 40, "storm").await;
    // Killed once a good number of registrations were acknowledged, with more in flight.
    storm
        .until("500 registrations are acknowledged", |s| {
            s.acknowledged.len() >= 500
        })
        .await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let seen = storm.finish().await;
    assert_none_lost(&seen.acknowledged, &stored_users(backend, &db.url()).await);
    assert!(seen.acknowledged.len() >= 500);
}

/// A PostgreSQL cluster of this test's own (initdb as the `postgres` user, on a free port), so that restarting
/// it disturbs no other test; removed on drop.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn bin(name: &str) -> PathBuf {
        let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed");
        let version = versions
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .max()
            .expect("a PostgreSQL version");
        version.join("bin").join(name)
    }

    fn as_postgres(args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(args)
            .output()
            .expect("runuser runs");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        Command::new("chown")
            .args(["postgres:postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        let data = dir.path().join("data");
        let initdb = Self::bin("initdb");
        Self::as_postgres(&[
            initdb.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        let pg = PrivatePostgres {
            port: crate::helpers::free_port(),
            dir,
        };
        pg.up();
        pg
    }

    fn ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let pg_ctl = Self::bin("pg_ctl");
        Self::as_postgres(&[
            pg_ctl.to_str().unwrap(),
            action,
            "-D",
            data.to_str().unwrap(),
            "-o",
            &options,
            "-l",
            log.to_str().unwrap(),
            "-m",
            "fast",
            "-w",
        ]);
    }

    fn up(&self) {
        self.ctl("start");
    }

    fn down(&self) {
        self.ctl("stop");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = Self::bin("pg_ctl");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args([pg_ctl.to_str().unwrap(), "stop", "-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate"])
            .output();
    }
}

/// What both database faults go through: `clients` clients register new users on the binary at `db_url`; once
/// `each` are acknowledged, `fault` breaks the database. Then new users must get 70169 (and nothing else, each
/// within 5 s), a user the server has seen must still log in, and once `repair` mends it, registrations must resume
/// with no restart of imlogin. Returns the binary and what the storm saw.
async fn storm_through_a_fault(
    db_url: &str,
    clients: usize,
    each: usize,
    fault: impl FnOnce(),
    repair: impl FnOnce(),
) -> (crate::server::Binary, Seen) {
    let b = start_binary(&[
        ("IMLOGIN__DATABASE__URL", db_url.to_owned()),
        ("IMLOGIN__LIMITS__FRAMES_PER_SECOND", "100000".into()),
    ]);
    let url = format!("ws://{}/v1/ws", b.addr);
    let known = imlogin::client::Client::connect(&url).await.unwrap();
    known.login(&params("known-before", "web")).await.unwrap();
    let storm = Storm::start(&url, clients, "fault").await;
    let went = std::panic::AssertUnwindSafe(async {
        storm
            .until("registrations before the fault", |s| {
                s.acknowledged.len() >= each
            })
            .await;
        fault();
        storm
            .until("new users are refused with 70169", |s| {
                s.codes.get(&70169).copied().unwrap_or(0) >= 20
            })
            .await;
        // A user this server has seen logs in meanwhile (PROTOCOL §4).
        let again = imlogin::client::Client::connect(&url).await.unwrap();
        again
            .login(&params("known-before", "iphone"))
            .await
            .unwrap();
        let during = storm.seen().acknowledged.len();
        repair();
        storm
            .until("registrations resume once it is mended", |s| {
                s.acknowledged.len() >= during + each
            })
            .await;
    })
    .catch_unwind()
    .await;
    assert!(went.is_ok(), "the server said:\n{}", b.log());
    let seen = storm.finish().await;
    let other: Vec<_> = seen.codes.keys().filter(|c| **c != 70169).collect();
    assert!(other.is_empty(), "only 70169 meanwhile: {:?}", seen.codes);
    assert_eq!(seen.timeouts, 0, "every login answered within 5 s");
    (b, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_storm_new_users_get_70169_then_it_recovers() {
    let pg = PrivatePostgres::start();
    let (_b, seen) = storm_through_a_fault(&pg.url(), 20, 200, || pg.down(), || pg.up()).await;
    assert_none_lost(
        &seen.acknowledged,
        &stored_users(Backend::Postgres, &pg.url()).await,
    );
}

/// A tmpfs of a few MiB, unmounted on drop: a disk that fills.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left with one file.
    fn fill(&self) {
        let filler = self.path().join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_disk_gives_70169_loses_and_corrupts_nothing_and_recovers() {
    let disk = SmallDisk::mount("8m");
    let db_url = format!("sqlite://{}/imlogin.db", disk.path().display());
    let (mut b, seen) =
        storm_through_a_fault(&db_url, 10, 100, || disk.fill(), || disk.free()).await;
    crate::server::sigterm(&b.child);
    assert!(crate::server::wait_exit(&mut b.child).await.success());
    let mut conn = sqlx::SqliteConnection::connect(&db_url).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    assert_none_lost(
        &seen.acknowledged,
        &stored_users(Backend::Sqlite, &db_url).await,
    );
}
