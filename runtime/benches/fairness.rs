//! Fairness between tenants: the submit-to-result latency of a quiet tenant's echo jobs,
//! first on an idle worker, then while another tenant floods the queue (`GK_BENCH_FLOOD`
//! concurrent clients, default 64, each submitting echo jobs back to back and never
//! waiting for results, so the flooder always has a deep queue). Target: the quiet tenant's
//! p50 under flood stays within 2x of its unloaded p50. Idle and flooded measurements
//! alternate for `GK_BENCH_ROUNDS` rounds (default 3) of `GK_BENCH_SAMPLES` jobs each.
//! `GK_BENCH_FLOOD_SUBMITTING`, `GK_BENCH_FLOOD_BACKLOG` and `GK_BENCH_FLOOD_CONCURRENT` set
//! the flooder's `max_submitting`, `backlog` and `max_concurrent` quotas (e.g. 1000000 for
//! the first two to see the worker without them);
//! `GK_BENCH_MODE=wait` has the quiet tenant submit with `?wait` instead of submit-then-poll.
//!
//! Run: `cargo bench -p guestkit-worker --bench fairness`

mod common;

use common::{env_usize, percentile};
use guestkit_worker::tenants::hash_token;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let samples = env_usize("GK_BENCH_SAMPLES", if quick { 20 } else { 300 });
    let flood = env_usize("GK_BENCH_FLOOD", if quick { 8 } else { 64 });
    let rounds = env_usize("GK_BENCH_ROUNDS", if quick { 1 } else { 3 });
    // How the quiet tenant asks: submit, then long-poll the result (the default), or one
    // request that waits for it (`GK_BENCH_MODE=wait`).
    let wait = std::env::var("GK_BENCH_MODE").is_ok_and(|m| m == "wait");
    // The flooder's quotas set from the environment (the others stay the worker's defaults;
    // `max_concurrent` has none).
    let flood_quotas: String = [
        ("GK_BENCH_FLOOD_SUBMITTING", "max_submitting"),
        ("GK_BENCH_FLOOD_BACKLOG", "backlog"),
        ("GK_BENCH_FLOOD_CONCURRENT", "max_concurrent"),
    ]
    .into_iter()
    .filter_map(|(var, quota)| std::env::var(var).ok().map(|v| format!("{quota} = {v}\n")))
    .collect();
    let data = tempfile::tempdir().expect("tempdir");
    let tenants = data.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        format!(
            "[[tenants]]\nid = \"flood\"\ntoken_hashes = [\"{}\"]\nhandlers = [\"*\"]\n\
             [tenants.quotas]\nmax_queued = 5000\n{flood_quotas}\n\
             [[tenants]]\nid = \"quiet\"\ntoken_hashes = [\"{}\"]\nhandlers = [\"*\"]\n",
            hash_token("flood-token"),
            hash_token("quiet-token")
        ),
    )
    .expect("tenants file");
    let mut config = common::config(data.path().join("data"));
    config.tenants_file = Some(tenants);
    config.executor.max_concurrent = env_usize("GK_BENCH_CONCURRENT", 4);
    config.service.max_queued = 1_000_000;
    let worker = common::Worker::start(config);
    let base = worker.base.clone();
    // The flooding clients run on a runtime of their own, and the quiet tenant's client on
    // this thread alone: the two are different clients, and a quiet request's task waiting
    // behind the flood's client tasks would be the load generator's delay, not the worker's.
    let flood_rt = common::client_runtime();
    let flood_http = flood_rt.block_on(async { reqwest::Client::new() });
    let quiet_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let flood_rt = &flood_rt;
    quiet_rt.block_on(async move {
        let http = reqwest::Client::new();
        for _ in 0..10 {
            quiet_job(&http, &base, wait).await;
        }
        // Idle and flooded measurements alternate, so a drift in the machine's speed weighs
        // on both alike; each round's ratio is printed, then the pooled one.
        let (mut idle, mut idle_submits, mut loaded, mut loaded_submits) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            wait_until_drained(&http, &base).await;
            let (i, i_submits) = measure(&http, &base, samples, wait).await;
            let stop = Arc::new(AtomicBool::new(false));
            let flooded = Arc::new(AtomicUsize::new(0));
            let flooders: Vec<_> = (0..flood)
                .map(|_| {
                    let client = flooder(flood_http.clone(), base.clone(), stop.clone(), flooded.clone());
                    flood_rt.spawn(client)
                })
                .collect();
            // Let the flood build a queue first.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let queued_before = queued(&http, &base).await;
            let (flooded_before, window) = (flooded.load(Ordering::Relaxed), Instant::now());
            let (l, l_submits) = measure(&http, &base, samples, wait).await;
            let flood_rate = (flooded.load(Ordering::Relaxed) - flooded_before) as f64
                / window.elapsed().as_secs_f64();
            let queued_after = queued(&http, &base).await;
            stop.store(true, Ordering::Relaxed);
            for f in flooders {
                let _ = f.await;
            }
            println!(
                "round {round}: quiet p50 {:.2} ms idle, {:.2} ms under flood (ratio {:.2}); \
                 flooder accepted {flood_rate:.0} jobs/s, {queued_before}..{queued_after} queued",
                p50(&i),
                p50(&l),
                p50(&l) / p50(&i).max(1e-9)
            );
            idle.extend(i);
            idle_submits.extend(i_submits);
            loaded.extend(l);
            loaded_submits.extend(l_submits);
        }
        for v in [&mut idle, &mut idle_submits, &mut loaded, &mut loaded_submits] {
            v.sort();
        }
        let p99 = |v: &[Duration]| percentile(v, 0.99).as_secs_f64() * 1e3;
        println!(
            "quiet tenant, idle worker:   p50 {:.2} ms, p99 {:.2} ms ({} jobs)",
            p50(&idle),
            p99(&idle),
            idle.len()
        );
        println!(
            "quiet tenant, under flood:   p50 {:.2} ms, p99 {:.2} ms ({} jobs; flooder: {flood} clients)",
            p50(&loaded),
            p99(&loaded),
            loaded.len()
        );
        println!(
            "of which the submit request: p50 {:.2} ms idle, {:.2} ms under flood",
            p50(&idle_submits),
            p50(&loaded_submits)
        );
        println!(
            "ratio p50 loaded/idle: {:.2} (target <= 2.0)",
            p50(&loaded) / p50(&idle).max(1e-9)
        );
    });
    worker.stop();
}

/// The p50 of sorted latencies, in milliseconds.
fn p50(v: &[Duration]) -> f64 {
    percentile(v, 0.5).as_secs_f64() * 1e3
}

/// One flooding client: submits echo jobs back to back, never waiting for results, until
/// `stop`; counts the accepted ones.
async fn flooder(
    http: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
    flooded: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        let r = http
            .post(format!("{base}/jobs"))
            .bearer_auth("flood-token")
            .json(&json!({"operation": "echo", "payload": {"flood": true}}))
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 201 => {
                flooded.fetch_add(1, Ordering::Relaxed);
            }
            // Queue quota reached: the flooder backs off a little.
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Waits until the flooder's queue is empty (the worker is idle again).
async fn wait_until_drained(http: &reqwest::Client, base: &str) {
    while queued(http, base).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Submit-to-result latencies, sorted, and the submit requests' own latencies, sorted.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    wait: bool,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut v = Vec::with_capacity(n);
    let mut submits = Vec::with_capacity(n);
    for _ in 0..n {
        let (total, submit) = quiet_job(http, base, wait).await;
        v.push(total);
        submits.push(submit);
    }
    v.sort();
    submits.sort();
    (v, submits)
}

/// One echo job of the quiet tenant: submit to result, and the submit request alone. With
/// `wait` the job is submitted with `?wait=30`, so one request gives its result (the submit
/// request is then the whole); otherwise the result is long-polled after the submit.
async fn quiet_job(http: &reqwest::Client, base: &str, wait: bool) -> (Duration, Duration) {
    let started = Instant::now();
    let url = if wait {
        format!("{base}/jobs?wait=30")
    } else {
        format!("{base}/jobs")
    };
    let job: serde_json::Value = http
        .post(url)
        .bearer_auth("quiet-token")
        .json(&json!({"operation": "echo", "payload": {"quiet": true}}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("submit answer");
    let submitted = started.elapsed();
    let id = job["id"].as_str().expect("job id");
    if job["status"] == "succeeded" {
        return (started.elapsed(), submitted);
    }
    loop {
        let r = http
            .get(format!("{base}/jobs/{id}/result?wait=30"))
            .bearer_auth("quiet-token")
            .send()
            .await
            .expect("result");
        if r.status().as_u16() == 200 {
            return (started.elapsed(), submitted);
        }
    }
}

/// Jobs the flooding tenant has queued (first page only, up to 1000).
async fn queued(http: &reqwest::Client, base: &str) -> usize {
    let page: serde_json::Value = http
        .get(format!("{base}/jobs?status=queued&limit=1000"))
        .bearer_auth("flood-token")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list body");
    page["jobs"].as_array().map(Vec::len).unwrap_or(0)
}
