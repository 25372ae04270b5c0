//! The database: PostgreSQL (production) or an embedded SQLite file, behind one small trait per area
//! ([`AccountStore`], [`PolicyStore`], [`OutboxStore`]). `sql` holds the one body both databases share, so
//! they cannot drift apart; the contract tests run against both.

pub mod accounts;
pub mod outbox;
pub mod policies;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

pub use accounts::AccountStore;
pub use outbox::OutboxStore;
pub use policies::PolicyStore;

use crate::config::DatabaseSettings;

/// A storage failure: the database is unreachable or refused the query. Logins map it to 70169.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The grouped registration this request was part of failed.
    #[error("database (grouped registration): {0}")]
    Batch(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How long a pool waits for a connection before the call fails (and a login answers 70169).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// One database, seen through each area's trait.
#[derive(Clone)]
pub struct Database {
    pub accounts: Arc<dyn AccountStore>,
    pub policies: Arc<dyn PolicyStore>,
    pub outbox: Arc<dyn OutboxStore>,
}

impl Database {
    fn of<S: AccountStore + PolicyStore + OutboxStore>(store: S) -> Database {
        let store = Arc::new(store);
        Database {
            accounts: store.clone(),
            policies: store.clone(),
            outbox: store,
        }
    }

    /// Opens the database named by a URL (`sqlite://…`, `sqlite::memory:`, `postgres://…`) with at most
    /// `max_connections`, and runs its migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Database, sqlx::Error> {
        if url.starts_with("sqlite:") {
            Ok(Self::of(
                sqlite::SqliteStore::connect(url, max_connections).await?,
            ))
        } else {
            Ok(Self::of(
                postgres::PgStore::connect(url, max_connections).await?,
            ))
        }
    }

    /// Opens the database of the settings.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Database, sqlx::Error> {
        Self::open(settings.url.expose(), settings.max_connections).await
    }
}
