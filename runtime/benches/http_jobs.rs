//! Durable echo jobs over HTTP: submit, run, complete, read the result.
//!
//! Starts a worker (HTTP API + executor + store) in this process on an ephemeral port and
//! drives it with `GK_BENCH_CLIENTS` concurrent clients (default 32), `GK_BENCH_JOBS` jobs in
//! all (default 20000). Each job is durable: stored before the submission is answered, its
//! completion and result committed before the result is answered. Two ways of asking:
//!
//! - `wait`: one request per job, `POST /jobs?wait=30`, answered with the result;
//! - `poll`: `POST /jobs`, then `GET /jobs/{id}/result?wait=30`;
//! - `pipelined` (only when `GK_BENCH_MODE=pipelined`): each client submits without waiting
//!   for the previous result, a waiter per job reads it.
//!
//! Reports completed jobs per second and submit-to-result latency percentiles for each mode
//! (`GK_BENCH_MODE` picks one), for SQLite and, when one is reachable, PostgreSQL
//! (`GUESTKIT_TEST_POSTGRES_URL`, default the local server).
//!
//! Run: `cargo bench -p guestkit-worker --bench http_jobs`

mod common;

use common::{env_usize, percentile};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The same allocator as the worker binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Figures {
    jobs: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Wait,
    Poll,
    Pipelined,
}

fn run(name: &str, database_url: Option<String>, mode: Mode) -> Figures {
    let jobs = env_usize("GK_BENCH_JOBS", 20_000);
    let clients = env_usize("GK_BENCH_CLIENTS", 32);
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(data.path().to_path_buf());
    config.database_url = database_url;
    config.executor.max_concurrent = env_usize("GK_BENCH_CONCURRENT", 32);
    if let Ok(ms) = std::env::var("GK_BENCH_POLL_MS") {
        config.executor.poll_interval =
            Duration::from_millis(ms.parse().expect("GK_BENCH_POLL_MS"));
    }
    let worker = common::Worker::start(config);
    let base = worker.base.clone();
    let client_rt = common::client_runtime();
    let figures = client_rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .build()
            .expect("client");
        // Warm up connections and the handler.
        for _ in 0..clients.min(16) {
            one_job(&http, &base, 0, mode).await;
        }
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let http = http.clone();
            let base = base.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                if mode != Mode::Pipelined {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= jobs {
                            return latencies;
                        }
                        latencies.push(one_job(&http, &base, i, mode).await);
                    }
                }
                // Pipelined: submit without waiting for the previous result; a waiter per
                // job reads its result.
                let mut waiters = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= jobs {
                        break;
                    }
                    let started = Instant::now();
                    let id = submit(&http, &base, i).await;
                    let http = http.clone();
                    let base = base.clone();
                    waiters.push(tokio::spawn(async move {
                        wait_result(&http, &base, &id).await;
                        started.elapsed()
                    }));
                }
                for w in waiters {
                    latencies.push(w.await.expect("waiter"));
                }
                latencies
            }));
        }
        let mut latencies = Vec::with_capacity(jobs);
        for t in tasks {
            latencies.extend(t.await.expect("client task"));
        }
        let elapsed = started.elapsed();
        latencies.sort();
        Figures {
            jobs,
            elapsed,
            latencies,
        }
    });
    worker.stop();
    println!(
        "{name:<10} {:<9} {} jobs in {:.2} s: {:.0} jobs/s; submit-to-result p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({clients} clients)",
        format!("{mode:?}").to_lowercase(),
        figures.jobs,
        figures.elapsed.as_secs_f64(),
        figures.jobs as f64 / figures.elapsed.as_secs_f64(),
        percentile(&figures.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&figures.latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&figures.latencies, 0.99).as_secs_f64() * 1e3,
    );
    figures
}

/// Submits one echo job and waits for its result; returns the latency.
async fn one_job(http: &reqwest::Client, base: &str, i: usize, mode: Mode) -> Duration {
    let started = Instant::now();
    if mode == Mode::Wait {
        let job = post_job(http, &format!("{base}/jobs?wait=30"), i).await;
        match job["result"]["status"].as_str() {
            Some(status) => assert_eq!(status, "succeeded", "{job}"),
            None => wait_result(http, base, job["id"].as_str().expect("job id")).await,
        }
    } else {
        let id = submit(http, base, i).await;
        wait_result(http, base, &id).await;
    }
    started.elapsed()
}

/// Submits one echo job; returns its id.
async fn submit(http: &reqwest::Client, base: &str, i: usize) -> String {
    let job = post_job(http, &format!("{base}/jobs"), i).await;
    job["id"].as_str().expect("job id").to_string()
}

/// POSTs echo job `i` to `url`; returns the 201 answer.
async fn post_job(http: &reqwest::Client, url: &str, i: usize) -> serde_json::Value {
    let response = http
        .post(url)
        .json(&json!({"operation": "echo", "payload": {"i": i}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status().as_u16(), 201, "submit failed");
    response.json().await.expect("submit answer")
}

/// Long-polls a job's result until it is there.
async fn wait_result(http: &reqwest::Client, base: &str, id: &str) {
    loop {
        let response = http
            .get(format!("{base}/jobs/{id}/result?wait=30"))
            .send()
            .await
            .expect("result");
        if response.status().as_u16() == 200 {
            let body: serde_json::Value = response.json().await.expect("result body");
            assert_eq!(body["status"], "succeeded", "{body}");
            return;
        }
        assert_eq!(response.status().as_u16(), 409, "unexpected result status");
    }
}

fn postgres_url() -> Option<String> {
    let base = std::env::var("GUESTKIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let addr: std::net::SocketAddr = "127.0.0.1:5432".parse().ok()?;
    if std::env::var_os("GUESTKIT_TEST_POSTGRES_URL").is_none()
        && std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
    {
        return None;
    }
    // A fresh schema per run, so figures do not depend on earlier rows.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!("gk_bench_{}_{run}", std::process::id());
    let status = std::process::Command::new("psql")
        .args([base.as_str(), "-qc", &format!("CREATE SCHEMA {schema}")])
        .status()
        .ok()?;
    status.success().then(|| {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{schema}")
    })
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // `cargo test --benches` runs bench targets with --bench absent; do a tiny run then.
    if !std::env::args().any(|a| a == "--bench") {
        // SAFETY: single-threaded at this point; no other thread reads the environment.
        unsafe {
            std::env::set_var("GK_BENCH_JOBS", "200");
        }
    }
    let modes = match std::env::var("GK_BENCH_MODE").as_deref() {
        Ok("wait") => vec![Mode::Wait],
        Ok("poll") => vec![Mode::Poll],
        Ok("pipelined") => vec![Mode::Pipelined],
        Ok(other) => panic!("GK_BENCH_MODE: {other:?} is not wait, poll or pipelined"),
        Err(_) => vec![Mode::Wait, Mode::Poll],
    };
    for &mode in &modes {
        run("sqlite", None, mode);
    }
    for &mode in &modes {
        match postgres_url() {
            Some(url) => {
                run("postgresql", Some(url), mode);
            }
            None => println!("postgresql: skipped (no server on 127.0.0.1:5432)"),
        }
    }
}
