//! Durable job store of the guestkit worker.
//!
//! Jobs accepted over HTTP are committed here before the submitter gets its 201/202, claimed
//! by executors under leases with fencing tokens, retried with backoff, cancelled, and
//! completed together with their result in one transaction. Two backends share one schema
//! and the same SQL: [`SqliteStore`] (one node, one file) and [`PgStore`] (many workers).
//!
//! The runtime holds an `Arc<dyn JobStore>` built by [`open_store`].

mod backend;
mod common;
mod error;
mod lite;
mod pg;
mod schema;
mod sqlite;
mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use common::{
    MAX_CLAIM, MAX_EVENT_DATA, MAX_EVENTS, MAX_NAME, MAX_OPERATIONS, MAX_PAGE,
    MAX_PROGRESS_MESSAGE, StoreConfig,
};
pub use error::{Error, Result};
pub use pg::{PgOptions, PgStore};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use types::{
    CancelOutcome, ClaimRequest, Cycle, CycleResult, DEFAULT_PRIORITY, Event, HeartbeatStatus, Job,
    JobResult, JobState, Lease, ListQuery, LiveCounts, NewJob, Outcome, Page, Progress,
    ProgressUpdate, Submitted, TenantCap,
};

/// A durable job queue with leases, retries, cancellation, results and event streams.
///
/// Tenant arguments are `Option<&str>`: `Some(t)` restricts the lookup to tenant `t` (a job
/// of another tenant is reported as absent), `None` is the operator's view of every tenant.
/// Job ids are unique across the whole store.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Creates or upgrades the schema; safe to call from several processes at once.
    async fn migrate(&self) -> Result<()>;

    /// Stores a new queued job; durable once this returns.
    ///
    /// A known `(tenant, idempotency_key)` returns the existing job with `created = false`;
    /// an id already in use fails with `Error::Conflict { field: "id" }`.
    async fn submit(&self, job: NewJob) -> Result<Submitted>;

    /// Stores many jobs in one transaction. Each job gets its own result (conflicts and
    /// invalid jobs do not abort the others); a database error aborts the whole batch.
    async fn submit_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Submitted>>>;

    /// Reads one job.
    async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Option<Job>>;

    /// Lists jobs newest first, with stable keyset pagination.
    async fn list(&self, query: ListQuery) -> Result<Page>;

    /// Leases up to `max` runnable jobs to `worker` for `lease`: highest priority first,
    /// then oldest, only jobs whose backoff has elapsed, optionally only some operations.
    ///
    /// Before claiming, jobs past their deadline are moved to `timed_out`, and running jobs
    /// whose lease expired (a crashed worker) are requeued (or finished, if they have no
    /// attempts left, were cancelled, or are past their deadline). Every claim counts an
    /// attempt and increments the job's fencing token.
    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        operations: Option<&[String]>,
    ) -> Result<Vec<Lease>>;

    /// Extends a lease to now + `extend` and reports whether a cancel was requested.
    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<HeartbeatStatus>;

    /// Records how an attempt ended, with the result row, in one transaction, only while
    /// the lease's fencing token still matches (else `Error::LeaseLost` and nothing is
    /// written). A retryable failure with attempts left is requeued after a backoff.
    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<Job>;

    /// [`JobStore::complete`] for many leases in one transaction; each gets its own result
    /// (a lost lease does not abort the others).
    async fn complete_batch(&self, items: Vec<(Lease, Outcome)>) -> Result<Vec<Result<Job>>>;

    /// Cancels a queued job, or asks the executor of a running one to stop.
    async fn cancel(&self, tenant: Option<&str>, id: &str) -> Result<CancelOutcome>;

    /// The result of a succeeded job (None for any other state).
    async fn result(&self, tenant: Option<&str>, id: &str) -> Result<Option<JobResult>>;

    /// Records progress of a running job (fenced like `complete`).
    async fn set_progress(
        &self,
        lease: &Lease,
        done: u64,
        total: u64,
        message: Option<&str>,
    ) -> Result<()>;

    /// Appends an event (e.g. a log line) to a job's stream; returns its sequence number.
    async fn append_event(&self, job_id: &str, kind: &str, data: Value) -> Result<i64>;

    /// Appends many `(job_id, kind, data)` events in one transaction (log lines of many
    /// jobs at once). Events of unknown jobs and invalid events are skipped; returns how
    /// many were written.
    async fn append_events(&self, events: Vec<(String, String, Value)>) -> Result<usize>;

    /// Events of a job with a sequence number above `after_seq`, oldest first, at most
    /// `limit` (clamped to 1..=[`MAX_EVENTS`]).
    async fn events_since(&self, job_id: &str, after_seq: i64, limit: usize) -> Result<Vec<Event>>;

    /// Gives a job back on graceful shutdown: queued again, the attempt not counted.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Number of jobs in every state (all states present, zero included). Walks every job
    /// stored: for tools and tests, not for a hot path.
    async fn counts(&self) -> Result<BTreeMap<JobState, u64>>;

    /// Numbers of queued jobs (in all and by tenant) and running jobs, counted through
    /// their partial indexes (so the cost follows the live jobs, not every job ever stored).
    async fn live_counts(&self) -> Result<LiveCounts>;

    /// Commits a worker's whole write cycle in one transaction: submissions, events,
    /// progress, completions and a claim. Each item gets the result its own method would
    /// give (a conflict, an invalid job or a lost lease affects that item alone); a
    /// database error aborts the whole cycle and nothing of it is written.
    ///
    /// One transaction instead of one per kind is what lets a worker on SQLite (one writer
    /// at a time) accept, start and finish thousands of short jobs per second: a job
    /// submitted here can be claimed in the same commit that stores it.
    async fn write_cycle(&self, cycle: &Cycle) -> Result<CycleResult>;

    /// Closes the connections; pending operations finish first.
    async fn close(&self);
}

/// Opens the store named by `url` and migrates it.
///
/// `postgres://...` or `postgresql://...` selects PostgreSQL; `sqlite:...` or a plain file
/// path selects SQLite.
pub async fn open_store(url: &str) -> Result<Arc<dyn JobStore>> {
    let store: Arc<dyn JobStore> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(PgStore::connect(url).await?)
        } else if url.starts_with("sqlite:") {
            Arc::new(SqliteStore::open_url(url).await?)
        } else if url.contains("://") {
            return Err(Error::invalid(
                "url",
                "expected postgres://, sqlite: or a file path",
            ));
        } else {
            Arc::new(SqliteStore::open(url).await?)
        };
    store.migrate().await?;
    Ok(store)
}
