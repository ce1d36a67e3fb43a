//! Pieces shared by both backends: validation, row decoding, backoff, limits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::Value;
use sqlx::Row as _;

use crate::error::{Error, Result};
use crate::types::{Job, JobState, NewJob, Progress};

/// Largest page `list` returns.
pub const MAX_PAGE: usize = 1000;
/// Largest number of jobs one `claim` call may take.
pub const MAX_CLAIM: usize = 1000;
/// Largest number of events one `events_since` call returns.
pub const MAX_EVENTS: usize = 1000;
/// Largest number of operation names a `claim` filter may list.
pub const MAX_OPERATIONS: usize = 64;
/// Longest id, tenant, operation, idempotency key or event kind, in bytes.
pub const MAX_NAME: usize = 256;
/// Largest serialized event body, in bytes (logs are chunked by the caller).
pub const MAX_EVENT_DATA: usize = 64 * 1024;
/// Longest progress message kept, in bytes (longer ones are truncated).
pub const MAX_PROGRESS_MESSAGE: usize = 1024;
/// Claims sweep expired leases and overdue jobs at most this often: the sweep costs two
/// statements, and under load claims come every millisecond or two.
pub(crate) const SWEEP_INTERVAL_MS: i64 = 100;

/// Remembers when this store instance last swept.
#[derive(Debug, Clone, Default)]
pub(crate) struct SweepGate(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl SweepGate {
    /// True (and the time is taken) when the last sweep is at least [`SWEEP_INTERVAL_MS`] old.
    pub(crate) fn due(&self, now: i64) -> bool {
        use std::sync::atomic::Ordering;
        let last = self.0.load(Ordering::Relaxed);
        now - last >= SWEEP_INTERVAL_MS
            && self
                .0
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Lost leases (a worker died mid-attempt) a job is not charged an attempt for.
pub(crate) const MAX_LOST_LEASES: i64 = 3;
/// How many expired leases / overdue jobs one `claim` call sweeps at most; the rest are
/// swept by the next call, so a backlog never makes one call unbounded.
pub(crate) const SWEEP_LIMIT: i64 = 500;
/// Rows per multi-row INSERT: 4 parameters each stays far below SQLite's and PostgreSQL's
/// bind parameter limits.
pub(crate) const EVENT_CHUNK: usize = 200;
/// Jobs per multi-row INSERT (12 parameters each).
pub(crate) const INSERT_CHUNK: usize = 250;

/// Tunables shared by both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Backoff before the first retry; doubles with every attempt.
    pub backoff_base: Duration,
    /// Upper bound of the retry backoff.
    pub backoff_cap: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
        }
    }
}

impl StoreConfig {
    /// Delay before the retry that follows attempt number `attempt` (1-based).
    ///
    /// Exponential with "equal jitter": half of the exponential delay is fixed and half is
    /// random, so retries of jobs that failed together spread out but never come back sooner
    /// than half the nominal delay.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.backoff_base.as_millis().min(u128::from(u64::MAX)) as u64;
        let cap = self.backoff_cap.as_millis().min(u128::from(u64::MAX)) as u64;
        let shift = attempt.saturating_sub(1).min(62);
        let nominal = base.saturating_mul(1u64 << shift).min(cap);
        let half = nominal / 2;
        let jitter = if nominal > half {
            rand::rng().random_range(0..=nominal - half)
        } else {
            0
        };
        Duration::from_millis(half + jitter)
    }
}

/// The current time in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration in milliseconds as the i64 the schema stores.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Columns of `jobs` in the order [`job_from_row`] reads them.
macro_rules! job_cols {
    () => {
        "seq, id, tenant, operation, payload, images, priority, max_attempts, timeout_ms, \
         deadline_ms, idempotency_key, cancellable, document, state, attempt, created_at, \
         updated_at, started_at, finished_at, run_after, lease_owner, lease_expires_at, \
         fencing_token, cancel_requested, last_error, usage, progress_done, progress_total, \
         progress_message"
    };
}
pub(crate) use job_cols;

/// A [`NewJob`] checked and converted to the column values the schema stores.
pub(crate) struct JobRow {
    pub id: String,
    pub tenant: String,
    pub operation: String,
    pub payload: String,
    pub images: String,
    pub priority: i64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub deadline_ms: Option<i64>,
    pub idempotency_key: Option<String>,
    pub cancellable: bool,
    pub document: String,
}

fn check_name(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_NAME} bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn json_text(field: &'static str, value: &Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::invalid(field, e.to_string()))
}

impl JobRow {
    pub(crate) fn new(job: &NewJob) -> Result<JobRow> {
        check_name("id", &job.id)?;
        check_name("tenant", &job.tenant)?;
        check_name("operation", &job.operation)?;
        if let Some(key) = &job.idempotency_key {
            check_name("idempotency_key", key)?;
        }
        if !(1..=10).contains(&job.priority) {
            return Err(Error::invalid("priority", "must be within 1..=10"));
        }
        if job.max_attempts == 0 {
            return Err(Error::invalid("max_attempts", "must be at least 1"));
        }
        let timeout_ms = i64::try_from(job.timeout_ms)
            .map_err(|_| Error::invalid("timeout_ms", "out of range"))?;
        Ok(JobRow {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            operation: job.operation.clone(),
            payload: json_text("payload", &job.payload)?,
            images: json_text("images", &job.images)?,
            priority: i64::from(job.priority),
            max_attempts: i64::from(job.max_attempts),
            timeout_ms,
            deadline_ms: job.deadline_ms,
            idempotency_key: job.idempotency_key.clone(),
            cancellable: job.cancellable,
            document: json_text("document", &job.document)?,
        })
    }
}

pub(crate) fn check_event(kind: &str, data: &Value) -> Result<String> {
    check_name("kind", kind)?;
    let text = json_text("data", data)?;
    if text.len() > MAX_EVENT_DATA {
        return Err(Error::invalid(
            "data",
            format!("event body larger than {MAX_EVENT_DATA} bytes"),
        ));
    }
    Ok(text)
}

/// Cuts `message` to at most [`MAX_PROGRESS_MESSAGE`] bytes on a character boundary.
pub(crate) fn truncate_message(message: &str) -> String {
    let mut end = message.len().min(MAX_PROGRESS_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

fn parse_json(column: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::corrupt(format!("column {column}: {e}")))
}

fn to_u<T: TryFrom<i64>>(column: &str, value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| Error::corrupt(format!("column {column}: {value} out of range")))
}

/// A row of either backend, read by column name into `T`.
pub(crate) trait Column<T> {
    fn column(&self, name: &'static str) -> Result<T>;
}

impl<T> Column<T> for sqlx::postgres::PgRow
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    fn column(&self, name: &'static str) -> Result<T> {
        self.try_get(name)
            .map_err(|e| Error::db("decoding a job row", e))
    }
}

impl<T: rusqlite::types::FromSql> Column<T> for crate::lite::Row {
    fn column(&self, name: &'static str) -> Result<T> {
        self.try_get(name)
            .map_err(|e| Error::db("decoding a job row", e))
    }
}

/// The column types the decoders below read.
pub(crate) trait Columns:
    Column<i64> + Column<Option<i64>> + Column<String> + Column<Option<String>> + Column<bool>
{
}

impl<R> Columns for R where
    R: Column<i64> + Column<Option<i64>> + Column<String> + Column<Option<String>> + Column<bool>
{
}

fn get<R: Column<T>, T>(row: &R, column: &'static str) -> Result<T> {
    row.column(column)
}

/// Decodes a row selected with [`job_cols`] (works for both backends).
pub(crate) fn job_from_row<R: Columns>(row: &R) -> Result<Job> {
    let state: String = get(row, "state")?;
    let state: JobState = state.parse().map_err(Error::corrupt)?;
    let last_error: Option<String> = get(row, "last_error")?;
    let usage: Option<String> = get(row, "usage")?;
    let progress = progress_from_row(row)?;
    Ok(Job {
        seq: get(row, "seq")?,
        id: get(row, "id")?,
        tenant: get(row, "tenant")?,
        operation: get(row, "operation")?,
        payload: parse_json("payload", &get::<R, String>(row, "payload")?)?,
        images: parse_json("images", &get::<R, String>(row, "images")?)?,
        priority: to_u("priority", get(row, "priority")?)?,
        max_attempts: to_u("max_attempts", get(row, "max_attempts")?)?,
        timeout_ms: to_u("timeout_ms", get(row, "timeout_ms")?)?,
        deadline_ms: get(row, "deadline_ms")?,
        idempotency_key: get(row, "idempotency_key")?,
        cancellable: get(row, "cancellable")?,
        document: parse_json("document", &get::<R, String>(row, "document")?)?,
        state,
        attempt: to_u("attempt", get(row, "attempt")?)?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        run_after: get(row, "run_after")?,
        lease_owner: get(row, "lease_owner")?,
        lease_expires_at: get(row, "lease_expires_at")?,
        fencing_token: get(row, "fencing_token")?,
        cancel_requested: get(row, "cancel_requested")?,
        last_error: last_error
            .map(|t| parse_json("last_error", &t))
            .transpose()?,
        usage: usage.map(|t| parse_json("usage", &t)).transpose()?,
        progress,
    })
}

/// The job a fresh INSERT stored, built from what was inserted instead of decoding the
/// whole row back (the batch paths would otherwise copy every column of every job).
pub(crate) fn queued_job(row: &JobRow, new: &NewJob, seq: i64, now: i64) -> Job {
    Job {
        seq,
        id: row.id.clone(),
        tenant: row.tenant.clone(),
        operation: row.operation.clone(),
        payload: new.payload.clone(),
        images: new.images.clone(),
        priority: new.priority,
        max_attempts: new.max_attempts,
        timeout_ms: new.timeout_ms,
        deadline_ms: new.deadline_ms,
        idempotency_key: new.idempotency_key.clone(),
        cancellable: new.cancellable,
        document: new.document.clone(),
        state: JobState::Queued,
        attempt: 0,
        created_at: now,
        updated_at: now,
        started_at: None,
        finished_at: None,
        run_after: now,
        lease_owner: None,
        lease_expires_at: None,
        fencing_token: 0,
        cancel_requested: false,
        last_error: None,
        usage: None,
        progress: None,
    }
}

/// Columns a completion returns: the ones that may differ from the lease's snapshot.
/// Everything else is immutable while the lease's fencing token matches.
macro_rules! completed_cols {
    () => {
        "id, state, updated_at, finished_at, run_after, last_error, usage, cancel_requested, \
         progress_done, progress_total, progress_message"
    };
}
pub(crate) use completed_cols;

/// The job after a completion: the lease's snapshot updated with a [`completed_cols`] row.
pub(crate) fn completed_job<R: Columns>(base: &Job, row: &R) -> Result<Job> {
    let state: String = get(row, "state")?;
    let last_error: Option<String> = get(row, "last_error")?;
    let usage: Option<String> = get(row, "usage")?;
    let mut job = base.clone();
    job.state = state.parse().map_err(Error::corrupt)?;
    job.updated_at = get(row, "updated_at")?;
    job.finished_at = get(row, "finished_at")?;
    job.run_after = get(row, "run_after")?;
    job.last_error = last_error
        .map(|t| parse_json("last_error", &t))
        .transpose()?;
    job.usage = usage.map(|t| parse_json("usage", &t)).transpose()?;
    job.cancel_requested = get(row, "cancel_requested")?;
    job.progress = progress_from_row(row)?;
    job.lease_owner = None;
    job.lease_expires_at = None;
    Ok(job)
}

fn progress_from_row<R: Columns>(row: &R) -> Result<Option<Progress>> {
    let done: Option<i64> = get(row, "progress_done")?;
    let total: Option<i64> = get(row, "progress_total")?;
    Ok(match (done, total) {
        (Some(done), Some(total)) => Some(Progress {
            done: to_u("progress_done", done)?,
            total: to_u("progress_total", total)?,
            message: get(row, "progress_message")?,
        }),
        _ => None,
    })
}

/// Decodes an event row (`seq, job_id, kind, data, at`).
pub(crate) fn event_from_row<R: Columns>(row: &R) -> Result<crate::types::Event> {
    Ok(crate::types::Event {
        seq: get(row, "seq")?,
        job_id: get(row, "job_id")?,
        kind: get(row, "kind")?,
        data: parse_json("data", &get::<R, String>(row, "data")?)?,
        at: get(row, "at")?,
    })
}

/// Decodes a result row (`job_id, output, usage, completed_at`).
pub(crate) fn result_from_row<R: Columns>(row: &R) -> Result<crate::types::JobResult> {
    Ok(crate::types::JobResult {
        job_id: get(row, "job_id")?,
        output: parse_json("output", &get::<R, String>(row, "output")?)?,
        usage: parse_json("usage", &get::<R, String>(row, "usage")?)?,
        completed_at: get(row, "completed_at")?,
    })
}

/// The body of a `state` event.
pub(crate) fn state_event(job: &Job, reason: &str) -> String {
    serde_json::json!({
        "state": job.state.as_str(),
        "attempt": job.attempt,
        "reason": reason,
    })
    .to_string()
}

/// `n` comma-separated bind placeholders for values `first..first + n`.
///
/// Numbered (`$1`) for PostgreSQL. SQLite gets anonymous `?`: binding (`lite.rs`) looks up
/// the name of every parameter of a statement, and SQLite finds a name by a linear scan, so
/// numbered placeholders make a multi-row INSERT quadratic in its row count. Anonymous ones
/// bind in text order, so a statement must not mix both styles.
pub(crate) fn placeholders(numbered: bool, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| {
            if numbered {
                format!("${i}")
            } else {
                "?".to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sorts claimed jobs the way the claim query ranked them (RETURNING keeps no order).
pub(crate) fn sort_claimed(jobs: &mut [Job]) {
    jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let config = StoreConfig {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(1000),
        };
        for _ in 0..200 {
            for (attempt, nominal) in [
                (1, 100),
                (2, 200),
                (3, 400),
                (4, 800),
                (5, 1000),
                (60, 1000),
            ] {
                let d = config.backoff(attempt).as_millis() as u64;
                assert!(
                    d >= nominal / 2 && d <= nominal,
                    "attempt {attempt}: {d} ms"
                );
            }
        }
        // Jitter actually varies.
        let samples: std::collections::HashSet<_> = (0..50).map(|_| config.backoff(4)).collect();
        assert!(samples.len() > 1);
        let zero = StoreConfig {
            backoff_base: Duration::ZERO,
            backoff_cap: Duration::ZERO,
        };
        assert_eq!(zero.backoff(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let s = "é".repeat(MAX_PROGRESS_MESSAGE);
        let t = truncate_message(&s);
        assert!(t.len() <= MAX_PROGRESS_MESSAGE && s.starts_with(&t) && !t.is_empty());
        assert_eq!(truncate_message("short"), "short");
    }

    #[test]
    fn placeholders_by_dialect() {
        assert_eq!(placeholders(true, 3, 3), "$3, $4, $5");
        assert_eq!(placeholders(false, 3, 3), "?, ?, ?");
        assert_eq!(placeholders(true, 1, 0), "");
    }

    #[test]
    fn states_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("done".parse::<JobState>().is_err());
        assert_eq!(JobState::TimedOut.as_str(), "timed_out");
    }
}
