//! The PostgreSQL account store (production).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::sql_stores;
use super::ACQUIRE_TIMEOUT;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and runs the migrations (sqlx holds an advisory lock while migrating, so replicas starting
    /// together are safe).
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("imlogin");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

sql_stores!(PgStore, sqlx::Postgres);
