//! The PostgreSQL backend: many workers, one database, `FOR UPDATE SKIP LOCKED` claims.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::common::StoreConfig;
use crate::schema::Dialect;

/// Key of the advisory lock that serializes concurrent `migrate` calls.
const MIGRATION_LOCK: i64 = 0x6775_6573_746b_6974; // "guestkit"

/// A [`crate::JobStore`] in PostgreSQL.
///
/// Every accepted job is committed before `submit` returns, with PostgreSQL's own
/// durability settings. Claims lock candidate rows with `FOR UPDATE SKIP LOCKED`, so any
/// number of worker processes can claim concurrently without blocking each other or
/// taking the same job twice.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    pub(crate) config: StoreConfig,
    pub(crate) sweep: crate::common::SweepGate,
}

/// Options of [`PgStore::connect_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Schema holding the tables (`search_path`); None = the server default (`public`).
    pub schema: Option<String>,
    /// Pool size.
    pub max_connections: u32,
    /// Backoff settings.
    pub config: StoreConfig,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: None,
            max_connections: 16,
            config: StoreConfig::default(),
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) with default options.
    /// Call [`crate::JobStore::migrate`] before use.
    pub async fn connect(url: &str) -> crate::Result<PgStore> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connects to `url` with `options`.
    pub async fn connect_with(url: &str, options: PgOptions) -> crate::Result<PgStore> {
        let mut connect = PgConnectOptions::from_str(url).ctx("parsing the PostgreSQL URL")?;
        if let Some(schema) = &options.schema {
            // The schema name goes into a server option, not into SQL text: restrict it to
            // plain identifiers so it cannot carry anything else.
            let plain = !schema.is_empty()
                && schema.len() <= 63
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return Err(Error::invalid("schema", "must be [a-z0-9_]{1,63}"));
            }
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect)
            .await
            .ctx("connecting to the PostgreSQL job store")?;
        Ok(PgStore {
            pool,
            config: options.config,
            sweep: Default::default(),
        })
    }

    pub(crate) const DIALECT: Dialect = Dialect::Postgres;

    /// Whether multi-row statements use numbered placeholders (see `placeholders`).
    pub(crate) const NUMBERED: bool = true;

    /// Row-lock suffix of a SELECT whose rows the transaction goes on to update.
    pub(crate) const LOCK_ROWS: &'static str = " FOR UPDATE";

    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn scan_reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn begin(&self) -> crate::Result<Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .ctx("starting a PostgreSQL transaction")
    }

    /// Two workers starting together must not both create the tables.
    pub(crate) async fn lock_migrations(conn: &mut PgConnection) -> crate::Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(conn)
            .await
            .ctx("taking the migration lock")?;
        Ok(())
    }

    /// Serializes claims that count running jobs per tenant: two workers claiming at once
    /// would otherwise both see room under a tenant's cap.
    pub(crate) async fn lock_claims(conn: &mut PgConnection) -> crate::Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK + 1)
            .execute(conn)
            .await
            .ctx("taking the claim lock")?;
        Ok(())
    }

    pub(crate) async fn close_pools(&self) {
        self.pool.close().await;
    }
}

/// A statement of this backend, as the shared store body builds it.
type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn statement<'q>(sql: impl sqlx::SqlSafeStr) -> Query<'q> {
    sqlx::query(sql)
}

crate::backend::impl_job_store!(
    PgStore,
    PgConnection,
    skip_locked = " FOR UPDATE SKIP LOCKED"
);
