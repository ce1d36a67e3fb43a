//! `inspect` of the Debian 12 guest (qcow2, GPT + ext4, ~90 dpkg packages) end to end:
//! submit over HTTP, run the built-in inspect handler, read the result with applications.
//!
//! Starts a worker (HTTP API + executor + SQLite store) in this process on an ephemeral port
//! with the `guest-debian` fixture as its image root, runs one warm-up job (it compiles the
//! component into the cache), then `GK_BENCH_JOBS` jobs one after another (default 50) and
//! reports submit-to-result latency percentiles and the handler's own wall time.
//!
//! Run: `cargo bench -p guestkit-worker --bench inspect`

mod common;

use common::percentile;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn main() {
    let jobs: usize = std::env::var("GK_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let fixtures = guestkit_fixtures::build("guest-debian");
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(data.path().to_path_buf());
    config.image_roots = vec![fixtures.clone()];
    let worker = common::Worker::start(config);
    let base = worker.base.clone();

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (latencies, handler_times, apps) = client_rt.block_on(async move {
        let http = reqwest::Client::new();
        let (_, first) = one_job(&http, &base).await;
        let apps = first["output"]["operating_systems"][0]["applications"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(apps > 0, "no applications listed: {first}");
        let mut latencies = Vec::with_capacity(jobs);
        let mut handler_times = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let (latency, result) = one_job(&http, &base).await;
            latencies.push(latency);
            let wall_us = result["usage"]["wall_time_us"].as_u64().unwrap_or(0);
            handler_times.push(Duration::from_micros(wall_us));
        }
        latencies.sort();
        handler_times.sort();
        (latencies, handler_times, apps)
    });
    worker.stop();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "inspect debian.qcow2 ({apps} applications), {jobs} jobs: submit-to-result p50 {:.1} ms, \
         p90 {:.1} ms, max {:.1} ms; handler wall time p50 {:.1} ms, p90 {:.1} ms (target < 100 ms)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 1.0)),
        ms(percentile(&handler_times, 0.5)),
        ms(percentile(&handler_times, 0.9)),
    );
}

/// Submits one inspect job and long-polls its result; returns the latency and the result.
async fn one_job(http: &reqwest::Client, base: &str) -> (Duration, Value) {
    let started = Instant::now();
    let response = http
        .post(format!("{base}/jobs"))
        .json(&json!({"operation": "inspect", "images": ["debian.qcow2"], "payload": {}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status().as_u16(), 201, "submit failed");
    let job: Value = response.json().await.expect("submit answer");
    let id = job["id"].as_str().expect("job id").to_string();
    loop {
        let response = http
            .get(format!("{base}/jobs/{id}/result?wait=30"))
            .send()
            .await
            .expect("result");
        if response.status().as_u16() == 200 {
            let body: Value = response.json().await.expect("result body");
            assert_eq!(body["status"], "succeeded", "{body}");
            return (started.elapsed(), body);
        }
        assert_eq!(response.status().as_u16(), 409, "unexpected result status");
    }
}
