//! Per-job overhead of the sandbox: new store + instantiate + one `handle` call of the echo
//! handler, measured per job, on one thread and on two threads at once.
//!
//! `cargo bench -p guestkit-worker --bench job_overhead` (set `JOBS` to change the count).

use guestkit_host_api::{Job, NullObserver};
use guestkit_worker::registry::{self, HandlerSource};
use guestkit_worker::{CancelToken, EngineConfig, JobLimits, LoadedHandler, Sandbox};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Runs `jobs` echo jobs on a current-thread runtime, returning each job's latency.
fn worker(sandbox: Arc<Sandbox>, echo: Arc<LoadedHandler>, jobs: usize) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let job = Job {
            id: "bench".into(),
            operation: "echo".into(),
            payload: r#"{"hello":"world"}"#.into(),
            images: vec![],
            attempt: 1,
        };
        let limits = JobLimits::default();
        let observer = Arc::new(NullObserver);
        let cancel = CancelToken::new();
        let mut times = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let started = Instant::now();
            let report = sandbox
                .run(echo.pre(), &job, &limits, observer.clone(), &cancel)
                .await;
            times.push(started.elapsed());
            assert!(report.outcome.is_ok());
        }
        times
    })
}

fn report(label: &str, mut times: Vec<Duration>, wall: Duration) {
    let n = times.len();
    times.sort_unstable();
    println!(
        "{label:<10} jobs={n:<7} p50={:>6.1}us p90={:>6.1}us p99={:>6.1}us  throughput={:>8.0} jobs/s",
        percentile(&times, 0.50).as_secs_f64() * 1e6,
        percentile(&times, 0.90).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        n as f64 / wall.as_secs_f64(),
    );
}

fn main() {
    let jobs: usize = std::env::var("JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let sandbox = Sandbox::new(EngineConfig {
        pool_slots: 16,
        ..EngineConfig::default()
    })
    .expect("sandbox");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let echo = guestkit_worker::builtin::BUILTINS
        .iter()
        .find(|(n, _)| *n == "echo")
        .expect("echo built in")
        .1;
    let echo = Arc::new(
        rt.block_on(registry::load(
            &sandbox,
            echo.to_vec(),
            guestkit_worker::engine::digest(echo),
            HandlerSource::Builtin("echo".into()),
        ))
        .expect("loading echo"),
    );

    // Warm the pool slots and caches first.
    worker(sandbox.clone(), echo.clone(), 2_000);

    let started = Instant::now();
    let times = worker(sandbox.clone(), echo.clone(), jobs);
    report("1 thread", times, started.elapsed());

    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (s, e) = (sandbox.clone(), echo.clone());
            std::thread::spawn(move || worker(s, e, jobs))
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().expect("bench thread"));
    }
    report("2 threads", all, started.elapsed());
}
