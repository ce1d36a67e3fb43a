//! The sandbox: one wasmtime engine (pooling allocator, fuel, epochs), the linker every handler
//! is instantiated against, an on-disk compile cache, and the per-job run under limits.

use crate::limits::{JobLimiter, JobLimits};
use anyhow::{Context, Result};
use guestkit_host_api::{
    DiskCtx, HandlerError, HandlerInfo, HandlerPre, HostCtx, Job, Observer, ReportLimits,
};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch ticker advances; the granularity of wall-clock deadlines and cancels.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a handler's stdout/stderr kept per job (the tail of stderr explains panics).
const STDIO_CAPTURE_BYTES: usize = 64 << 10;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances the pooling allocator keeps slots for (concurrent jobs + describe calls).
    pub pool_slots: u32,
    /// Largest linear memory any job may be granted; per-job limits sit below it.
    pub max_memory_bytes: usize,
    /// Where compiled handlers are cached (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Maximum wasm stack per call.
    pub max_wasm_stack: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pool_slots: 128,
            max_memory_bytes: 4 << 30,
            cache_dir: None,
            max_wasm_stack: 1 << 20,
        }
    }
}

/// Store data of one instance: host state of the WIT imports, an empty WASI context, limits.
pub struct InstanceState {
    host: HostCtx,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: JobLimiter,
    deadline: Instant,
    cancel: CancelToken,
    interrupted: Option<Interrupt>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Why the host stopped a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    TimedOut,
    Cancelled,
}

/// A handle to cancel a running job; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(tokio_util::sync::CancellationToken);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the job to stop: a job blocked in a host call is dropped at once, one running
    /// wasm traps within one epoch tick.
    pub fn cancel(&self) {
        self.0.cancel()
    }
    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
    /// Resolves once the token is cancelled.
    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }
}

/// What a job consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Fuel burnt, as the store accounts it. Exact for jobs that return or trap; for a job
    /// stopped by a timeout or cancel while spinning in wasm it can be an underestimate
    /// (compiled code keeps its fuel counter in a register between calls).
    pub fuel_consumed: u64,
    /// Peak linear memory, bytes.
    pub peak_memory_bytes: u64,
    /// Instantiation to return, microseconds.
    pub wall_time_us: u64,
    /// Log lines dropped over the per-job cap.
    pub dropped_log_lines: u32,
    /// Bytes read from the job's granted images (checksums included).
    pub disk_bytes_read: u64,
}

/// Why a job failed. Each variant has a stable [`code`](Self::code) for APIs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    /// The handler rejected the job's input.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The handler cannot serve this request.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The handler reported a failure.
    #[error("handler failed: {0}")]
    HandlerFailed(String),
    /// The job burnt its whole fuel quota.
    #[error("fuel exhausted: the job used its quota of {limit} fuel")]
    FuelExhausted {
        /// The quota.
        limit: u64,
    },
    /// The job asked for more memory than its limit.
    #[error("memory limit exceeded: the job asked for {requested} bytes, its limit is {limit}")]
    MemoryLimit {
        /// Total bytes the refused growth would have reached.
        requested: u64,
        /// The limit.
        limit: u64,
    },
    /// The job ran past its wall-clock limit.
    #[error("timed out after {limit_ms} ms")]
    TimedOut {
        /// The limit in milliseconds.
        limit_ms: u64,
    },
    /// The job was cancelled while running.
    #[error("cancelled")]
    Cancelled,
    /// The wasm stack overflowed (e.g. unbounded recursion).
    #[error("stack overflow")]
    StackOverflow,
    /// The handler trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("trap: {message}")]
    Trap {
        /// The trap and, when the handler printed one, its panic message.
        message: String,
    },
    /// The output was larger than allowed.
    #[error("output of {size} bytes exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// Output size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A single value passed between handler and host (the output, a log line, an argument)
    /// was larger than the per-transfer limit; the host refused to copy it.
    #[error(
        "a value passed between the handler and the host exceeded the transfer limit of {limit} bytes"
    )]
    TransferTooLarge {
        /// The per-transfer limit.
        limit: u64,
    },
    /// The output was not valid JSON.
    #[error("output is not valid JSON: {0}")]
    InvalidOutput(String),
    /// The handler could not be instantiated for this job (e.g. the instance pool is full).
    #[error("instantiation failed: {0}")]
    Instantiate(String),
}

impl JobFailure {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            JobFailure::InvalidInput(_) => "invalid_input",
            JobFailure::Unsupported(_) => "unsupported",
            JobFailure::HandlerFailed(_) => "handler_failed",
            JobFailure::FuelExhausted { .. } => "fuel_exhausted",
            JobFailure::MemoryLimit { .. } => "memory_limit",
            JobFailure::TimedOut { .. } => "timed_out",
            JobFailure::Cancelled => "cancelled",
            JobFailure::StackOverflow => "stack_overflow",
            JobFailure::Trap { .. } => "trap",
            JobFailure::OutputTooLarge { .. } => "output_too_large",
            JobFailure::TransferTooLarge { .. } => "transfer_too_large",
            JobFailure::InvalidOutput(_) => "invalid_output",
            JobFailure::Instantiate(_) => "instantiate",
        }
    }

    /// Whether running the job again may succeed: a handler's own `failed`, a timeout, or
    /// a full instance pool. Deterministic failures (bad input, traps, limits) are final.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            JobFailure::HandlerFailed(_) | JobFailure::TimedOut { .. } | JobFailure::Instantiate(_)
        )
    }
}

/// The outcome of one job run.
#[derive(Debug)]
pub struct RunReport {
    /// The output document, or why there is none.
    pub outcome: Result<serde_json::Value, JobFailure>,
    /// What the run consumed.
    pub usage: Usage,
}

/// The shared sandbox engine. Cheap to share behind an `Arc`; one per process.
pub struct Sandbox {
    engine: wasmtime::Engine,
    linker: Linker<InstanceState>,
    config: EngineConfig,
    engine_hash: String,
    ticker_stop: Arc<AtomicBool>,
    stores_live: Arc<std::sync::atomic::AtomicU32>,
}

/// Counts a live store (one pool slot) for as long as it is held.
struct SlotGuard(Arc<std::sync::atomic::AtomicU32>);

impl SlotGuard {
    fn new(counter: &Arc<std::sync::atomic::AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        SlotGuard(counter.clone())
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Sandbox {
    /// Builds the engine and starts its epoch ticker thread.
    pub fn new(config: EngineConfig) -> Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::default();
        let slots = config.pool_slots.max(1);
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(8))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(8))
            .total_stacks(slots)
            .max_memory_size(config.max_memory_bytes)
            // Keeping a little of each slot resident (and letting the kernel tell which pages
            // were touched) is what makes instantiation take microseconds, not tens of them.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);

        let mut cfg = Config::new();
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .wasm_component_model(true);
        let engine = wasmtime::Engine::new(&cfg)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        guestkit_host_api::add_to_linker(&mut linker, |s: &mut InstanceState| &mut s.host)
            .map_err(anyhow::Error::from)
            .context("linking the guestkit host API")?;

        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..12]);

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the epoch ticker")?;

        Ok(Arc::new(Sandbox {
            engine,
            linker,
            config,
            engine_hash,
            ticker_stop,
            stores_live: Arc::default(),
        }))
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Stores (instance pool slots) in use right now, by jobs and `describe` calls.
    pub fn slots_in_use(&self) -> u32 {
        self.stores_live.load(Ordering::Relaxed)
    }

    /// Compiles a component, through the on-disk cache when one is configured. The cache is
    /// keyed by the engine's compatibility hash and the sha256 of the bytes, so a new wasmtime
    /// or new settings never load a stale artefact.
    pub fn compile(&self, wasm: &[u8], digest: &str) -> Result<Component> {
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, wasm)
                .map_err(anyhow::Error::from)
                .context("compiling component");
        };
        let dir = dir.join(&self.engine_hash);
        let path = dir.join(format!("{digest}.cwasm"));
        if path.is_file() {
            // SAFETY: files in the cache directory are written only by `serialize` below from
            // a component this engine compiled and validated; the name binds them to the
            // engine's compatibility hash and the source's digest. Whoever can write into the
            // worker's cache directory can already replace the worker itself.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compile cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling component")?;
        if let Err(e) = write_cache_entry(&dir, &path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write compile cache entry");
        }
        Ok(component)
    }

    /// Links a compiled component against the host API, checking its imports once.
    pub fn prepare(&self, component: &Component) -> Result<HandlerPre<InstanceState>> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("the component's imports do not match what the worker provides")?;
        HandlerPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export the guestkit handler world")
    }

    fn new_store(
        &self,
        observer: Arc<dyn Observer>,
        limits: &JobLimits,
        cancel: &CancelToken,
        disk: DiskCtx,
    ) -> Result<(Store<InstanceState>, MemoryOutputPipe)> {
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        // No preopens, no environment, no arguments, no network: a handler reaches the
        // outside world only through the guestkit imports.
        let wasi = WasiCtx::builder()
            .stdout(MemoryOutputPipe::new(STDIO_CAPTURE_BYTES))
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .build();
        let state = InstanceState {
            host: HostCtx::new(observer, ReportLimits::default()).with_disk(disk),
            wasi,
            table: ResourceTable::new(),
            limiter: JobLimiter::new(limits),
            deadline: Instant::now() + limits.wall_clock,
            cancel: cancel.clone(),
            interrupted: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel).map_err(anyhow::Error::from)?;
        // The output document crosses the same boundary as import arguments do, so the
        // per-transfer cap must leave room for the largest accepted output.
        store.set_hostcall_fuel(transfer_limit(limits));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            let interrupt = if state.cancel.is_cancelled() {
                Interrupt::Cancelled
            } else if Instant::now() >= state.deadline {
                Interrupt::TimedOut
            } else {
                // Yield at every tick so long jobs share the executor's threads fairly.
                return Ok(wasmtime::UpdateDeadline::Yield(1));
            };
            state.interrupted = Some(interrupt);
            wasmtime::bail!("interrupted: {interrupt:?}")
        });
        Ok((store, stderr))
    }

    /// Calls the handler's `describe` in a sandbox of its own.
    pub async fn describe(&self, pre: &HandlerPre<InstanceState>) -> Result<HandlerInfo> {
        let limits = crate::limits::describe_limits();
        let cancel = CancelToken::new();
        let _slot = SlotGuard::new(&self.stores_live);
        let (mut store, stderr) = self.new_store(
            Arc::new(guestkit_host_api::NullObserver),
            &limits,
            &cancel,
            DiskCtx::default(),
        )?;
        let call = async {
            let handler = pre.instantiate_async(&mut store).await?;
            handler.call_describe(&mut store).await
        };
        let result = match tokio::time::timeout(limits.wall_clock, call).await {
            Ok(result) => result,
            Err(_) => {
                store.data_mut().interrupted = Some(Interrupt::TimedOut);
                Err(wasmtime::format_err!("describe() timed out"))
            }
        };
        result.map_err(|e| {
            let failure = classify(e, &store, &limits, &stderr);
            anyhow::anyhow!("describe() failed: {failure}")
        })
    }

    /// Runs one job in a fresh instance of `pre` under `limits`. The wall-clock limit and
    /// `cancel` stop the job wherever it is: in wasm (epoch interruption) or blocked in a host
    /// call (the call's future is dropped).
    pub async fn run(
        &self,
        pre: &HandlerPre<InstanceState>,
        job: &Job,
        limits: &JobLimits,
        observer: Arc<dyn Observer>,
        cancel: &CancelToken,
    ) -> RunReport {
        self.run_with_disk(pre, job, limits, observer, cancel, DiskCtx::default())
            .await
    }

    /// [`Sandbox::run`] with the job's granted images behind the `disk` interface.
    pub async fn run_with_disk(
        &self,
        pre: &HandlerPre<InstanceState>,
        job: &Job,
        limits: &JobLimits,
        observer: Arc<dyn Observer>,
        cancel: &CancelToken,
        disk: DiskCtx,
    ) -> RunReport {
        let started = Instant::now();
        let _slot = SlotGuard::new(&self.stores_live);
        let (mut store, stderr) = match self.new_store(observer, limits, cancel, disk) {
            Ok(s) => s,
            Err(e) => {
                return RunReport {
                    outcome: Err(JobFailure::Instantiate(format!("{e:#}"))),
                    usage: Usage::default(),
                };
            }
        };
        let deadline = tokio::time::Instant::from_std(store.data().deadline);
        let called = {
            let call = async {
                let handler = match pre.instantiate_async(&mut store).await {
                    Ok(handler) => handler,
                    Err(e) => return Err(Stage::Instantiate(e)),
                };
                handler
                    .call_handle(&mut store, job)
                    .await
                    .map_err(Stage::Call)
            };
            tokio::select! {
                biased;
                result = call => result,
                _ = cancel.cancelled() => Err(Stage::Interrupted(Interrupt::Cancelled)),
                _ = tokio::time::sleep_until(deadline) => Err(Stage::Interrupted(Interrupt::TimedOut)),
            }
        };
        store.data_mut().host.flush();
        let outcome = match called {
            Ok(Ok(output)) => parse_output(output.data, limits),
            Ok(Err(HandlerError::InvalidInput(m))) => Err(JobFailure::InvalidInput(m)),
            Ok(Err(HandlerError::Unsupported(m))) => Err(JobFailure::Unsupported(m)),
            Ok(Err(HandlerError::Failed(m))) => Err(JobFailure::HandlerFailed(m)),
            Err(Stage::Interrupted(why)) => {
                store.data_mut().interrupted.get_or_insert(why);
                Err(classify(
                    wasmtime::format_err!("interrupted"),
                    &store,
                    limits,
                    &stderr,
                ))
            }
            Err(Stage::Instantiate(e))
                if store.data().interrupted.is_none() && e.downcast_ref::<Trap>().is_none() =>
            {
                Err(JobFailure::Instantiate(format!("{e:#}")))
            }
            Err(Stage::Instantiate(e) | Stage::Call(e)) => {
                Err(classify(e, &store, limits, &stderr))
            }
        };
        let usage = usage_of(&mut store, limits, started);
        RunReport { outcome, usage }
    }
}

/// Where a run stopped without a handler result.
enum Stage {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
    Interrupted(Interrupt),
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn usage_of(store: &mut Store<InstanceState>, limits: &JobLimits, started: Instant) -> Usage {
    let remaining = store.get_fuel().unwrap_or(0);
    Usage {
        fuel_consumed: limits.fuel.saturating_sub(remaining),
        peak_memory_bytes: store.data().limiter.peak() as u64,
        wall_time_us: started.elapsed().as_micros() as u64,
        dropped_log_lines: store.data().host.dropped_log_lines(),
        disk_bytes_read: store.data().host.disk().bytes_read(),
    }
}

/// Most bytes one guest-to-host transfer may carry under `limits`.
fn transfer_limit(limits: &JobLimits) -> usize {
    limits
        .hostcall_bytes
        .max(limits.max_output_bytes.saturating_add(64 << 10))
}

fn parse_output(data: String, limits: &JobLimits) -> Result<serde_json::Value, JobFailure> {
    if data.len() > limits.max_output_bytes {
        return Err(JobFailure::OutputTooLarge {
            size: data.len() as u64,
            limit: limits.max_output_bytes as u64,
        });
    }
    serde_json::from_str(&data).map_err(|e| JobFailure::InvalidOutput(e.to_string()))
}

/// Turns a wasmtime error into the reason a person can act on, most specific first.
fn classify(
    error: wasmtime::Error,
    store: &Store<InstanceState>,
    limits: &JobLimits,
    stderr: &MemoryOutputPipe,
) -> JobFailure {
    let state = store.data();
    match state.interrupted {
        Some(Interrupt::Cancelled) => return JobFailure::Cancelled,
        Some(Interrupt::TimedOut) => {
            return JobFailure::TimedOut {
                limit_ms: limits.wall_clock.as_millis() as u64,
            };
        }
        None => {}
    }
    let trap = error.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::OutOfFuel) => {
            return JobFailure::FuelExhausted { limit: limits.fuel };
        }
        Some(Trap::StackOverflow) => return JobFailure::StackOverflow,
        _ => {}
    }
    // wasmtime's error for this is not a public type; its message is stable.
    if trap.is_none() && format!("{error:#}").contains("fuel allocated for hostcalls") {
        return JobFailure::TransferTooLarge {
            limit: transfer_limit(limits) as u64,
        };
    }
    // A refused memory.grow usually surfaces as the guest allocator aborting; say so.
    if let Some(requested) = state.limiter.refused() {
        return JobFailure::MemoryLimit {
            requested: requested as u64,
            limit: limits.memory_bytes as u64,
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    let printed = stderr.contents();
    let printed = String::from_utf8_lossy(&printed);
    let printed = printed.trim();
    if !printed.is_empty() {
        let tail: String = printed
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        message = format!("{message}; handler stderr: {tail}");
    }
    JobFailure::Trap { message }
}

fn write_cache_entry(dir: &Path, path: &Path, component: &Component) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("serialising component")?;
    // Write beside the target and rename, so a concurrent reader never sees half a file.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).context("creating cache temp file")?;
    std::io::Write::write_all(&mut tmp, &bytes).context("writing cache entry")?;
    tmp.persist(path).context("publishing cache entry")?;
    Ok(())
}

/// Feeds `Hash` output into sha256 so the engine's compatibility hash is stable on disk.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Hex sha256 of `bytes`: the identity of a handler.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
