//! The executor: claims jobs from the store under leases, runs each in a fresh sandbox
//! instance, and writes outcomes back.
//!
//! - Up to `max_concurrent` jobs run at once (a semaphore); claims take as many jobs as
//!   there are free slots, in one store call.
//! - One writer task does every write of the hot path: each cycle commits whatever piled up
//!   since the last one (jobs submitted here, log lines, progress, completions) in one
//!   transaction, together with a claim for the free slots (group commit). A job submitted
//!   here is stored and claimed by one commit and completed by the next, which is what lets
//!   short jobs run thousands per second on SQLite's single writer.
//! - One heartbeat task renews the leases of every running job and learns of cancel requests
//!   made on other workers; a cancel made on this worker stops the job at once.
//! - On shutdown, claiming stops, running jobs get a grace period to finish, and the rest
//!   are released back to the queue without counting the attempt.

use crate::engine::{CancelToken, JobFailure, Sandbox};
use crate::grants::{self, ImagePolicy};
use crate::limits::JobLimits;
use crate::metrics::Metrics;
use crate::recent::RecentResults;
use crate::registry::Registry;
use crate::tenants::Tenants;
use crate::watchers::{JobWatch, JobWatchers};
use guestkit_host_api::{DiskCtx, Job as WitJob, LogLevel, Observer};
use guestkit_store::{
    ClaimRequest, Cycle, CycleResult, Error as StoreError, HeartbeatStatus, Job, JobResult,
    JobStore, Lease, NewJob, Outcome, ProgressUpdate, Submitted,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most jobs one claim handles.
const BATCH: usize = 256;
/// Most messages one write cycle takes.
const CYCLE_MAX: usize = 1024;
/// Most log/progress events queued for writing before new ones are dropped.
const EVENT_QUEUE: usize = 16_384;

/// How the executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Identity written into leases (unique per process).
    pub worker_id: String,
    /// Jobs run at once.
    pub max_concurrent: usize,
    /// Lease length; renewed every third of it while the job runs.
    pub lease: Duration,
    /// How often to look for work when nothing woke the executor (other workers' submits,
    /// retry backoffs).
    pub poll_interval: Duration,
    /// Limits of every job; the wall clock is replaced by the job's own timeout/deadline.
    pub limits: JobLimits,
    /// Where granted images may live (single-tenant; tenants have their own roots).
    pub images: ImagePolicy,
    /// The tenants: their image roots, per-job limits and quotas.
    pub tenants: Arc<Tenants>,
    /// Handler log lines at this level or above are stored as job events (and streamed);
    /// lower ones go to this process's own log only.
    pub job_log_level: LogLevel,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            worker_id: default_worker_id(),
            max_concurrent: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            limits: JobLimits::default(),
            images: ImagePolicy::default(),
            tenants: Arc::new(Tenants::single(ImagePolicy::default())),
            job_log_level: LogLevel::Info,
        }
    }
}

/// `host-pid-random`: unique per process, readable in leases and logs.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &nonce[nonce.len() - 6..]
    )
}

/// Why a running job is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// A user asked to cancel it.
    Cancel,
    /// The worker is shutting down: give the job back.
    Shutdown,
    /// Our lease is gone (another worker may run it now): stop without writing anything.
    LeaseLost,
}

/// A job running on this worker.
struct Active {
    lease: Lease,
    cancel: CancelToken,
    reason: Mutex<Option<StopReason>>,
}

impl Active {
    fn stop(&self, reason: StopReason) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.cancel.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason.lock().ok().and_then(|r| *r)
    }
}

/// What a handler reported, on its way to the store.
enum EventMsg {
    Log {
        job_id: String,
        level: LogLevel,
        message: String,
    },
    Progress {
        lease: Box<Lease>,
        done: u64,
        total: u64,
        message: String,
    },
    /// How an attempt ended; written after the job's log lines, so an event stream never
    /// shows the end before the last log line. `done` fires once it is durable. The job's
    /// slot comes along: the writer frees it once the outcome is durable, or hands it
    /// straight to a job claimed by the same cycle.
    Complete {
        lease: Box<Lease>,
        outcome: Outcome,
        slot: tokio::sync::OwnedSemaphorePermit,
        done: oneshot::Sender<()>,
    },
    /// Answered once every message sent before it is written.
    Flush(oneshot::Sender<()>),
    /// A job submitted to this worker, to store (and claim, if a slot is free).
    Submit {
        job: Box<NewJob>,
        reply: oneshot::Sender<Result<Submitted, SubmitError>>,
    },
}

/// Why a submission was not stored.
#[derive(Debug)]
pub enum SubmitError {
    /// The store refused this job (conflict, invalid field).
    Store(StoreError),
    /// The store could not be written; nothing of the job was kept.
    Unavailable(String),
    /// The worker is shutting down.
    ShuttingDown,
}

struct Inner {
    store: Arc<dyn JobStore>,
    registry: Arc<Registry>,
    sandbox: Arc<Sandbox>,
    metrics: Arc<Metrics>,
    config: ExecutorConfig,
    slots: Arc<Semaphore>,
    wake: Notify,
    stopping: AtomicBool,
    active: Mutex<HashMap<String, Arc<Active>>>,
    events: mpsc::Sender<EventMsg>,
    watchers: Arc<JobWatchers>,
    recent: RecentResults,
}

/// A running executor. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// The executor's background tasks; await [`Executor::shutdown`] before dropping.
pub struct ExecutorTasks {
    heartbeat: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Executor {
    /// Starts claiming and running jobs.
    pub fn start(
        store: Arc<dyn JobStore>,
        registry: Arc<Registry>,
        sandbox: Arc<Sandbox>,
        metrics: Arc<Metrics>,
        config: ExecutorConfig,
    ) -> (Executor, ExecutorTasks) {
        let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            store,
            registry,
            sandbox,
            metrics,
            config,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            active: Mutex::new(HashMap::new()),
            events,
            watchers: Arc::default(),
            recent: RecentResults::default(),
        });
        inner
            .metrics
            .pool_slots
            .with_label_values(&["capacity"])
            .set(i64::from(inner.sandbox.config().pool_slots));
        let tasks = ExecutorTasks {
            heartbeat: tokio::spawn(heartbeat_loop(inner.clone())),
            writer: tokio::spawn(write_loop(inner.clone(), event_rx)),
        };
        (Executor { inner }, tasks)
    }

    /// Tells the executor new work may be waiting in the store.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stores a job submitted to this worker: durable when this returns. The job is
    /// written by the next write cycle, which also claims it when a slot is free (the
    /// returned job is then already `running`).
    pub async fn submit(&self, job: NewJob) -> Result<Submitted, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let msg = EventMsg::Submit {
            job: Box::new(job),
            reply,
        };
        self.inner
            .events
            .send(msg)
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        answer.await.map_err(|_| SubmitError::ShuttingDown)?
    }

    /// Stops a job running on this worker after its cancel was recorded in the store.
    /// Returns false when the job does not run here (its worker learns by heartbeat).
    pub fn cancel_local(&self, job_id: &str) -> bool {
        let active = self
            .inner
            .active
            .lock()
            .ok()
            .and_then(|a| a.get(job_id).cloned());
        match active {
            Some(active) => {
                active.stop(StopReason::Cancel);
                true
            }
            None => false,
        }
    }

    /// Subscribes to changes of a job run on this worker (state, progress, events).
    pub fn watch(&self, job_id: &str) -> JobWatch {
        self.inner.watchers.watch(job_id)
    }

    /// A job running on this worker, as it was when claimed, if it belongs to `tenant`
    /// (any tenant for `None`).
    pub fn running_job(&self, tenant: Option<&str>, job_id: &str) -> Option<Job> {
        let map = self.inner.active.lock().ok()?;
        let job = &map.get(job_id)?.lease.job;
        match tenant {
            Some(t) if job.tenant != t => None,
            _ => Some(job.clone()),
        }
    }

    /// Jobs this worker finished recently (answers for waiting clients).
    pub fn recent(&self) -> &RecentResults {
        &self.inner.recent
    }

    /// Wakes the watchers of a job (used by the API for changes it makes itself).
    pub fn signal(&self, job_id: &str) {
        self.inner.watchers.signal(job_id);
    }

    /// Jobs running on this worker now.
    pub fn running(&self) -> usize {
        self.inner.active.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Instance pool slots in use (jobs and `describe` calls).
    pub fn sandbox_slots_in_use(&self) -> u32 {
        self.inner.sandbox.slots_in_use()
    }

    /// The executor's settings.
    pub fn config(&self) -> &ExecutorConfig {
        &self.inner.config
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Graceful shutdown: stop claiming, let running jobs finish for up to `grace`, give
    /// the rest back to the queue, and flush every completion and event.
    pub async fn shutdown(&self, tasks: ExecutorTasks, grace: Duration) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        inner.wake.notify_one();
        // A write cycle already under way may still claim jobs (they are registered as
        // running here when it commits); the cycles after this flush claim nothing.
        flush(inner).await;
        // Waiting on the job slots themselves would queue this task among the writer's
        // own slot requests for the jobs that cycle claimed, and neither would get them.
        let until = tokio::time::Instant::now() + grace;
        if !wait_idle(inner, Some(until)).await {
            let running: Vec<Arc<Active>> = inner
                .active
                .lock()
                .map(|a| a.values().cloned().collect())
                .unwrap_or_default();
            tracing::info!(
                jobs = running.len(),
                "grace period over; releasing running jobs"
            );
            for active in running {
                active.stop(StopReason::Shutdown);
            }
            wait_idle(inner, None).await;
        }
        tasks.heartbeat.abort();
        // Every job task has queued its completion; wait until all of it is written.
        flush(inner).await;
        tasks.writer.abort();
    }
}

/// Waits until the writer has committed everything sent to it before this call.
async fn flush(inner: &Inner) {
    let (tx, rx) = oneshot::channel();
    if inner.events.send(EventMsg::Flush(tx)).await.is_ok() {
        let _ = rx.await;
    }
}

/// Waits until no job is running here (each one's outcome durable), or `until` passes;
/// says whether it is so.
async fn wait_idle(inner: &Inner, until: Option<tokio::time::Instant>) -> bool {
    loop {
        let idle = inner.active.lock().map(|a| a.is_empty()).unwrap_or(true);
        if idle {
            return true;
        }
        if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends a handler's logs and progress to the event writer.
struct JobObserver {
    lease: Lease,
    events: mpsc::Sender<EventMsg>,
    /// `LogLevel::rank` of the least severe line stored.
    min_level: u8,
}

impl JobObserver {
    /// Never blocks the handler: when the writer is this far behind, the report is dropped
    /// (the host already caps log lines per job).
    fn send(&self, msg: EventMsg) {
        let _ = self.events.try_send(msg);
    }
}

impl Observer for JobObserver {
    fn log(&self, level: LogLevel, message: &str) {
        if level.rank() < self.min_level {
            tracing::debug!(target: "handler", job = %self.lease.job.id, %level, "{message}");
            return;
        }
        self.send(EventMsg::Log {
            job_id: self.lease.job.id.clone(),
            level,
            message: message.to_string(),
        });
    }

    fn progress(&self, done: u64, total: u64, message: &str) {
        self.send(EventMsg::Progress {
            lease: Box::new(self.lease.clone()),
            done,
            total,
            message: message.to_string(),
        });
    }
}

/// Registers a claimed job as running here (before anyone hears it was claimed, so a
/// client asking right after its submit finds it).
fn activate(inner: &Inner, lease: Lease) -> Arc<Active> {
    let active = Arc::new(Active {
        lease,
        cancel: CancelToken::new(),
        reason: Mutex::new(None),
    });
    if let Ok(mut map) = inner.active.lock() {
        map.insert(active.lease.job.id.clone(), active.clone());
    }
    active
}

async fn run_job(inner: &Arc<Inner>, active: Arc<Active>, slot: tokio::sync::OwnedSemaphorePermit) {
    let lease = active.lease.clone();
    let job_id = lease.job.id.clone();
    inner.metrics.active_jobs.inc();
    inner.watchers.signal(&job_id);

    let span = tracing::info_span!(
        "job",
        id = %job_id,
        operation = %lease.job.operation,
        attempt = lease.job.attempt,
        trace_id = tracing::field::Empty,
        correlation_id = tracing::field::Empty,
    );
    if let Some(obs) = lease.job.document.get("observability") {
        if let Some(t) = obs.get("trace_id").and_then(Value::as_str) {
            span.record("trace_id", t);
        }
        if let Some(c) = obs.get("correlation_id").and_then(Value::as_str) {
            span.record("correlation_id", c);
        }
    }
    let outcome = {
        let _enter = span.enter();
        tracing::debug!("job started");
        drop(_enter);
        execute(inner, &lease, &active).await
    };

    let stop = active.reason();
    inner.metrics.active_jobs.dec();
    match (stop, outcome) {
        (Some(StopReason::LeaseLost), _) => {
            tracing::warn!(parent: &span, "lease lost while running; result discarded");
        }
        (Some(StopReason::Shutdown), _) => {
            if let Err(e) = inner.store.release(&lease).await {
                tracing::warn!(parent: &span, error = %e, "releasing job on shutdown failed");
            } else {
                tracing::info!(parent: &span, "job released on shutdown");
            }
        }
        (_, outcome) => {
            let (done, wait) = oneshot::channel();
            // Completions are never dropped: this waits if the writer is behind. The slot
            // goes with it and stays taken until the outcome is durable, so the store never
            // shows more than max_concurrent of this worker's jobs running.
            let _ = inner
                .events
                .send(EventMsg::Complete {
                    lease: Box::new(lease),
                    outcome,
                    slot,
                    done,
                })
                .await;
            // The writer has taken the job off the running ones with the commit; this
            // only waits for it, so the job's task ends after its outcome is durable.
            let _ = wait.await;
            return;
        }
    }
    // Known here until now; a completed job is kept in `recent` by the writer instead.
    if let Ok(mut map) = inner.active.lock() {
        map.remove(&job_id);
    }
    drop(slot);
    // The slot came free without a write cycle: let the writer look for work.
    inner.wake.notify_one();
}

/// Runs the attempt and turns what happened into an [`Outcome`].
async fn execute(inner: &Arc<Inner>, lease: &Lease, active: &Active) -> Outcome {
    let job = &lease.job;
    let now = now_ms();
    let mut limits = inner.config.limits.clone();
    limits.wall_clock = Duration::from_millis(job.timeout_ms.max(1));
    if let Some(deadline) = job.deadline_ms {
        if deadline <= now {
            return Outcome::TimedOut {
                error: json!({"code": "deadline_exceeded",
                              "message": "the job's deadline passed before it started"}),
                usage: Value::Null,
            };
        }
        let left = Duration::from_millis((deadline - now) as u64);
        limits.wall_clock = limits.wall_clock.min(left);
    }
    let tenant = inner.config.tenants.get(&job.tenant).cloned();
    if let Some(t) = &tenant {
        let q = &t.quotas;
        if let Some(fuel) = q.fuel {
            limits.fuel = limits.fuel.min(fuel);
        }
        if let Some(memory) = q.memory_bytes {
            limits.memory_bytes = limits
                .memory_bytes
                .min(usize::try_from(memory).unwrap_or(usize::MAX));
        }
    }
    let snapshot = inner.registry.snapshot();
    let handler = match (&tenant, snapshot.get_for(&job.tenant, &job.operation)) {
        (Some(t), Some((h, private))) if private || t.may_run(&h.meta.name, &job.operation) => {
            Some(h.clone())
        }
        _ => None,
    };
    drop(snapshot);
    let Some(handler) = handler else {
        return failed(
            "no_handler",
            format!(
                "no handler serves operation '{}' for tenant '{}' on this worker",
                job.operation, job.tenant
            ),
            true,
            Value::Null,
        );
    };
    let policy = tenant
        .as_ref()
        .map(|t| &t.images)
        .unwrap_or(&inner.config.images);
    let images = match grants::prepare(policy, &job.images, &inner.metrics).await {
        Ok(images) => images,
        Err(e) => return failed(e.code(), e.to_string(), e.retryable(), Value::Null),
    };
    let names = images.iter().map(|i| i.name.clone()).collect();
    let disk = DiskCtx::new(images, Arc::default());
    let payload = match serde_json::to_string(&job.payload) {
        Ok(p) => p,
        Err(e) => return failed("invalid_input", e.to_string(), false, Value::Null),
    };
    let wit_job = WitJob {
        id: job.id.clone(),
        operation: job.operation.clone(),
        payload,
        images: names,
        attempt: job.attempt,
    };
    let observer = Arc::new(JobObserver {
        lease: lease.clone(),
        events: inner.events.clone(),
        min_level: inner.config.job_log_level.rank(),
    });
    let metrics = &inner.metrics;
    let handler_name = handler.meta.name.as_str();
    metrics
        .handler_executions
        .with_label_values(&[handler_name, &job.operation])
        .inc();
    metrics
        .pool_slots
        .with_label_values(&["in_use"])
        .set(i64::from(inner.sandbox.slots_in_use()) + 1);
    let started = Instant::now();
    let report = inner
        .sandbox
        .run_with_disk(
            handler.pre(),
            &wit_job,
            &limits,
            observer,
            &active.cancel,
            disk,
        )
        .await;
    metrics
        .disk_bytes_read
        .with_label_values(&["job"])
        .inc_by(report.usage.disk_bytes_read);
    metrics
        .handler_duration
        .with_label_values(&[handler_name])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .pool_slots
        .with_label_values(&["in_use"])
        .set(i64::from(inner.sandbox.slots_in_use()));
    metrics
        .fuel_consumed
        .with_label_values(&[&job.operation])
        .inc_by(report.usage.fuel_consumed);
    let tenant_label = [job.tenant.as_str()];
    metrics
        .tenant_fuel
        .with_label_values(&tenant_label)
        .inc_by(report.usage.fuel_consumed);
    metrics
        .tenant_memory_peak
        .with_label_values(&tenant_label)
        .observe(report.usage.peak_memory_bytes as f64);
    metrics
        .tenant_wall_seconds
        .with_label_values(&tenant_label)
        .inc_by(report.usage.wall_time_us as f64 / 1e6);
    metrics
        .tenant_disk_bytes_read
        .with_label_values(&tenant_label)
        .inc_by(report.usage.disk_bytes_read);
    metrics
        .memory_peak
        .with_label_values(&[&job.operation])
        .observe(report.usage.peak_memory_bytes as f64);
    if let Err(failure) = &report.outcome {
        metrics
            .handler_errors
            .with_label_values(&[handler_name, failure.code()])
            .inc();
    }
    let mut usage = serde_json::to_value(&report.usage).unwrap_or(Value::Null);
    usage["handler"] = json!({
        "name": handler.meta.name,
        "version": handler.meta.version,
        "digest": handler.digest,
    });
    usage["worker"] = json!(inner.config.worker_id);
    usage["tenant"] = json!(job.tenant);
    match report.outcome {
        Ok(output) => Outcome::Succeeded { output, usage },
        Err(JobFailure::TimedOut { limit_ms }) => Outcome::TimedOut {
            error: json!({
                "code": "timed_out",
                "message": format!("the attempt ran past its limit of {limit_ms} ms"),
            }),
            usage,
        },
        Err(JobFailure::Cancelled) => match active.reason() {
            Some(StopReason::Cancel) | None => Outcome::Cancelled { usage },
            // Shutdown and lost leases are handled by the caller; this outcome is unused.
            Some(_) => Outcome::Cancelled { usage },
        },
        Err(failure) => failed(
            failure.code(),
            failure.to_string(),
            failure.retryable(),
            usage,
        ),
    }
}

fn failed(code: &str, message: String, retryable: bool, usage: Value) -> Outcome {
    Outcome::Failed {
        error: json!({"code": code, "message": message, "retryable": retryable}),
        retryable,
        usage,
    }
}

async fn heartbeat_loop(inner: Arc<Inner>) {
    let period = (inner.config.lease / 3).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let running: Vec<Arc<Active>> = inner
            .active
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default();
        for active in running {
            // Jobs younger than one period have a fresh lease already.
            match inner
                .store
                .heartbeat(&active.lease, inner.config.lease)
                .await
            {
                Ok(HeartbeatStatus::Ok) => {}
                Ok(HeartbeatStatus::CancelRequested) => active.stop(StopReason::Cancel),
                Ok(HeartbeatStatus::Lost) => active.stop(StopReason::LeaseLost),
                Err(e) => tracing::warn!(job = %active.lease.job.id, error = %e,
                    "renewing a lease failed; will retry"),
            }
        }
    }
}

/// Writes completions in one transaction, retrying while the database is unreachable (the
/// leases stay ours for a while; losing them means another worker reruns the job).
async fn write_completions(inner: &Inner, items: Vec<(Lease, Outcome)>) {
    let started = Instant::now();
    let count = items.len();
    let mut delay = Duration::from_millis(50);
    let results = loop {
        match inner.store.complete_batch(items.clone()).await {
            Ok(results) => break results,
            Err(e) => {
                tracing::warn!(error = %e, jobs = items.len(), "writing completions failed; retrying");
                if delay > inner.config.lease {
                    tracing::error!(
                        jobs = items.len(),
                        "giving up on completions; leases expired"
                    );
                    return;
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    };
    tracing::trace!(
        jobs = count,
        us = started.elapsed().as_micros() as u64,
        "complete batch"
    );
    for ((lease, outcome), result) in items.iter().zip(results) {
        completion_written(inner, lease, outcome, result);
    }
}

/// Metrics and watchers for one completion the store answered.
fn completion_written(
    inner: &Inner,
    lease: &Lease,
    outcome: &Outcome,
    result: Result<Job, StoreError>,
) {
    match result {
        Ok(job) => {
            record_completion(inner, &job);
            let result = match outcome {
                Outcome::Succeeded { output, usage }
                    if job.state == guestkit_store::JobState::Succeeded =>
                {
                    Some(JobResult {
                        job_id: job.id.clone(),
                        output: output.clone(),
                        usage: usage.clone(),
                        completed_at: job.finished_at.unwrap_or_else(now_ms),
                    })
                }
                _ => None,
            };
            let id = job.id.clone();
            inner.recent.insert(job, result);
            inner.watchers.signal(&id);
        }
        Err(StoreError::LeaseLost { .. }) => {
            tracing::warn!(job = %lease.job.id, "lease lost before completion; result discarded")
        }
        Err(e) => tracing::error!(job = %lease.job.id, error = %e, "completing job failed"),
    }
}

fn record_completion(inner: &Inner, job: &Job) {
    if job.state.is_terminal() {
        let outcome = job.state.as_str();
        inner
            .metrics
            .jobs_completed
            .with_label_values(&[&job.operation, outcome])
            .inc();
        inner
            .metrics
            .tenant_jobs
            .with_label_values(&[&job.tenant, outcome])
            .inc();
        let took = (job.finished_at.unwrap_or_else(now_ms) - job.created_at).max(0);
        inner
            .metrics
            .job_duration
            .with_label_values(&[&job.operation, outcome])
            .observe(took as f64 / 1000.0);
    }
}

/// The one task that writes to the store for this worker and claims its jobs.
///
/// Each cycle takes everything that piled up since the last (submissions, log lines,
/// progress, completions, in arrival order) and commits it in one transaction, together
/// with a claim for the free slots when there may be work: jobs were submitted, a wake or
/// the poll timer said so, or the last claim filled every slot it asked for (more may be
/// waiting) and completions just freed some. While one cycle commits the next fills up, so
/// batches grow with the load.
async fn write_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<EventMsg>) {
    let poll = inner.config.poll_interval;
    let mut batch = Vec::with_capacity(CYCLE_MAX);
    let mut look = true;
    let mut backlog = false;
    let mut backoff = poll;
    let mut next_poll = tokio::time::Instant::now() + poll;
    loop {
        let can_claim =
            || !inner.stopping.load(Ordering::SeqCst) && inner.slots.available_permits() > 0;
        if !(look && can_claim()) {
            tokio::select! {
                n = rx.recv_many(&mut batch, CYCLE_MAX) => if n == 0 { return },
                _ = inner.wake.notified() => look = true,
                _ = tokio::time::sleep_until(next_poll) => {
                    look = true;
                    next_poll = tokio::time::Instant::now() + poll;
                }
            }
        }
        while batch.len() < CYCLE_MAX {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        let mut pending = Pending::default();
        for msg in batch.drain(..) {
            pending.add(msg);
        }
        if !pending.cycle.submits.is_empty() {
            pending.cycle.queue_caps = inner.config.tenants.queue_caps();
        }
        let stopping = inner.stopping.load(Ordering::SeqCst);
        // Slots of jobs completing in this cycle are free again once it commits.
        let free = if stopping {
            0
        } else {
            inner.slots.available_permits() + pending.cycle.completions.len()
        };
        // A completion frees a slot: claim with it if the last claim left jobs behind. With
        // tenants, a claim that took fewer than it asked says nothing (a tenant at its cap
        // or share leaves its queued jobs there), so every completion claims; otherwise a
        // capped tenant's jobs would start only at the next poll.
        let wanted = look
            || !pending.cycle.submits.is_empty()
            || (!pending.cycle.completions.is_empty()
                && (backlog || inner.config.tenants.is_multi()));
        let mut asked = 0;
        if wanted && free > 0 {
            let operations = inner.registry.snapshot().operation_names();
            if !operations.is_empty() {
                asked = free.min(BATCH);
                let tenants = &inner.config.tenants;
                let tenant_caps = tenants.is_multi().then(|| {
                    let running = running_by_tenant(&inner, &pending.cycle.completions);
                    let slots = inner.config.max_concurrent;
                    tenants.claim_caps(slots, &running, now_ms())
                });
                pending.cycle.claim = Some(ClaimRequest {
                    worker: inner.config.worker_id.clone(),
                    max: asked,
                    lease: inner.config.lease,
                    operations: Some(operations),
                    tenant_caps,
                });
            }
        }
        if pending.cycle.is_empty() {
            look = false;
            pending.ack();
            continue;
        }
        let started = Instant::now();
        match inner.store.write_cycle(&pending.cycle).await {
            Ok(result) => {
                tracing::trace!(
                    submits = pending.cycle.submits.len(),
                    events = pending.cycle.events.len(),
                    completions = pending.cycle.completions.len(),
                    asked,
                    claimed = result.claimed.len(),
                    us = started.elapsed().as_micros() as u64,
                    "write cycle"
                );
                backoff = poll;
                if pending.cycle.claim.is_some() {
                    look = false;
                    backlog = result.claimed.len() == asked;
                }
                let (claimed, mut freed) = pending.settle(&inner, result);
                for active in claimed {
                    if let Some(t) = inner.config.tenants.get(&active.lease.job.tenant) {
                        t.add_queued(-1);
                    }
                    // The claim asked for no more than the free slots, counting those of
                    // the jobs this cycle completed, which pass straight to claimed jobs;
                    // and only this task takes slots.
                    let permit = match freed.pop() {
                        Some(permit) => permit,
                        None => match inner.slots.clone().acquire_owned().await {
                            Ok(permit) => permit,
                            Err(_) => return,
                        },
                    };
                    let inner = inner.clone();
                    tokio::spawn(async move { run_job(&inner, active, permit).await });
                }
                // Slots of completed jobs no claimed job took are free again.
                drop(freed);
                release_lifo_slot();
            }
            Err(e) => {
                tracing::warn!(error = %e, "write cycle failed");
                pending.fail(&inner, &e).await;
                look = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Moves the last task a write cycle woke out of this thread's LIFO slot.
///
/// Tokio runs the task a running task woke last next on the same thread (its LIFO slot),
/// and no other thread may take it from there. The write loop goes on to its next cycle
/// without yielding while work is pending, so the job it just started, or the client it
/// just answered, would wait out that whole cycle though another thread is free. An empty
/// task spawned last takes the slot instead: the task it displaces goes to the thread's
/// queue, and an idle thread is woken to take it. Under a flood this took the quiet
/// tenant's latency in the fairness bench down by about a tenth.
fn release_lifo_slot() {
    tokio::spawn(async {});
}

/// This worker's running jobs per tenant, leaving out those whose completion is in
/// `completing` (their slots are free once the cycle commits).
fn running_by_tenant(inner: &Inner, completing: &[(Lease, Outcome)]) -> HashMap<String, u32> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    if let Ok(active) = inner.active.lock() {
        for a in active.values() {
            *counts.entry(a.lease.job.tenant.clone()).or_default() += 1;
        }
    }
    for (lease, _) in completing {
        if let Some(n) = counts.get_mut(&lease.job.tenant) {
            *n = n.saturating_sub(1);
        }
    }
    counts
}

/// One write cycle: what to write, and who waits for it.
#[derive(Default)]
struct Pending {
    cycle: Cycle,
    submit_replies: Vec<oneshot::Sender<Result<Submitted, SubmitError>>>,
    acks: Vec<oneshot::Sender<()>>,
    /// The slots of the jobs completing in this cycle.
    slots: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl Pending {
    /// Answers flushes of a cycle with nothing to write.
    fn ack(self) {
        for done in self.acks {
            let _ = done.send(());
        }
    }

    fn add(&mut self, msg: EventMsg) {
        let cycle = &mut self.cycle;
        match msg {
            EventMsg::Log {
                job_id,
                level,
                message,
            } => {
                let data = json!({"level": level.to_string(), "message": message});
                cycle.events.push((job_id, "log".to_string(), data));
            }
            EventMsg::Progress {
                lease,
                done,
                total,
                message,
            } => {
                // Only the latest progress of a job matters.
                cycle.progress.retain(|p| p.lease.job.id != lease.job.id);
                cycle.progress.push(ProgressUpdate {
                    lease: *lease,
                    done,
                    total,
                    message: (!message.is_empty()).then_some(message),
                });
            }
            EventMsg::Complete {
                lease,
                outcome,
                slot,
                done,
            } => {
                cycle.completions.push((*lease, outcome));
                self.slots.push(slot);
                self.acks.push(done);
            }
            EventMsg::Flush(done) => self.acks.push(done),
            EventMsg::Submit { job, reply } => {
                cycle.submits.push(*job);
                self.submit_replies.push(reply);
            }
        }
    }

    /// Answers everyone waiting on a committed cycle; returns the claimed jobs, registered
    /// as running here, and the slots of the jobs it completed.
    fn settle(
        self,
        inner: &Inner,
        result: CycleResult,
    ) -> (Vec<Arc<Active>>, Vec<tokio::sync::OwnedSemaphorePermit>) {
        let Pending {
            cycle,
            submit_replies,
            acks,
            slots,
        } = self;
        let claimed: Vec<Arc<Active>> = result
            .claimed
            .into_iter()
            .map(|lease| activate(inner, lease))
            .collect();
        let running: HashMap<&str, &Lease> = claimed
            .iter()
            .map(|a| (a.lease.job.id.as_str(), &a.lease))
            .collect();
        for (reply, submitted) in submit_replies.into_iter().zip(result.submitted) {
            let answer = submitted.map_err(SubmitError::Store).map(|mut s| {
                // Claimed by the same commit: answer with the job as it is now.
                if let Some(lease) = running.get(s.job.id.as_str()) {
                    s.job = lease.job.clone();
                }
                s
            });
            let _ = reply.send(answer);
        }
        let mut touched: Vec<&str> = cycle.events.iter().map(|(id, ..)| id.as_str()).collect();
        for (update, done) in cycle.progress.iter().zip(&result.progress) {
            match done {
                Ok(()) => touched.push(&update.lease.job.id),
                Err(e) => {
                    tracing::debug!(job = %update.lease.job.id, error = %e, "progress not recorded")
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            inner.watchers.signal(id);
        }
        for ((lease, outcome), completed) in cycle.completions.iter().zip(result.completed) {
            completion_written(inner, lease, outcome, completed);
        }
        no_longer_running(
            inner,
            cycle.completions.iter().map(|(l, _)| l.job.id.as_str()),
        );
        for done in acks {
            let _ = done.send(());
        }
        (claimed, slots)
    }

    /// A cycle failed as a whole: submitters get the error; completions and log lines are
    /// written on their own, completions retried until they are in.
    async fn fail(self, inner: &Inner, error: &StoreError) {
        let Pending {
            cycle,
            submit_replies,
            acks,
            slots,
        } = self;
        for reply in submit_replies {
            let _ = reply.send(Err(SubmitError::Unavailable(error.to_string())));
        }
        if !cycle.events.is_empty() {
            let count = cycle.events.len();
            if let Err(e) = inner.store.append_events(cycle.events).await {
                tracing::warn!(error = %e, lines = count, "writing log events failed");
            }
        }
        if !cycle.completions.is_empty() {
            let ended: Vec<String> = cycle
                .completions
                .iter()
                .map(|(l, _)| l.job.id.clone())
                .collect();
            write_completions(inner, cycle.completions).await;
            no_longer_running(inner, ended.iter().map(String::as_str));
        }
        drop(slots);
        for done in acks {
            let _ = done.send(());
        }
    }
}

/// Takes jobs whose outcome was written (or given up on) off those running here; their
/// finished state is in `recent` by then, so a client asking in between finds it in memory.
fn no_longer_running<'a>(inner: &Inner, ended: impl IntoIterator<Item = &'a str>) {
    if let Ok(mut map) = inner.active.lock() {
        for id in ended {
            map.remove(id);
        }
    }
}
