//! The executor: claims jobs from the store under leases, runs each in a fresh sandbox
//! instance, and writes outcomes back.
//!
//! - Up to `max_concurrent` jobs run at once (a semaphore); claims take as many jobs as
//!   there are free slots, in one store call.
//! - One heartbeat task renews the leases of every running job and learns of cancel requests
//!   made on other workers; a cancel made on this worker stops the job at once.
//! - Completions go through one task that writes whatever has piled up in one transaction
//!   (group commit), which is what lets short jobs complete thousands per second on SQLite.
//! - On shutdown, claiming stops, running jobs get a grace period to finish, and the rest
//!   are released back to the queue without counting the attempt.

use crate::engine::{CancelToken, JobFailure, Sandbox};
use crate::grants::{self, ImagePolicy};
use crate::limits::JobLimits;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::watchers::{JobWatch, JobWatchers};
use guestkit_host_api::{DiskCtx, Job as WitJob, LogLevel, Observer};
use guestkit_store::{Error as StoreError, HeartbeatStatus, Job, JobStore, Lease, Outcome};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most jobs one claim or one completion transaction handles.
const BATCH: usize = 256;
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
    /// Where granted images may live.
    pub images: ImagePolicy,
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
    /// shows the end before the last log line. `done` fires once it is durable.
    Complete {
        lease: Box<Lease>,
        outcome: Outcome,
        done: oneshot::Sender<()>,
    },
    /// Answered once every message sent before it is written.
    Flush(oneshot::Sender<()>),
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
}

/// A running executor. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// The executor's background tasks; await [`Executor::shutdown`] before dropping.
pub struct ExecutorTasks {
    dispatcher: JoinHandle<()>,
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
        });
        inner
            .metrics
            .pool_slots
            .with_label_values(&["capacity"])
            .set(i64::from(inner.sandbox.config().pool_slots));
        let tasks = ExecutorTasks {
            dispatcher: tokio::spawn(dispatch_loop(inner.clone())),
            heartbeat: tokio::spawn(heartbeat_loop(inner.clone())),
            writer: tokio::spawn(write_loop(inner.clone(), event_rx)),
        };
        (Executor { inner }, tasks)
    }

    /// Tells the executor new work may be waiting (called after a local submit).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
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
        let _ = tasks.dispatcher.await;
        let max = inner.config.max_concurrent.max(1) as u32;
        let all_idle = inner.slots.acquire_many(max);
        if tokio::time::timeout(grace, all_idle).await.is_err() {
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
            let _ = inner.slots.acquire_many(max).await;
        }
        tasks.heartbeat.abort();
        // Every job task has queued its completion; wait until all of it is written.
        let (tx, rx) = oneshot::channel();
        let _ = inner.events.send(EventMsg::Flush(tx)).await;
        let _ = rx.await;
        tasks.writer.abort();
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Shortest time between two claims when the previous one drained the queue: jobs that
/// arrive meanwhile are then claimed together, one transaction for many jobs, instead of
/// one transaction each.
const MIN_CLAIM_GAP: Duration = Duration::from_millis(1);

async fn dispatch_loop(inner: Arc<Inner>) {
    let mut backoff = inner.config.poll_interval;
    let mut drained_at: Option<Instant> = None;
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        // Wait for at least one free slot.
        let first = tokio::select! {
            permit = inner.slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = inner.wake.notified() => continue,
        };
        if let Some(at) = drained_at.take() {
            let since = at.elapsed();
            if since < MIN_CLAIM_GAP {
                tokio::time::sleep(MIN_CLAIM_GAP - since).await;
            }
        }
        let free = inner.slots.available_permits() + 1;
        let operations = inner.registry.snapshot().operation_names();
        if operations.is_empty() {
            drop(first);
            wait_for_work(&inner, inner.config.poll_interval).await;
            continue;
        }
        let claim_started = Instant::now();
        let claimed = inner
            .store
            .claim(
                &inner.config.worker_id,
                free.min(BATCH),
                inner.config.lease,
                Some(&operations),
            )
            .await;
        tracing::trace!(
            asked = free.min(BATCH),
            got = claimed.as_ref().map(|l| l.len()).unwrap_or(0),
            us = claim_started.elapsed().as_micros() as u64,
            "claim"
        );
        let leases = match claimed {
            Ok(leases) => {
                backoff = inner.config.poll_interval;
                leases
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming jobs failed; retrying");
                drop(first);
                wait_for_work(&inner, backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if leases.len() < free.min(BATCH) {
            drained_at = Some(Instant::now());
        }
        if leases.is_empty() {
            drop(first);
            wait_for_work(&inner, inner.config.poll_interval).await;
            continue;
        }
        let mut first = Some(first);
        for lease in leases {
            let permit = match first.take() {
                Some(p) => p,
                // The claim asked for no more than the free slots, and only this loop
                // takes slots, so this does not wait.
                None => match inner.slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let inner = inner.clone();
            tokio::spawn(async move { run_job(&inner, lease, permit).await });
        }
    }
}

async fn wait_for_work(inner: &Inner, timeout: Duration) {
    tokio::select! {
        _ = inner.wake.notified() => {}
        _ = tokio::time::sleep(timeout) => {}
    }
}

/// Sends a handler's logs and progress to the event writer.
struct JobObserver {
    lease: Lease,
    events: mpsc::Sender<EventMsg>,
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

async fn run_job(inner: &Arc<Inner>, lease: Lease, slot: tokio::sync::OwnedSemaphorePermit) {
    let job_id = lease.job.id.clone();
    let active = Arc::new(Active {
        lease: lease.clone(),
        cancel: CancelToken::new(),
        reason: Mutex::new(None),
    });
    if let Ok(mut map) = inner.active.lock() {
        map.insert(job_id.clone(), active.clone());
    }
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
    if let Ok(mut map) = inner.active.lock() {
        map.remove(&job_id);
    }
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
            // Completions are never dropped: this waits if the writer is behind.
            let _ = inner
                .events
                .send(EventMsg::Complete {
                    lease: Box::new(lease),
                    outcome,
                    done,
                })
                .await;
            // The slot stays taken until the outcome is durable, so the store never shows
            // more than max_concurrent of this worker's jobs running.
            let _ = wait.await;
        }
    }
    drop(slot);
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
    let Some(handler) = inner.registry.snapshot().get(&job.operation).cloned() else {
        return failed(
            "no_handler",
            format!(
                "no handler serves operation '{}' on this worker",
                job.operation
            ),
            true,
            Value::Null,
        );
    };
    let images = match grants::prepare(&inner.config.images, &job.images, &inner.metrics).await {
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
    for ((lease, _), result) in items.iter().zip(results) {
        match result {
            Ok(job) => record_completion(inner, &job),
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!(job = %lease.job.id, "lease lost before completion; result discarded")
            }
            Err(e) => tracing::error!(job = %lease.job.id, error = %e, "completing job failed"),
        }
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
        let took = (job.finished_at.unwrap_or_else(now_ms) - job.created_at).max(0);
        inner
            .metrics
            .job_duration
            .with_label_values(&[&job.operation, outcome])
            .observe(took as f64 / 1000.0);
    }
    inner.watchers.signal(&job.id);
}

/// The one task that writes what jobs report: log lines, progress and completions, in
/// arrival order and in as few transactions as there are kinds of thing waiting.
async fn write_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<EventMsg>) {
    let mut batch = Vec::with_capacity(BATCH * 2);
    while rx.recv_many(&mut batch, BATCH * 2).await > 0 {
        let mut logs = Vec::new();
        let mut progress: Vec<(Box<Lease>, u64, u64, String)> = Vec::new();
        let mut completions = Vec::new();
        let mut acks = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                EventMsg::Log {
                    job_id,
                    level,
                    message,
                } => {
                    let data = json!({"level": level.to_string(), "message": message});
                    logs.push((job_id, "log".to_string(), data));
                }
                EventMsg::Progress {
                    lease,
                    done,
                    total,
                    message,
                } => {
                    // Only the latest progress of a job matters.
                    progress.retain(|(l, ..)| l.job.id != lease.job.id);
                    progress.push((lease, done, total, message));
                }
                EventMsg::Complete {
                    lease,
                    outcome,
                    done,
                } => {
                    completions.push((*lease, outcome));
                    acks.push(done);
                }
                EventMsg::Flush(done) => acks.push(done),
            }
        }
        let mut touched: Vec<String> = logs.iter().map(|(id, ..)| id.clone()).collect();
        if !logs.is_empty() {
            let count = logs.len();
            if let Err(e) = inner.store.append_events(logs).await {
                tracing::warn!(error = %e, lines = count, "writing log events failed");
            }
        }
        for (lease, done, total, message) in progress {
            let message = (!message.is_empty()).then_some(message.as_str());
            match inner.store.set_progress(&lease, done, total, message).await {
                Ok(()) => touched.push(lease.job.id.clone()),
                Err(e) => tracing::debug!(job = %lease.job.id, error = %e, "progress not recorded"),
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            inner.watchers.signal(&id);
        }
        if !completions.is_empty() {
            write_completions(&inner, completions).await;
            inner.wake.notify_one();
        }
        for done in acks {
            let _ = done.send(());
        }
    }
}
