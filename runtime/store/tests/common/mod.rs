//! Test harness: the same test body runs against SQLite (a temp file) and PostgreSQL (a
//! fresh schema per test, so tests run in parallel).

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use guestkit_store::{
    JobStore, NewJob, PgOptions, PgStore, SqliteOptions, SqliteStore, StoreConfig,
};
use serde_json::json;
use sqlx::Connection;

/// Where the PostgreSQL tests connect unless `GUESTKIT_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct Harness {
    pub kind: Kind,
    pub store: Arc<dyn JobStore>,
    config: StoreConfig,
    dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

pub fn pg_url() -> String {
    std::env::var("GUESTKIT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn unique_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "gkt_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn pg_admin(sql: String) {
    let url = pg_url();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {url} ({e}); start it or set \
             GUESTKIT_TEST_POSTGRES_URL — the PostgreSQL tests do not skip"
        )
    });
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("PostgreSQL admin statement");
}

impl Harness {
    pub async fn new(kind: Kind) -> Harness {
        Self::with_config(kind, StoreConfig::default()).await
    }

    pub async fn with_config(kind: Kind, config: StoreConfig) -> Harness {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = open_sqlite(&dir, config).await;
                Harness {
                    kind,
                    store,
                    config,
                    dir: Some(dir),
                    schema: None,
                }
            }
            Kind::Postgres => {
                let schema = unique_schema();
                pg_admin(format!("CREATE SCHEMA {schema}")).await;
                let store = open_pg(&schema, config).await;
                Harness {
                    kind,
                    store,
                    config,
                    dir: None,
                    schema: Some(schema),
                }
            }
        }
    }

    /// Closes the store and opens it again on the same file / schema.
    pub async fn reopen(&mut self) {
        self.store.close().await;
        self.store = match (&self.dir, &self.schema) {
            (Some(dir), _) => open_sqlite(dir, self.config).await,
            (_, Some(schema)) => open_pg(schema, self.config).await,
            _ => unreachable!("a harness has a dir or a schema"),
        };
    }

    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("jobs.db"))
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some(schema) = self.schema {
            pg_admin(format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }
}

async fn open_sqlite(dir: &tempfile::TempDir, config: StoreConfig) -> Arc<dyn JobStore> {
    let options = SqliteOptions {
        synchronous_full: false,
        config,
    };
    let store = SqliteStore::open_with(dir.path().join("jobs.db"), options)
        .await
        .expect("open sqlite store");
    store.migrate().await.expect("migrate sqlite");
    Arc::new(store)
}

async fn open_pg(schema: &str, config: StoreConfig) -> Arc<dyn JobStore> {
    let options = PgOptions {
        schema: Some(schema.to_owned()),
        max_connections: 12,
        config,
    };
    let store = PgStore::connect_with(&pg_url(), options)
        .await
        .expect("connect postgres store");
    store.migrate().await.expect("migrate postgres");
    Arc::new(store)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A valid job with defaults; tests change the fields they care about.
pub fn job(id: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        tenant: "acme".to_owned(),
        operation: "inspect".to_owned(),
        payload: json!({ "id": id, "deep": [1, 2, 3] }),
        images: json!([{ "path": "disk.qcow2", "format": "qcow2" }]),
        priority: 5,
        max_attempts: 3,
        timeout_ms: 60_000,
        deadline_ms: None,
        idempotency_key: None,
        cancellable: true,
        document: json!({ "version": "1.0", "job_id": id }),
    }
}

pub const LEASE: Duration = Duration::from_secs(60);
