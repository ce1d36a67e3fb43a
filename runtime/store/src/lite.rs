//! SQLite driven in-process: the few query calls the shared store body makes (`query(..)`,
//! `.bind(..)`, `.fetch_all / fetch_optional / fetch_one / execute(..)`, `row.try_get(..)`),
//! over rusqlite connections, run synchronously on the calling task.
//!
//! A SQLite statement here takes microseconds, and a write cycle is a dozen of them. A
//! driver that runs each statement on a connection thread of its own (as sqlx does) costs
//! two thread switches per statement, which measured about 60 µs each on the machines we
//! run on: most of every write cycle, on the one writer every job waits for. Running the
//! statements where the caller is removes that; the work is short and never waits on the
//! network. Readers never wait for a lock (WAL); the writer waits for other processes on
//! the same file without blocking a thread (see [`Writer::begin`]); WAL checkpoints run on
//! a thread of their own (see [`Checkpointer`]).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::types::{FromSql, ToSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Prepared statements kept per connection. The store's SQL texts are a few dozen shapes
/// times the batch sizes in use.
const STATEMENT_CACHE: usize = 512;
/// How long a reader waits for a lock (only WAL recovery takes one).
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer waits for another process's write lock before giving up.
const WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// SQL text: a constant or a string built from constant fragments and placeholders.
pub(crate) struct Sql<'q>(Cow<'q, str>);

impl From<&'static str> for Sql<'_> {
    fn from(s: &'static str) -> Self {
        Sql(Cow::Borrowed(s))
    }
}

impl From<sqlx::AssertSqlSafe<String>> for Sql<'_> {
    fn from(s: sqlx::AssertSqlSafe<String>) -> Self {
        Sql(Cow::Owned(s.0))
    }
}

impl<'q> From<sqlx::AssertSqlSafe<&'q str>> for Sql<'q> {
    fn from(s: sqlx::AssertSqlSafe<&'q str>) -> Self {
        Sql(Cow::Borrowed(s.0))
    }
}

/// A statement with its arguments. Placeholders are `$N` (argument N, as on PostgreSQL)
/// or `?`, bound in order.
pub(crate) struct Query<'q> {
    sql: Sql<'q>,
    args: Vec<Box<dyn ToSql + Send + Sync + 'q>>,
}

/// Starts a statement.
pub(crate) fn query<'q>(sql: impl Into<Sql<'q>>) -> Query<'q> {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// Where a statement runs: a connection already held (a transaction), the reader pool, the
/// reader pool on a blocking thread ([`Scan`]), or the writer outside a transaction.
pub(crate) enum Target<'a> {
    Conn(&'a mut Conn),
    Readers(&'a Readers),
    Scan(Arc<Database>),
    Writer(&'a Writer),
}

/// The readers, for statements whose cost grows with the table (listings, counts): they run
/// on tokio's blocking threads, so that a long scan does not hold up the tasks of a runtime
/// thread. Point reads stay on the calling task.
pub(crate) struct Scan(pub(crate) Arc<Database>);

impl From<Scan> for Target<'_> {
    fn from(s: Scan) -> Self {
        Target::Scan(s.0)
    }
}

impl<'a> From<&'a mut Conn> for Target<'a> {
    fn from(c: &'a mut Conn) -> Self {
        Target::Conn(c)
    }
}

impl<'a> From<&'a Readers> for Target<'a> {
    fn from(r: &'a Readers) -> Self {
        Target::Readers(r)
    }
}

impl<'a> From<&'a Writer> for Target<'a> {
    fn from(w: &'a Writer) -> Self {
        Target::Writer(w)
    }
}

impl<'q> Query<'q> {
    pub(crate) fn bind<T: ToSql + Send + Sync + 'q>(mut self, value: T) -> Self {
        self.args.push(Box::new(value));
        self
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all<'a>(
        self,
        target: impl Into<Target<'a>>,
    ) -> rusqlite::Result<Vec<Row>> {
        match target.into() {
            Target::Conn(conn) => conn.run(&self),
            Target::Readers(readers) => readers.run(&self),
            Target::Scan(db) => {
                let owned = self.into_owned()?;
                tokio::task::spawn_blocking(move || db.readers.run(&owned))
                    .await
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
            }
            Target::Writer(writer) => {
                let mut conn = writer.lock().await?;
                conn.run(&self)
            }
        }
    }

    /// The statement with its own copy of the text and of every argument.
    fn into_owned(self) -> rusqlite::Result<Query<'static>> {
        let mut args: Vec<Box<dyn ToSql + Send + Sync>> = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            let value = match arg.to_sql()? {
                ToSqlOutput::Owned(v) => v,
                ToSqlOutput::Borrowed(v) => Value::column_result(v)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                other => {
                    return Err(rusqlite::Error::ToSqlConversionFailure(
                        format!("unsupported argument {other:?}").into(),
                    ));
                }
            };
            args.push(Box::new(value));
        }
        Ok(Query {
            sql: Sql(Cow::Owned(self.sql.0.into_owned())),
            args,
        })
    }

    /// The first row, if any (the statement still runs to its end).
    pub(crate) async fn fetch_optional<'a>(
        self,
        target: impl Into<Target<'a>>,
    ) -> rusqlite::Result<Option<Row>> {
        Ok(self.fetch_all(target).await?.into_iter().next())
    }

    /// The first row; an error if there is none.
    pub(crate) async fn fetch_one<'a>(
        self,
        target: impl Into<Target<'a>>,
    ) -> rusqlite::Result<Row> {
        self.fetch_optional(target)
            .await?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)
    }

    /// Runs the statement for its effect.
    pub(crate) async fn execute<'a>(self, target: impl Into<Target<'a>>) -> rusqlite::Result<()> {
        self.fetch_all(target).await.map(drop)
    }
}

/// A row read out of a statement, by column name.
pub(crate) struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of `column`, converted (NULL only into an `Option`).
    pub(crate) fn try_get<T: FromSql>(&self, column: &str) -> rusqlite::Result<T> {
        let i = self
            .names
            .iter()
            .position(|n| n == column)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(column.to_owned()))?;
        T::column_result(ValueRef::from(&self.values[i])).map_err(|e| match e {
            rusqlite::types::FromSqlError::InvalidType => {
                rusqlite::Error::InvalidColumnType(i, column.to_owned(), self.values[i].data_type())
            }
            other => rusqlite::Error::FromSqlConversionFailure(
                i,
                self.values[i].data_type(),
                Box::new(other),
            ),
        })
    }
}

/// One SQLite connection.
pub(crate) struct Conn {
    db: Connection,
}

impl Conn {
    fn open(path: &Path, flags: OpenFlags, pragmas: &[(&str, &str)]) -> rusqlite::Result<Conn> {
        let db = Connection::open_with_flags(path, flags)?;
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        for (name, value) in pragmas {
            // Some pragmas answer with a row (journal_mode); a query reads and drops it.
            db.query_row(&format!("PRAGMA {name} = {value}"), [], |_| Ok(()))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(()),
                    e => Err(e),
                })?;
        }
        // The query planner stability guarantee: without it SQLite plans some statements
        // for the values bound to them (a bound LIMIT, a bound value compared with a
        // partial index's condition) and expires the prepared statement whenever another
        // value is bound, so the claim and write-cycle statements were parsed and planned
        // again on most executions. Our statements are written for the plans the schema's
        // indexes give; they need no per-value plans.
        db.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        Ok(Conn { db })
    }

    /// Runs `q` to its end and returns its rows.
    fn run(&mut self, q: &Query<'_>) -> rusqlite::Result<Vec<Row>> {
        let mut stmt = self.db.prepare_cached(&q.sql.0)?;
        let mut next = 0;
        for index in 1..=stmt.parameter_count() {
            // `$N` / `?N` name argument N; a bare `?` takes the next one. Unbound
            // parameters stay NULL.
            let n = match stmt.parameter_name(index) {
                Some(name) => name[1..]
                    .parse::<usize>()
                    .map_err(|_| rusqlite::Error::InvalidParameterName(name.to_owned()))?,
                None => {
                    next += 1;
                    next
                }
            };
            if let Some(value) = n.checked_sub(1).and_then(|i| q.args.get(i)) {
                stmt.raw_bind_parameter(index, value)?;
            }
        }
        let names: Arc<[String]> = stmt.column_names().map(str::to_owned).collect();
        let width = names.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(row.get::<_, Value>(i)?);
            }
            out.push(Row {
                names: names.clone(),
                values,
            });
        }
        Ok(out)
    }

    fn exec(&mut self, sql: &'static str) -> rusqlite::Result<()> {
        self.run(&query(sql)).map(drop)
    }
}

/// Read-only connections, opened as needed and kept for reuse. A statement holds one only
/// while it runs, so there are never more than the threads running statements.
pub(crate) struct Readers {
    path: PathBuf,
    pragmas: Vec<(&'static str, String)>,
    idle: std::sync::Mutex<Vec<Conn>>,
}

impl Readers {
    fn run(&self, q: &Query<'_>) -> rusqlite::Result<Vec<Row>> {
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match conn {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let rows = conn.run(q);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        rows
    }

    fn connect(&self) -> rusqlite::Result<Conn> {
        let pragmas: Vec<(&str, &str)> =
            self.pragmas.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let conn = Conn::open(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            &pragmas,
        )?;
        conn.db.busy_timeout(READ_BUSY_TIMEOUT)?;
        Ok(conn)
    }

    fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// The one write connection. Writers queue for it without blocking a thread.
pub(crate) struct Writer {
    conn: Arc<tokio::sync::Mutex<Option<Conn>>>,
}

/// The writer, held by one task.
pub(crate) struct Held(tokio::sync::OwnedMutexGuard<Option<Conn>>);

impl std::ops::Deref for Held {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.0.as_ref().expect("checked open in Writer::lock")
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Conn {
        self.0.as_mut().expect("checked open in Writer::lock")
    }
}

impl Writer {
    async fn lock(&self) -> rusqlite::Result<Held> {
        let guard = self.conn.clone().lock_owned().await;
        if guard.is_none() {
            return Err(closed());
        }
        Ok(Held(guard))
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`). Another process holding the write
    /// lock is waited for here, asleep, up to [`WRITE_LOCK_TIMEOUT`]; inside the
    /// transaction nothing waits for a lock again.
    pub(crate) async fn begin(&self) -> rusqlite::Result<Tx> {
        let mut held = self.lock().await?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match held.exec("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(Tx { held, open: true }),
                Err(e) if is_busy(&e) && started.elapsed() < WRITE_LOCK_TIMEOUT => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn close(&self) {
        self.conn.lock().await.take();
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn closed() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE),
        Some("the job store is closed".into()),
    )
}

/// A write transaction; rolled back if dropped before [`Tx::commit`].
pub(crate) struct Tx {
    held: Held,
    open: bool,
}

impl Tx {
    pub(crate) async fn commit(mut self) -> rusqlite::Result<()> {
        self.open = false;
        self.held.exec("COMMIT")
    }
}

impl std::ops::Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.held
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.held
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open && !self.held.db.is_autocommit() {
            // Nothing to report to: the caller is already returning an error.
            let _ = self.held.exec("ROLLBACK");
        }
    }
}

/// Copies committed WAL pages into the database file from a thread of its own, so that no
/// commit does it (SQLite's automatic checkpoint runs inside the commit that crosses the
/// threshold, and may take milliseconds and an fsync). `PASSIVE` never waits for the
/// writer or readers.
struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: PathBuf, pragmas: Vec<(&'static str, String)>) -> rusqlite::Result<Self> {
        let pragmas: Vec<(&str, &str)> = pragmas.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let conn = Conn::open(&path, OpenFlags::SQLITE_OPEN_READ_WRITE, &pragmas)?;
        conn.db.busy_timeout(Duration::ZERO)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut conn = conn;
                // Until stopped, or until the store is dropped (the sender with it).
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    let _ = conn.run(&query("PRAGMA wal_checkpoint(PASSIVE)"));
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer { stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The connections of one database file.
pub(crate) struct Database {
    pub(crate) writer: Writer,
    pub(crate) readers: Readers,
    checkpointer: std::sync::Mutex<Option<Checkpointer>>,
}

impl Database {
    /// Opens `path` (creating it if missing) with `pragmas` on every connection;
    /// `writer_pragmas` are set on the writer first (journal mode, synchronous, ...).
    pub(crate) fn open(
        path: &Path,
        pragmas: &[(&'static str, String)],
        writer_pragmas: &[(&'static str, String)],
    ) -> rusqlite::Result<Database> {
        let all: Vec<(&str, &str)> = writer_pragmas
            .iter()
            .chain(pragmas)
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        // The writer opens first: it creates the file and switches it to WAL, which the
        // read-only connections cannot do.
        let writer = Conn::open(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            &all,
        )?;
        // Lock waits are done asleep in `Writer::begin`, not inside SQLite.
        writer.db.busy_timeout(Duration::ZERO)?;
        let checkpointer = Checkpointer::start(path.to_owned(), pragmas.to_vec())?;
        Ok(Database {
            writer: Writer {
                conn: Arc::new(tokio::sync::Mutex::new(Some(writer))),
            },
            readers: Readers {
                path: path.to_owned(),
                pragmas: pragmas.to_vec(),
                idle: std::sync::Mutex::new(Vec::new()),
            },
            checkpointer: std::sync::Mutex::new(Some(checkpointer)),
        })
    }

    /// Closes every connection; statements after this fail.
    pub(crate) async fn close(&self) {
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some(c) = checkpointer {
            c.stop();
        }
        self.readers.close();
        self.writer.close().await;
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn count(db: &Database) -> i64 {
        let row = query("SELECT COUNT(*) AS n FROM t")
            .fetch_one(&db.readers)
            .await;
        row.expect("count").try_get("n").expect("n")
    }

    #[tokio::test]
    async fn the_writer_waits_for_another_process_and_rolls_back_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let db = Database::open(&path, &[], &[("journal_mode", "WAL".into())]).expect("open");
        let mut tx = db.writer.begin().await.expect("begin");
        tx.exec("CREATE TABLE t (x INTEGER)").expect("create");
        tx.commit().await.expect("commit");

        // Another connection (as another process would) holds the write lock for 100 ms.
        let other = Connection::open(&path).expect("other");
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            other.execute_batch("COMMIT").expect("commit other");
        });
        let started = Instant::now();
        let mut tx = db.writer.begin().await.expect("waits for the lock");
        assert!(
            started.elapsed() >= Duration::from_millis(80),
            "{:?}",
            started.elapsed()
        );
        query("INSERT INTO t VALUES ($1)")
            .bind(2i64)
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        release.join().expect("other thread");
        assert_eq!(count(&db).await, 2);

        // A transaction dropped without commit leaves nothing behind, and the writer free.
        let mut tx = db.writer.begin().await.expect("begin");
        query("INSERT INTO t VALUES (3)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        drop(tx);
        assert_eq!(count(&db).await, 2);
        let tx = db.writer.begin().await.expect("the writer is free again");
        tx.commit().await.expect("commit");

        // Scans run on the blocking pool with their own copy of the arguments.
        let key = String::from("x");
        let rows = query("SELECT x FROM t WHERE x >= $1 AND $2 = 'x' ORDER BY x")
            .bind(2i64)
            .bind(key.as_str())
            .fetch_all(Scan(Arc::new(db)))
            .await
            .expect("scan");
        let xs: Vec<i64> = rows.iter().map(|r| r.try_get("x").expect("x")).collect();
        assert_eq!(xs, [2]);
    }
}
