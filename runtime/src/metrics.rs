//! Prometheus metrics of the worker, served on their own address at `/metrics`.
//!
//! Every metric here is updated by a real code path: the API (submissions), the executor
//! (outcomes, durations, fuel, memory, active jobs, pool use), the queue sampler (depth) and
//! the image grants (bytes read, checksum verifications).

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Buckets for job and handler durations, in seconds: 1 ms to 1 h.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// Buckets for peak memory, in bytes: 64 KiB to 4 GiB.
const MEMORY_BUCKETS: &[f64] = &[
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// The worker's metrics, registered in their own [`Registry`].
pub struct Metrics {
    registry: Registry,
    /// Jobs accepted, by operation.
    pub jobs_submitted: IntCounterVec,
    /// Jobs that reached a terminal state here, by operation and outcome (state).
    pub jobs_completed: IntCounterVec,
    /// Submission to terminal state, by operation and outcome.
    pub job_duration: HistogramVec,
    /// Jobs waiting in the queue, by state (`queued`, `running`), sampled from the store.
    pub queue_depth: IntGaugeVec,
    /// Jobs this worker is running now.
    pub active_jobs: IntGauge,
    /// Handler runs, by handler name and operation.
    pub handler_executions: IntCounterVec,
    /// Handler runs that failed, by handler name and failure code.
    pub handler_errors: IntCounterVec,
    /// Time inside the sandbox per run, by handler name.
    pub handler_duration: HistogramVec,
    /// Fuel burnt by handler runs, by operation.
    pub fuel_consumed: IntCounterVec,
    /// Peak linear memory of handler runs, by operation.
    pub memory_peak: HistogramVec,
    /// Bytes read from granted disk images: `verify` (checksums before the job) and `job`.
    pub disk_bytes_read: IntCounterVec,
    /// Image checksum verifications, by algorithm and result (`match`, `mismatch`, `error`).
    pub checksum_verifications: IntCounterVec,
    /// Instance pool slots, by state (`in_use`, `capacity`).
    pub pool_slots: IntGaugeVec,
    /// Unix time the worker started.
    pub start_time: Gauge,
    /// HTTP requests answered, by route and status code.
    pub http_requests: IntCounterVec,
    /// Handler load errors in the handlers directory right now.
    pub handler_load_errors: IntGauge,
    /// Finished attempts, by tenant and outcome.
    pub tenant_jobs: IntCounterVec,
    /// Fuel burnt, by tenant.
    pub tenant_fuel: IntCounterVec,
    /// Peak linear memory of a job, by tenant.
    pub tenant_memory_peak: HistogramVec,
    /// Wall time inside the sandbox, by tenant.
    pub tenant_wall_seconds: prometheus::CounterVec,
    /// Bytes read from granted images, by tenant.
    pub tenant_disk_bytes_read: IntCounterVec,
    /// Requests refused for a missing or unknown token.
    pub auth_failures: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let jobs_submitted = counter(
            "guestkit_jobs_submitted_total",
            "Jobs accepted, by operation.",
            &["operation"],
        )?;
        let jobs_completed = counter(
            "guestkit_jobs_completed_total",
            "Jobs that reached a terminal state on this worker, by operation and outcome.",
            &["operation", "outcome"],
        )?;
        let job_duration = histogram(
            "guestkit_job_duration_seconds",
            "Time from submission to a terminal state, by operation and outcome.",
            &["operation", "outcome"],
            DURATION_BUCKETS,
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "guestkit_queue_depth",
                "Jobs in the store by non-terminal state.",
            ),
            &["state"],
        )?;
        registry.register(Box::new(queue_depth.clone()))?;
        let active_jobs = IntGauge::new("guestkit_active_jobs", "Jobs this worker is running.")?;
        registry.register(Box::new(active_jobs.clone()))?;
        let handler_executions = counter(
            "guestkit_handler_executions_total",
            "Handler runs, by handler and operation.",
            &["handler", "operation"],
        )?;
        let handler_errors = counter(
            "guestkit_handler_errors_total",
            "Handler runs that failed, by handler and failure code.",
            &["handler", "code"],
        )?;
        let handler_duration = histogram(
            "guestkit_handler_duration_seconds",
            "Time inside the sandbox per handler run.",
            &["handler"],
            DURATION_BUCKETS,
        )?;
        let fuel_consumed = counter(
            "guestkit_fuel_consumed_total",
            "Fuel burnt by handler runs, by operation.",
            &["operation"],
        )?;
        let memory_peak = histogram(
            "guestkit_memory_peak_bytes",
            "Peak linear memory of handler runs, by operation.",
            &["operation"],
            MEMORY_BUCKETS,
        )?;
        let disk_bytes_read = counter(
            "guestkit_disk_bytes_read_total",
            "Bytes read from granted disk images, by what read them (verify, job).",
            &["kind"],
        )?;
        let checksum_verifications = counter(
            "guestkit_checksum_verifications_total",
            "Image checksum verifications, by algorithm and result.",
            &["algorithm", "result"],
        )?;
        let pool_slots = IntGaugeVec::new(
            Opts::new(
                "guestkit_pool_slots",
                "Instance pool slots, by state (in_use, capacity).",
            ),
            &["state"],
        )?;
        registry.register(Box::new(pool_slots.clone()))?;
        let start_time = Gauge::new(
            "guestkit_worker_start_time_seconds",
            "Unix time the worker started.",
        )?;
        registry.register(Box::new(start_time.clone()))?;
        let http_requests = counter(
            "guestkit_http_requests_total",
            "HTTP requests answered, by route and status code.",
            &["route", "status"],
        )?;
        let handler_load_errors = IntGauge::new(
            "guestkit_handler_load_errors",
            "Files in the handlers directory that failed to load.",
        )?;
        registry.register(Box::new(handler_load_errors.clone()))?;
        let tenant_jobs = counter(
            "guestkit_tenant_jobs_total",
            "Finished attempts, by tenant and outcome.",
            &["tenant", "outcome"],
        )?;
        let tenant_fuel = counter(
            "guestkit_tenant_fuel_consumed_total",
            "Fuel burnt by handler runs, by tenant.",
            &["tenant"],
        )?;
        let tenant_memory_peak = histogram(
            "guestkit_tenant_memory_peak_bytes",
            "Peak linear memory of handler runs, by tenant.",
            &["tenant"],
            MEMORY_BUCKETS,
        )?;
        let tenant_wall_seconds = prometheus::CounterVec::new(
            Opts::new(
                "guestkit_tenant_wall_seconds_total",
                "Wall time of handler runs, by tenant.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(tenant_wall_seconds.clone()))?;
        let tenant_disk_bytes_read = counter(
            "guestkit_tenant_disk_bytes_read_total",
            "Bytes read from granted disk images by jobs, by tenant.",
            &["tenant"],
        )?;
        let auth_failures = counter(
            "guestkit_auth_failures_total",
            "API requests refused for a missing, malformed or unknown token.",
            &["reason"],
        )?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        start_time.set(now);
        Ok(Metrics {
            registry,
            jobs_submitted,
            jobs_completed,
            job_duration,
            queue_depth,
            active_jobs,
            handler_executions,
            handler_errors,
            handler_duration,
            fuel_consumed,
            memory_peak,
            disk_bytes_read,
            checksum_verifications,
            pool_slots,
            start_time,
            http_requests,
            handler_load_errors,
            tenant_jobs,
            tenant_fuel,
            tenant_memory_peak,
            tenant_wall_seconds,
            tenant_disk_bytes_read,
            auth_failures,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only on a metric family without metrics, which the
        // encoder skips; report the rare error inline rather than failing the scrape.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# error encoding metrics: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
