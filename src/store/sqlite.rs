//! The SQLite account store (the zero-setup default): one file, created with its folder if missing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use sqlx::Connection;

use super::sql::sql_stores;
use super::ACQUIRE_TIMEOUT;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite://relative/path.db`, `sqlite:///absolute/path.db` (or `sqlite::memory:`) and migrates.
    pub async fn connect(url: &str, max_connections: u32) -> Result<SqliteStore, sqlx::Error> {
        // WAL lets readers run beside the one writer; FULL sync makes every acknowledged registration survive
        // an OS crash or power loss too, not just a crash of the process.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            // 1 MiB of page cache per connection (SQLite's default is 2 MiB): logins read through the account
            // cache, so the pages mostly serve writes.
            .pragma("cache_size", "-1024");
        let path = options.get_filename();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let in_memory = url.contains(":memory:");
        let pool = SqlitePoolOptions::new()
            // An in-memory database exists once per connection: keep exactly one. A file takes one writer at a
            // time and logins rarely read it (the cache answers), so a few connections suffice, and each keeps
            // its own page cache (up to 2 MB): more would only hold memory.
            .max_connections(if in_memory { 1 } else { max_connections.min(4) })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A transaction that failed on a full disk (SQLITE_FULL) can end with its ROLLBACK failing too, and
            // its connection still inside it, holding the write lock: pooled, it would lock every other writer
            // out until a restart. Such a connection is closed instead (which releases its locks); the pool
            // opens another. A dropped transaction's rollback is queued on the connection, so it is let run first.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

sql_stores!(SqliteStore, sqlx::Sqlite);
