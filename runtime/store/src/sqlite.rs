//! The SQLite backend: one file, one writer connection, a pool of readers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::StoreConfig;
use crate::lite::{Database, Readers, Tx, Writer};
use crate::schema::Dialect;

pub(crate) use crate::lite::{Query, query as statement};

/// A [`crate::JobStore`] in a SQLite file.
///
/// Durability: the file is in WAL mode with `synchronous = NORMAL`. A committed transaction
/// is in the WAL before `commit` returns, so a job accepted with 201/202 survives a crash or
/// `kill -9` of the worker process; only an operating-system crash or power loss may lose
/// the last transactions (the database stays consistent). Use [`SqliteStore::open_with`] and
/// `synchronous_full = true` where that matters too, at the price of an fsync per commit.
///
/// All writes go through a single connection: SQLite allows one writer at a time anyway,
/// and queuing for it is cheaper than retrying on `SQLITE_BUSY`. Write transactions start
/// with `BEGIN IMMEDIATE` so that a second process on the same file waits for the lock
/// instead of failing on upgrade. Statements run in-process on the calling task (see
/// `lite.rs`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Database>,
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
            "FULL"
        } else {
            "NORMAL"
        };
        let pragmas = [
            ("foreign_keys", "ON".to_owned()),
            // A 1 MiB page cache: pages beyond it are read through the memory map below at
            // little cost, while a larger cache made commits and reads slower: SQLite walks
            // a cache's whole hash table when a transaction ends on the writer, and when a
            // reader finds the file changed (64 MiB and 4 MiB were tried; 4 MiB cost the
            // quiet tenant of the fairness bench 10% under flood).
            ("cache_size", "-1024".to_owned()),
            ("mmap_size", "268435456".to_owned()),
            ("temp_store", "MEMORY".to_owned()),
        ];
        let writer_pragmas = [
            ("journal_mode", "WAL".to_owned()),
            ("synchronous", synchronous.to_owned()),
            // Checkpoints are the checkpointer thread's (see `lite.rs`); this is only the
            // backstop should it fall behind (256 MiB of WAL).
            ("wal_autocheckpoint", "65536".to_owned()),
            ("journal_size_limit", "67108864".to_owned()),
        ];
        let path = path.as_ref().to_owned();
        let db =
            tokio::task::spawn_blocking(move || Database::open(&path, &pragmas, &writer_pragmas))
                .await
                .map_err(|e| crate::Error::db("opening the SQLite job store", e))?
                .ctx("opening the SQLite job store")?;
        Ok(SqliteStore {
            db: Arc::new(db),
            config: options.config,
            sweep: Default::default(),
        })
    }

    /// Opens a store from a `sqlite:` URL (`sqlite:path`, `sqlite://path`, `sqlite:///abs`;
    /// a `?query` is not accepted).
    pub async fn open_url(url: &str) -> crate::Result<SqliteStore> {
        Self::open(url_path(url)?).await
    }

    pub(crate) const DIALECT: Dialect = Dialect::Sqlite;

    /// Whether multi-row statements use numbered placeholders (see `placeholders`).
    pub(crate) const NUMBERED: bool = false;

    /// Row-lock suffix of a SELECT; SQLite's single writer needs none.
    pub(crate) const LOCK_ROWS: &'static str = "";

    pub(crate) fn writer(&self) -> &Writer {
        &self.db.writer
    }

    pub(crate) fn reader(&self) -> &Readers {
        &self.db.readers
    }

    pub(crate) fn scan_reader(&self) -> crate::lite::Scan {
        crate::lite::Scan(self.db.clone())
    }

    pub(crate) async fn begin(&self) -> crate::Result<Tx> {
        self.db
            .writer
            .begin()
            .await
            .ctx("starting a SQLite write transaction")
    }

    /// `BEGIN IMMEDIATE` already serializes migrations on SQLite.
    pub(crate) async fn lock_migrations(_conn: &mut crate::lite::Conn) -> crate::Result<()> {
        Ok(())
    }

    /// `BEGIN IMMEDIATE` already serializes claims on SQLite.
    pub(crate) async fn lock_claims(_conn: &mut crate::lite::Conn) -> crate::Result<()> {
        Ok(())
    }

    pub(crate) async fn close_pools(&self) {
        self.db.close().await;
    }
}

/// The file a `sqlite:` URL names.
fn url_path(url: &str) -> crate::Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| crate::Error::invalid("url", "must start with sqlite:"))?;
    if rest.is_empty() || rest.contains('?') {
        return Err(crate::Error::invalid(
            "url",
            "must name a file (sqlite:PATH), without ?options",
        ));
    }
    Ok(PathBuf::from(rest))
}

crate::backend::impl_job_store!(SqliteStore, crate::lite::Conn, skip_locked = "");

#[cfg(test)]
mod tests {
    use super::url_path;
    use std::path::PathBuf;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            url_path("sqlite:jobs.db").unwrap(),
            PathBuf::from("jobs.db")
        );
        assert_eq!(
            url_path("sqlite://jobs.db").unwrap(),
            PathBuf::from("jobs.db")
        );
        assert_eq!(
            url_path("sqlite:///var/x.db").unwrap(),
            PathBuf::from("/var/x.db")
        );
        assert!(url_path("sqlite:").is_err());
        assert!(url_path("sqlite:x.db?mode=ro").is_err());
        assert!(url_path("postgres://x").is_err());
    }
}
