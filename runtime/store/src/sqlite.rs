//! The SQLite backend: one file, one writer connection, a pool of readers.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::common::StoreConfig;
use crate::schema::Dialect;

/// How long a connection waits for a lock held by another connection or process.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Reader connections; WAL lets them read while the writer commits.
const READERS: u32 = 4;

/// A [`crate::JobStore`] in a SQLite file.
///
/// Durability: the file is in WAL mode with `synchronous = NORMAL`. A committed transaction
/// is in the WAL before `commit` returns, so a job accepted with 201/202 survives a crash or
/// `kill -9` of the worker process; only an operating-system crash or power loss may lose
/// the last transactions (the database stays consistent). Use [`SqliteStore::open_with`] and
/// `synchronous_full = true` where that matters too, at the price of an fsync per commit.
///
/// All writes go through a single connection: SQLite allows one writer at a time anyway,
/// and queuing in the pool is cheaper than retrying on `SQLITE_BUSY`. Write transactions
/// start with `BEGIN IMMEDIATE` so that a second process on the same file waits for the
/// lock instead of failing on upgrade.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    pub(crate) config: StoreConfig,
    pub(crate) sweep: crate::common::SweepGate,
}

/// Options of [`SqliteStore::open_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    /// fsync the WAL on every commit (`synchronous = FULL`): survive OS crashes too.
    pub synchronous_full: bool,
    /// Backoff settings.
    pub config: StoreConfig,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` with default options.
    /// Call [`crate::JobStore::migrate`] before use.
    pub async fn open(path: impl AsRef<Path>) -> crate::Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating if missing) the database file at `path`.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> crate::Result<SqliteStore> {
        let synchronous = if options.synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        let base = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // A 4 MiB page cache: pages beyond it are read through the memory map below at
            // little cost, while a larger cache (64 MiB was tried) made every commit slower:
            // SQLite's end-of-transaction page-cache truncation walks the cache's whole hash
            // table, on the one writer connection every job waits for.
            .pragma("cache_size", "-4096")
            .pragma("mmap_size", "268435456")
            .pragma("temp_store", "memory")
            // Checkpoint every ~32 MiB of WAL instead of 4 MiB: claims and completions
            // rewrite the same pages, and a rarer checkpoint copies each page once.
            .pragma("wal_autocheckpoint", "8192")
            .pragma("journal_size_limit", "67108864");
        // The writer opens first: it creates the file and switches it to WAL, which the
        // read-only connections cannot do.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_connect(|conn, _| Box::pin(stable_plans(conn)))
            .connect_with(base.clone().create_if_missing(true))
            .await
            .ctx("opening the SQLite job store")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .after_connect(|conn, _| Box::pin(stable_plans(conn)))
            .connect_with(base.read_only(true))
            .await
            .ctx("opening SQLite reader connections")?;
        Ok(SqliteStore {
            writer,
            reader,
            config: options.config,
            sweep: Default::default(),
        })
    }

    /// Opens a store from a `sqlite:` URL (`sqlite:path`, `sqlite://path`, `sqlite:///abs`).
    pub async fn open_url(url: &str) -> crate::Result<SqliteStore> {
        // Parse with sqlx so that the accepted URL forms are sqlx's own.
        let parsed = SqliteConnectOptions::from_str(url).ctx("parsing the SQLite URL")?;
        Self::open(parsed.get_filename()).await
    }

    pub(crate) const DIALECT: Dialect = Dialect::Sqlite;

    /// Whether multi-row statements use numbered placeholders (see `placeholders`).
    pub(crate) const NUMBERED: bool = false;

    /// Row-lock suffix of a SELECT; SQLite's single writer needs none.
    pub(crate) const LOCK_ROWS: &'static str = "";

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub(crate) async fn begin(&self) -> crate::Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .ctx("starting a SQLite write transaction")
    }

    /// `BEGIN IMMEDIATE` already serializes migrations on SQLite.
    pub(crate) async fn lock_migrations(_conn: &mut SqliteConnection) -> crate::Result<()> {
        Ok(())
    }

    /// `BEGIN IMMEDIATE` already serializes claims on SQLite.
    pub(crate) async fn lock_claims(_conn: &mut SqliteConnection) -> crate::Result<()> {
        Ok(())
    }

    pub(crate) async fn close_pools(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Turns on SQLite's query planner stability guarantee for `conn`.
///
/// Without it SQLite plans some statements for the values bound to them (a bound `LIMIT`, a
/// bound value compared with a partial index's condition) and marks the prepared statement
/// expired whenever another value is bound, so the cached statements of the claim and of
/// the write cycle were parsed and planned again on most executions, on the single writer
/// connection every job waits for. Our statements are written for the plans the schema's
/// indexes give; they need no per-value plans.
async fn stable_plans(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut enabled: std::ffi::c_int = 0;
    // SAFETY: `db` is the open connection handle, locked away from sqlx's worker thread
    // while `handle` lives; SQLITE_DBCONFIG_ENABLE_QPSG takes an int (1: on) and an int*
    // that receives the new setting, both valid for the call.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            &mut enabled as *mut std::ffi::c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK || enabled != 1 {
        return Err(sqlx::Error::Configuration(
            format!("enabling the query planner stability guarantee failed (code {rc})").into(),
        ));
    }
    Ok(())
}

crate::backend::impl_job_store!(SqliteStore, Sqlite, SqliteConnection, skip_locked = "");
