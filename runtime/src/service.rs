//! The job service behind the HTTP API: validation, admission, submission (group commit),
//! and the views the API returns. Transport-free, so the API layer stays thin.

use crate::executor::{Executor, SubmitError, now_ms};
use crate::grants;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::tenants::{Tenant, Tenants};
use guestkit_protocol::{self as protocol, Context, JobSpec};
use guestkit_store::{Error as StoreError, Job, JobState, JobStore, NewJob, Submitted};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// Disk image formats the host reads.
pub const DISK_FORMATS: &[&str] = &["raw", "qcow2", "vmdk", "vdi", "vhdx", "vhd"];
/// Host features a job may require (`constraints.required_features`).
pub const FEATURES: &[&str] = &["mbr", "gpt", "lvm", "checksum", "read-only"];

/// Admission settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Queued jobs above which submissions get 429.
    pub max_queued: u64,
    /// Worker pool name jobs may be routed to.
    pub worker_pool: String,
    /// Timeout of a job that gives none.
    pub default_timeout: Duration,
    /// Longest timeout a job may ask for.
    pub max_timeout: Duration,
    /// Most attempts a job may ask for.
    pub max_attempts_cap: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_queued: 100_000,
            worker_pool: "default".into(),
            default_timeout: Duration::from_secs(300),
            max_timeout: Duration::from_secs(86_400),
            max_attempts_cap: 10,
        }
    }
}

/// An API-level error: HTTP status, stable code, optional field and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// A 4xx/5xx error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// A 422 naming the offending field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: 422,
            code: "invalid_field",
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// 404 for a job id.
    pub fn job_not_found(id: &str) -> Self {
        ApiError::new(404, "not_found", format!("no job with id {id:?}"))
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { id } => ApiError::job_not_found(&id),
            StoreError::Conflict { field } => {
                let field = if field == "id" { "job_id" } else { field };
                ApiError {
                    status: 409,
                    code: "conflict",
                    field: Some(field.into()),
                    message: format!("a job with the same {field} already exists"),
                }
            }
            StoreError::Invalid { field, message } => ApiError::field(field, message),
            e @ StoreError::LeaseLost { .. } => ApiError::new(409, "conflict", e.to_string()),
            e @ StoreError::QuotaExceeded { .. } => {
                ApiError::new(429, "quota_exceeded", e.to_string())
            }
            e @ StoreError::Db { .. } => {
                tracing::error!(error = %e, "store error");
                ApiError::new(503, "store_unavailable", "the job store is unavailable")
            }
        }
    }
}

/// The job service: one per worker process.
pub struct JobService {
    store: Arc<dyn JobStore>,
    registry: Arc<Registry>,
    executor: Executor,
    metrics: Arc<Metrics>,
    tenants: Arc<Tenants>,
    config: ServiceConfig,
    queued: AtomicI64,
}

impl JobService {
    /// Starts the queue sampler.
    pub fn start(
        store: Arc<dyn JobStore>,
        registry: Arc<Registry>,
        executor: Executor,
        metrics: Arc<Metrics>,
        tenants: Arc<Tenants>,
        config: ServiceConfig,
    ) -> Arc<JobService> {
        let service = Arc::new(JobService {
            store,
            registry,
            executor,
            metrics,
            tenants,
            config,
            queued: AtomicI64::new(0),
        });
        tokio::spawn(sample_loop(Arc::downgrade(&service)));
        service
    }

    /// The store (read paths of the API use it directly).
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// The executor of this worker.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The handler registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Capabilities jobs can require: the operations served, `disk.<format>` and `fs.*`.
    pub fn capability_names(&self) -> Vec<String> {
        let mut caps = self.registry.snapshot().operation_names();
        caps.extend(DISK_FORMATS.iter().map(|f| format!("disk.{f}")));
        caps
    }

    /// The tenants of this worker.
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    fn context(&self, tenant: &Tenant) -> Context {
        let max_timeout = match tenant.quotas.timeout {
            Some(t) => t.min(self.config.max_timeout),
            None => self.config.max_timeout,
        };
        Context {
            now_ms: now_ms(),
            worker_version: env!("CARGO_PKG_VERSION").into(),
            worker_pool: self.config.worker_pool.clone(),
            capabilities: self.capability_names(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            default_timeout: self.config.default_timeout.min(max_timeout),
            max_timeout,
            max_attempts_cap: self.config.max_attempts_cap,
        }
    }

    /// Validates a submitted body; returns the spec and what to store.
    pub fn admit(
        &self,
        body: &[u8],
        tenant: &Tenant,
        remote: Option<&str>,
    ) -> Result<NewJob, ApiError> {
        // Not JSON at all (or with duplicate keys) is a malformed request (400); JSON that
        // is not a valid job is a semantic error (422).
        let doc = protocol::parse_json(body).map_err(|e| ApiError {
            status: 400,
            code: "invalid_body",
            field: Some(e.field),
            message: e.message,
        })?;
        let spec = protocol::validate(doc, &self.context(tenant))
            .map_err(|e| ApiError::field(e.field, e.message))?;
        // Job ids are one namespace for all tenants: an id one tenant chose would answer
        // another's submission of it with a 409, telling that it exists. A chosen id
        // therefore carries its tenant's id, which no other tenant's can start with ('.'
        // is not allowed in tenant ids).
        if let Some(id) = &spec.job_id
            && self.tenants().is_multi()
            && !id
                .strip_prefix(tenant.id.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        {
            return Err(ApiError::field(
                "job_id",
                format!(
                    "a chosen job_id must start with this tenant's id and a dot (\"{}.\")",
                    tenant.id
                ),
            ));
        }
        if self.handler_for(tenant, &spec.operation).is_none() {
            let served = self.operations_for(tenant).join(", ");
            return Err(ApiError::field(
                "operation",
                format!(
                    "no handler serves operation '{}' (served: {served})",
                    spec.operation
                ),
            ));
        }
        let max_disk = match (spec.max_disk_bytes, tenant.quotas.max_image_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let grants = grants::resolve(&tenant.images, &spec.images, max_disk)
            .map_err(|r| ApiError::field(r.field, r.message))?;
        Ok(new_job(spec, grants, &tenant.id, remote))
    }

    /// The handler serving `operation` for `tenant`, if the tenant may run it.
    pub fn handler_for(
        &self,
        tenant: &Tenant,
        operation: &str,
    ) -> Option<Arc<crate::registry::LoadedHandler>> {
        let snapshot = self.registry.snapshot();
        let (handler, private) = snapshot.get_for(&tenant.id, operation)?;
        (private || tenant.may_run(&handler.meta.name, operation)).then(|| handler.clone())
    }

    /// Operations `tenant` may run, sorted.
    pub fn operations_for(&self, tenant: &Tenant) -> Vec<String> {
        let snapshot = self.registry.snapshot();
        snapshot
            .operations()
            .into_iter()
            .filter(|op| {
                snapshot
                    .get_for(&tenant.id, op)
                    .is_some_and(|(h, private)| private || tenant.may_run(&h.meta.name, op))
            })
            .map(String::from)
            .collect()
    }

    /// Admits and stores a job. `Ok((job, true))` when created, `(existing, false)` when the
    /// idempotency key matched an earlier job.
    pub async fn submit(
        &self,
        body: &[u8],
        tenant: &Tenant,
        remote: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        refuse_if_queue_full(tenant)?;
        // This tenant's turn: its submissions beyond `max_submitting` wait here, parked,
        // until this one is stored (or refused).
        let _turn = tenant.submit_turn().await;
        let job = self.admit(body, tenant, remote)?;
        tenant.note_submit(now_ms());
        if self.queued.load(Ordering::Relaxed) >= self.config.max_queued as i64 {
            return Err(ApiError::new(
                429,
                "queue_full",
                format!(
                    "the queue holds {} or more jobs; retry later",
                    self.config.max_queued
                ),
            ));
        }
        let operation = job.operation.clone();
        let submitted = self.executor.submit(job).await.map_err(|e| match e {
            SubmitError::Store(StoreError::QuotaExceeded { limit, .. }) => {
                tenant.queue_was_full(now_ms());
                queue_quota_error(limit)
            }
            SubmitError::Store(e) => ApiError::from(e),
            SubmitError::Unavailable(message) => {
                tracing::error!(error = %message, "storing a submitted job failed");
                ApiError::new(503, "store_unavailable", "the job store is unavailable")
            }
            SubmitError::ShuttingDown => {
                ApiError::new(503, "shutting_down", "the worker is shutting down")
            }
        })?;
        if submitted.created {
            self.queued.fetch_add(1, Ordering::Relaxed);
            tenant.add_queued(1);
            self.metrics
                .jobs_submitted
                .with_label_values(&[&operation])
                .inc();
        }
        Ok(submitted)
    }

    /// Reads a job of `tenant`, or 404.
    pub async fn job(&self, tenant: Option<&str>, id: &str) -> Result<Job, ApiError> {
        self.store
            .get(tenant, id)
            .await?
            .ok_or_else(|| ApiError::job_not_found(id))
    }

    /// Waits until the job is terminal or `wait` passes; returns its latest state.
    pub async fn wait_terminal(
        &self,
        tenant: Option<&str>,
        id: &str,
        wait: Duration,
    ) -> Result<Job, ApiError> {
        let mut watch = self.executor.watch(id);
        let until = tokio::time::Instant::now() + wait;
        loop {
            if let Some(finished) = self.executor.recent().get(tenant, id) {
                return Ok(finished.job.clone());
            }
            let now = tokio::time::Instant::now();
            // A job running here needs no store read until it ends (or the wait does).
            let running_here = now < until && self.executor.running_job(tenant, id).is_some();
            if !running_here {
                let job = self.job(tenant, id).await?;
                if job.state.is_terminal() || now >= until {
                    return Ok(job);
                }
            }
            // The watch covers jobs run here; the timer covers jobs run by other workers.
            let wake = (tokio::time::Instant::now() + Duration::from_millis(500)).min(until);
            tokio::select! {
                _ = watch.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// 429 straight away when the store found `tenant`'s queue full moments ago.
fn refuse_if_queue_full(tenant: &Tenant) -> Result<(), ApiError> {
    match tenant.quotas.max_queued {
        Some(limit) if tenant.queue_full_for(now_ms()) => Err(queue_quota_error(limit)),
        _ => Ok(()),
    }
}

/// 429 for a tenant at its queue quota.
fn queue_quota_error(limit: u64) -> ApiError {
    ApiError::new(
        429,
        "quota_exceeded",
        format!("this tenant already has {limit} jobs queued, its quota; retry later"),
    )
}

/// Builds the row to store from a validated spec.
fn new_job(
    spec: JobSpec,
    grants: Vec<grants::Grant>,
    tenant: &str,
    remote: Option<&str>,
) -> NewJob {
    let id = spec
        .job_id
        .clone()
        .unwrap_or_else(|| format!("job-{}", uuid::Uuid::now_v7()));
    let mut document = spec.document.clone();
    if let Some(doc) = document.as_object_mut() {
        doc.insert("job_id".into(), json!(id));
        // What the client said about itself stays as its claim; this is what we saw.
        doc.insert(
            "received".into(),
            json!({
                "tenant": tenant,
                "remote_addr": remote,
                "at": rfc3339(now_ms()),
            }),
        );
    }
    NewJob {
        id,
        tenant: tenant.to_string(),
        operation: spec.operation,
        payload: spec.payload,
        images: serde_json::to_value(grants).unwrap_or(Value::Null),
        priority: spec.priority,
        max_attempts: spec.max_attempts,
        timeout_ms: spec.timeout.as_millis().min(u128::from(u64::MAX)) as u64,
        deadline_ms: spec.deadline_ms,
        idempotency_key: spec.idempotency_key,
        cancellable: spec.cancellable,
        document,
    }
}

/// Samples the queue depth for metrics and admission (the whole queue's, and each tenant's
/// for [`Tenant::submit_turn`]).
async fn sample_loop(service: std::sync::Weak<JobService>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(service) = service.upgrade() else {
            return;
        };
        let metrics = &service.metrics;
        metrics
            .pool_slots
            .with_label_values(&["in_use"])
            .set(i64::from(service.executor.sandbox_slots_in_use()));
        metrics
            .handler_load_errors
            .set(service.registry.snapshot().errors.len() as i64);
        match service.store.live_counts().await {
            Ok(counts) => {
                let (queued, running) = (counts.queued as i64, counts.running as i64);
                service.queued.store(queued, Ordering::Relaxed);
                let tenants = &service.executor.config().tenants;
                if tenants.is_multi() {
                    for tenant in tenants.all() {
                        let n = counts
                            .queued_by_tenant
                            .get(&tenant.id)
                            .copied()
                            .unwrap_or(0);
                        tenant.set_queued(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                }
                metrics
                    .queue_depth
                    .with_label_values(&["queued"])
                    .set(queued);
                metrics
                    .queue_depth
                    .with_label_values(&["running"])
                    .set(running);
            }
            Err(e) => tracing::warn!(error = %e, "sampling the queue depth failed"),
        }
    }
}

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The API's view of a job.
pub fn job_view(job: &Job) -> Value {
    let images: Vec<Value> = job
        .images
        .as_array()
        .map(|a| a.iter().filter_map(|g| g.get("name").cloned()).collect())
        .unwrap_or_default();
    let doc = &job.document;
    let mut view = json!({
        "id": job.id,
        "status": job.state.as_str(),
        "operation": job.operation,
        "tenant": job.tenant,
        "priority": job.priority,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "timeout_seconds": job.timeout_ms as f64 / 1000.0,
        "deadline": job.deadline_ms.map(rfc3339),
        "idempotency_key": job.idempotency_key,
        "cancellable": job.cancellable,
        "cancel_requested": job.cancel_requested,
        "images": images,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "started_at": job.started_at.map(rfc3339),
        "finished_at": job.finished_at.map(rfc3339),
        "progress": job.progress,
        "error": job.last_error,
        "usage": job.usage,
        "metadata": doc.get("metadata").cloned().unwrap_or(Value::Null),
        "observability": doc.get("observability").cloned().unwrap_or(Value::Null),
    });
    if job.state == JobState::Queued && job.run_after > now_ms() {
        view["retry_at"] = json!(rfc3339(job.run_after));
    }
    view
}
