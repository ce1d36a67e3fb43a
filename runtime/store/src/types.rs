//! The plain data types the store takes and returns.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default priority of a job when the submitter gives none (1 = least urgent, 10 = most).
pub const DEFAULT_PRIORITY: u8 = 5;

/// A job as accepted by the HTTP layer, ready to be stored.
///
/// The caller has already validated the document; the store re-checks only what its own
/// invariants need (non-empty ids, priority range, integer ranges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Job id, unique across the whole store (already restricted to safe characters).
    pub id: String,
    /// Tenant that owns the job.
    pub tenant: String,
    /// Operation name the executor routes on (e.g. `inspect`).
    pub operation: String,
    /// Operation-specific input handed to the handler.
    pub payload: Value,
    /// Images the job is granted access to.
    pub images: Value,
    /// 1..=10, 10 = most urgent.
    pub priority: u8,
    /// How many times the job may be started (at least 1).
    pub max_attempts: u32,
    /// Wall-clock budget of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Absolute deadline (unix milliseconds) after which the job is timed out instead of run.
    pub deadline_ms: Option<i64>,
    /// Per-tenant idempotency key: resubmitting with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// Whether `cancel` may stop the job.
    pub cancellable: bool,
    /// The full accepted document, kept for audit.
    pub document: Value,
}

/// Lifecycle state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed (possibly not before `run_after`).
    Queued,
    /// Leased to an executor.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error and no attempts left (or a non-retryable error).
    Failed,
    /// Stopped by a cancel request.
    Cancelled,
    /// Ran past its timeout or deadline.
    TimedOut,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::TimedOut,
    ];

    /// The lowercase name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed_out",
        }
    }

    /// True once the job can no longer change state.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// Progress reported by the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done so far.
    pub done: u64,
    /// Total units expected.
    pub total: u64,
    /// Optional human-readable status line.
    pub message: Option<String>,
}

/// A stored job: everything in [`NewJob`] plus its lifecycle bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Store-assigned, strictly increasing insertion number (pagination and FIFO order).
    pub seq: i64,
    /// Job id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Operation name.
    pub operation: String,
    /// Handler input.
    pub payload: Value,
    /// Granted images.
    pub images: Value,
    /// 1..=10, 10 = most urgent.
    pub priority: u8,
    /// Maximum number of attempts.
    pub max_attempts: u32,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: u64,
    /// Absolute deadline in unix milliseconds.
    pub deadline_ms: Option<i64>,
    /// Idempotency key given at submission.
    pub idempotency_key: Option<String>,
    /// Whether the job may be cancelled.
    pub cancellable: bool,
    /// The accepted document, for audit.
    pub document: Value,
    /// Current state.
    pub state: JobState,
    /// Number of times the job has been started (claimed).
    pub attempt: u32,
    /// Submission time, unix ms.
    pub created_at: i64,
    /// Last change, unix ms.
    pub updated_at: i64,
    /// Start of the latest attempt, unix ms.
    pub started_at: Option<i64>,
    /// When the job reached a terminal state, unix ms.
    pub finished_at: Option<i64>,
    /// The job is not claimed before this time (retry backoff), unix ms.
    pub run_after: i64,
    /// Worker holding the lease, while running.
    pub lease_owner: Option<String>,
    /// When the current lease expires, unix ms.
    pub lease_expires_at: Option<i64>,
    /// Incremented on every claim; a lease is valid only while it matches.
    pub fencing_token: i64,
    /// Set when a cancel was requested while the job was running.
    pub cancel_requested: bool,
    /// Error of the latest failed attempt.
    pub last_error: Option<Value>,
    /// Resource usage reported with the latest completion.
    pub usage: Option<Value>,
    /// Latest progress report.
    pub progress: Option<Progress>,
}

/// The stored result of a succeeded job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job it belongs to.
    pub job_id: String,
    /// Handler output.
    pub output: Value,
    /// Resource usage of the successful attempt.
    pub usage: Value,
    /// Completion time, unix ms.
    pub completed_at: i64,
}

/// A claimed job: proof that this worker may run it, valid while `token` matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The job as it was when claimed.
    pub job: Job,
    /// Fencing token of this claim.
    pub token: i64,
    /// Worker that claimed the job.
    pub worker: String,
}

/// What `submit` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    /// The stored job (the earlier one when the idempotency key matched).
    pub job: Job,
    /// False when an existing job was returned because of the idempotency key.
    pub created: bool,
}

/// How an attempt ended, as reported by the executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler produced output.
    Succeeded {
        /// Handler output.
        output: Value,
        /// Resource usage.
        usage: Value,
    },
    /// The attempt failed.
    Failed {
        /// Error description.
        error: Value,
        /// Whether another attempt may succeed (the job is requeued if attempts remain).
        retryable: bool,
        /// Resource usage.
        usage: Value,
    },
    /// The attempt exceeded its timeout (terminal).
    TimedOut {
        /// Error description.
        error: Value,
        /// Resource usage.
        usage: Value,
    },
    /// The attempt stopped because a cancel was requested.
    Cancelled {
        /// Resource usage.
        usage: Value,
    },
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatStatus {
    /// Lease extended; keep going.
    Ok,
    /// Lease extended, but a cancel was requested: stop and complete with `Outcome::Cancelled`.
    CancelRequested,
    /// The lease is no longer ours (expired and reclaimed, or the job was finished): stop.
    Lost,
}

/// Answer to a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// The job was queued and is now cancelled.
    Cancelled,
    /// The job is running; the executor learns of the request through its heartbeat.
    Requested,
    /// The job had already finished in the given state.
    AlreadyFinished(JobState),
    /// The job was submitted as not cancellable.
    NotCancellable,
}

/// Filters and position for [`crate::JobStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Only this tenant's jobs (None = all tenants).
    pub tenant: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this operation.
    pub operation: Option<String>,
    /// Page size (clamped to 1..=[`crate::MAX_PAGE`]; 0 means the default of 50).
    pub limit: usize,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Numbers of live jobs (see [`crate::JobStore::live_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCounts {
    /// Jobs waiting to be claimed.
    pub queued: u64,
    /// Jobs running under a lease.
    pub running: u64,
    /// Queued jobs by tenant (tenants with none left out).
    pub queued_by_tenant: std::collections::BTreeMap<String, u64>,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// The jobs of this page.
    pub jobs: Vec<Job>,
    /// Cursor of the next page, None on the last page.
    pub next_cursor: Option<String>,
}

/// One entry of a job's event stream (state changes, progress, logs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Store-wide increasing sequence number; use it as the SSE event id.
    pub seq: i64,
    /// Job the event belongs to.
    pub job_id: String,
    /// `state`, `progress`, `cancel_requested`, or a caller-chosen kind such as `log`.
    pub kind: String,
    /// Event body.
    pub data: Value,
    /// When it was written, unix ms.
    pub at: i64,
}

/// A claim made as part of a [`Cycle`]: see [`crate::JobStore::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// Identity written into the leases.
    pub worker: String,
    /// Most jobs to lease.
    pub max: usize,
    /// Lease length.
    pub lease: std::time::Duration,
    /// Only these operations (None: any).
    pub operations: Option<Vec<String>>,
    /// Multi-tenant claim: `Some` takes only the listed tenants' jobs, round-robin across
    /// tenants (each tenant's own jobs by priority, then age; tenants running fewer jobs
    /// first), within each tenant's [`TenantCap`]. `None`: every job, plain
    /// priority-then-age order.
    pub tenant_caps: Option<Vec<TenantCap>>,
}

/// How many of a tenant's jobs a multi-tenant claim may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCap {
    /// The tenant.
    pub tenant: String,
    /// Most of its jobs running at once, counted over every worker (`u32::MAX`: none).
    pub max_running: u32,
    /// Most of its jobs this claim takes (`u32::MAX`: none), e.g. what is left of the
    /// tenant's share of this worker's slots.
    pub max_claim: u32,
}

impl TenantCap {
    /// A cap of `max_running` jobs at once and no other limit.
    pub fn running(tenant: impl Into<String>, max_running: u32) -> Self {
        TenantCap {
            tenant: tenant.into(),
            max_running,
            max_claim: u32::MAX,
        }
    }
}

/// Progress of a running job, fenced by its lease: see [`crate::JobStore::set_progress`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// The lease the job runs under.
    pub lease: Lease,
    /// Units done.
    pub done: u64,
    /// Units in all (0: unknown).
    pub total: u64,
    /// What is being done, if anything.
    pub message: Option<String>,
}

/// Everything one write cycle of a worker commits in a single transaction, in this order:
/// submissions, log events, progress, completions, then a claim (which sees the jobs just
/// submitted and the slots just freed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cycle {
    /// New jobs, as for [`crate::JobStore::submit_batch`].
    pub submits: Vec<NewJob>,
    /// Most jobs a tenant may have queued; a submission beyond it fails with
    /// `Error::QuotaExceeded` (checked inside the transaction, so exact).
    pub queue_caps: Vec<(String, u64)>,
    /// `(job_id, kind, data)` events, as for [`crate::JobStore::append_events`].
    pub events: Vec<(String, String, serde_json::Value)>,
    /// Progress reports.
    pub progress: Vec<ProgressUpdate>,
    /// Outcomes, as for [`crate::JobStore::complete_batch`].
    pub completions: Vec<(Lease, Outcome)>,
    /// Jobs to lease after everything above.
    pub claim: Option<ClaimRequest>,
}

impl Cycle {
    /// Whether the cycle has nothing to write or claim.
    pub fn is_empty(&self) -> bool {
        self.submits.is_empty()
            && self.events.is_empty()
            && self.progress.is_empty()
            && self.completions.is_empty()
            && self.claim.is_none()
    }
}

/// What a [`Cycle`] did; each list is in the order of the cycle's items.
#[derive(Debug, Default)]
pub struct CycleResult {
    /// One result per submitted job.
    pub submitted: Vec<crate::Result<Submitted>>,
    /// Events written.
    pub events_written: usize,
    /// One result per progress report (`LeaseLost` when the lease is gone).
    pub progress: Vec<crate::Result<()>>,
    /// One result per completion (`LeaseLost` when the lease is gone).
    pub completed: Vec<crate::Result<Job>>,
    /// Jobs leased by the claim.
    pub claimed: Vec<Lease>,
}
