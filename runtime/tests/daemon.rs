//! The daemon end to end: a real process, real HTTP, a real SQLite file, real components.

mod common;

use common::{Daemon, Opts, metric, short};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn hostile() -> std::path::PathBuf {
    guestkit_fixtures::component("hostile", &[])
}

fn opts(args: &[&str]) -> Opts {
    Opts {
        args: args.iter().map(|s| s.to_string()).collect(),
        handlers: vec![hostile()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_with_events_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &opts(&[]));
    let http = daemon.http();

    let (status, job) = http
        .post("/jobs", &short("echo", json!({"hello": "world"})))
        .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("job-"));
    let result = http.result(&id).await;
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["output"]["echo"]["hello"], "world");
    assert_eq!(result["usage"]["handler"]["name"], "guestkit.echo");
    assert!(result["usage"]["fuel_consumed"].as_u64().unwrap() > 0);

    let (status, job) = http.get(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempt"], 1);
    assert!(job["finished_at"].is_string());

    let (_, page) = http.get("/jobs?status=succeeded&operation=echo").await;
    assert!(
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id)
    );
    let (_, page) = http.get("/jobs?status=queued").await;
    assert!(page["jobs"].as_array().unwrap().is_empty());

    // The event stream replays the job's life and ends.
    let text = reqwest::get(format!("{}/api/v1/jobs/{id}/events", daemon.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: state"), "{text}");
    assert!(text.contains("\"succeeded\""), "{text}");
    assert!(text.contains("event: end"), "{text}");
    // echo logs at debug; by default that stays out of the job's events.
    assert!(!text.contains("echoing payload"), "{text}");

    let m = daemon.metrics().await;
    let outcome = [("operation", "echo"), ("outcome", "succeeded")];
    assert_eq!(
        metric(&m, "guestkit_jobs_completed_total", &outcome),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "guestkit_jobs_submitted_total",
            &[("operation", "echo")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "guestkit_job_duration_seconds_count", &outcome),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "guestkit_handler_executions_total",
            &[("handler", "guestkit.echo")]
        ),
        Some(1.0)
    );
    assert!(metric(&m, "guestkit_fuel_consumed_total", &[("operation", "echo")]).unwrap() > 0.0);
    assert_eq!(
        metric(
            &m,
            "guestkit_memory_peak_bytes_count",
            &[("operation", "echo")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "guestkit_active_jobs", &[]), Some(0.0));
    assert!(metric(&m, "guestkit_worker_start_time_seconds", &[]).unwrap() > 1.7e9);
    assert!(metric(&m, "guestkit_pool_slots", &[("state", "capacity")]).unwrap() >= 4.0);
    assert!(
        metric(
            &m,
            "guestkit_http_requests_total",
            &[("route", "/api/v1/jobs"), ("status", "201")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(!m.contains("_total_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_can_wait_for_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &opts(&["--job-log-level", "debug"]));
    let http = daemon.http();

    // ?wait: the answer carries the finished job and its result.
    let (status, job) = http
        .post("/jobs?wait=20", &short("echo", json!({"n": 1})))
        .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["output"]["echo"]["n"], 1, "{job}");
    assert_eq!(job["result"]["job_id"], job["id"]);
    // It is the document the result endpoint gives.
    let id = job["id"].as_str().unwrap();
    let (_, stored) = http.get(&format!("/jobs/{id}/result")).await;
    assert_eq!(stored, job["result"]);
    // --job-log-level debug keeps echo's debug line among the job's events.
    let text = reqwest::get(format!("{}/api/v1/jobs/{id}/events", daemon.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("echoing payload"), "{text}");

    // Prefer: wait (RFC 7240) does the same and says it was applied.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs", daemon.api))
        .header("prefer", "respond-async, wait=20")
        .json(&short("echo", json!({"n": 2})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["preference-applied"], "wait=20");
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["result"]["output"]["echo"]["n"], 2, "{job}");

    // A job that outlasts the wait is answered as it stands, without a result.
    let (status, job) = http
        .post(
            "/jobs?wait=0.2",
            &short("hostile.sleep", json!({"ms": 3000})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    assert!(
        job["status"] == "queued" || job["status"] == "running",
        "{job}"
    );
    assert!(job.get("result").is_none(), "{job}");

    // A failed job's answer carries its error.
    let (_, job) = http
        .post("/jobs?wait=20", &short("hostile.panic", json!({})))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["result"]["status"], "failed", "{job}");
    assert!(job["result"]["error"]["code"].is_string(), "{job}");

    // A bad wait is refused before anything is stored.
    for (path, field) in [
        ("/jobs?wait=-1", "wait"),
        ("/jobs?wait=soon", "wait"),
        ("/jobs?wait=1&later=2", "later"),
    ] {
        let (status, body) = http.post(path, &short("echo", json!({}))).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs", daemon.api))
        .header("prefer", "wait=whenever")
        .json(&short("echo", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "prefer", "{body}");
    let (_, page) = http.get("/jobs?limit=100").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 4, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.img"), b"x").unwrap();
    let daemon = Daemon::start(dir.path(), &opts(&["--max-concurrent", "1"]));
    let http = daemon.http();

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"operation": "echo", "bogus": 1}), 422, "bogus"),
        (
            json!({"operation": "echo", "execution": {"priority": 11}}),
            422,
            "execution.priority",
        ),
        (
            json!({"operation": "echo", "execution": {"priority": 0}}),
            422,
            "execution.priority",
        ),
        (
            json!({"operation": "echo", "execution": {"priority": "5"}}),
            422,
            "execution.priority",
        ),
        (
            json!({"operation": "echo", "job_id": "../etc"}),
            422,
            "job_id",
        ),
        (json!({"operation": "echo", "job_id": "a/b"}), 422, "job_id"),
        (json!({"operation": "nope"}), 422, "operation"),
        (
            json!({"operation": "echo", "images": ["missing.img"]}),
            422,
            "images[0]",
        ),
        (
            json!({"operation": "echo", "images": [outside.path().join("secret.img")]}),
            422,
            "images[0]",
        ),
        (
            json!({"operation": "echo", "images": ["../../etc/passwd"]}),
            422,
            "images[0]",
        ),
        (
            json!({"version": "1.0", "operation": "echo", "payload": {"data": 1},
                   "constraints": {"require_privileged": true}}),
            422,
            "constraints.require_privileged",
        ),
        (
            json!({"version": "2.0", "operation": "echo", "payload": {"data": 1}}),
            422,
            "version",
        ),
        (json!([1, 2]), 422, "body"),
    ];
    for (doc, want_status, want_field) in cases {
        let (status, body) = http.post("/jobs", &doc).await;
        assert_eq!(status, want_status, "{doc}: {body}");
        assert_eq!(body["error"]["field"], want_field, "{doc}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 3);
    }
    let (status, body) = http
        .post_raw("/jobs", b"{not json".to_vec(), "application/json")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "body");
    let (status, body) = http
        .post_raw("/jobs", b"operation: echo".to_vec(), "text/yaml")
        .await;
    assert_eq!(status, 415, "{body}");
    // Just over the 1 MiB limit. The server answers 413 without reading the rest and closes
    // the connection, so a client still writing may see the connection reset instead of the
    // answer; retry until the answer is read.
    let big = format!(
        r#"{{"operation":"echo","payload":"{}"}}"#,
        "x".repeat((1 << 20) + (16 << 10))
    );
    let mut answer = None;
    for _ in 0..10 {
        let sent = http
            .client
            .post(format!("{}/api/v1/jobs", http.base))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await;
        if let Ok(r) = sent {
            let status = r.status().as_u16();
            answer = Some((status, r.json::<Value>().await.unwrap_or(Value::Null)));
            break;
        }
    }
    let (status, body) = answer.expect("a 413 answer was read");
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");

    // Conflicts and idempotency.
    let id = http
        .submit(&json!({"operation": "echo", "job_id": "fixed-1", "payload": 1}))
        .await;
    assert_eq!(id, "fixed-1");
    let (status, body) = http
        .post("/jobs", &json!({"operation": "echo", "job_id": "fixed-1"}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["field"], "job_id");
    let keyed = json!({"operation": "echo", "execution": {"idempotency_key": "k-1"}});
    let first = http.submit(&keyed).await;
    let (status, again) = http.post("/jobs", &keyed).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first);

    // Reads.
    let (status, body) = http.get("/jobs/does-not-exist").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = http.get("/jobs/..%2F..%2Fetc").await;
    assert_eq!(status, 404);
    let (status, body) = http.get("/jobs?status=weird").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "status");
    let (status, body) = http.get("/jobs?colour=red").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "colour");
    let (status, body) = http.get("/jobs?limit=0").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http.get("/nowhere").await;
    assert_eq!(status, 404, "{body}");

    // A job still running has no result yet: 409, not 404.
    let slow = http
        .submit(&short("hostile.sleep", json!({"ms": 1500})))
        .await;
    http.wait_state(&slow, "running").await;
    let (status, body) = http.get(&format!("/jobs/{slow}/result")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_protocol_v1_document_is_accepted_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("images").join("disk.img");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, vec![7u8; 1 << 20]).unwrap();
    let sha = {
        let out = std::process::Command::new("sha256sum")
            .arg(&image)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    let daemon = Daemon::start(dir.path(), &opts(&[]));
    let http = daemon.http();
    let doc = |checksum: &str, size: u64| {
        json!({
            "$schema": "https://guestkit.dev/schemas/job-v1.json",
            "version": "1.0",
            "job_id": format!("v1-{}", &checksum[..8]),
            "created_at": "2026-01-30T10:00:00Z",
            "kind": "VMOperation",
            "operation": "echo",
            "metadata": {"name": "weekly", "labels": {"team": "platform"}},
            "execution": {"idempotency_key": format!("key-{}", &checksum[..8]), "attempt": 1,
                          "max_attempts": 2, "timeout_seconds": 60, "priority": 7,
                          "cancellable": true},
            "constraints": {"required_capabilities": ["echo", "disk.raw"],
                            "required_features": ["lvm"], "minimum_worker_version": "0.1.0",
                            "maximum_disk_size_gb": 1, "require_privileged": false,
                            "allowed_worker_pools": ["default"]},
            "routing": {"worker_id": null, "worker_pool": "default"},
            "payload": {"type": "echo.v1", "data": {
                "image": {"path": "disk.img", "format": "raw",
                          "checksum": format!("sha256:{checksum}"), "size_bytes": size}}},
            "observability": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                              "correlation_id": "batch-1"},
            "audit": {"submitted_by": "tests"}
        })
    };
    let id = http.submit(&doc(&sha, 1 << 20)).await;
    let (_, job) = http.get(&format!("/jobs/{id}")).await;
    assert_eq!(job["priority"], 7);
    assert_eq!(job["max_attempts"], 2);
    assert_eq!(job["timeout_seconds"], 60.0);
    assert_eq!(job["images"], json!(["disk.img"]));
    assert_eq!(job["metadata"]["labels"]["team"], "platform");
    let result = http.result(&id).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["output"]["images"], json!(["disk.img"]));

    // The checksum is verified before the handler runs; a mismatch fails the job for good.
    let wrong = "0".repeat(64);
    let id = http.submit(&doc(&wrong, 1 << 20)).await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["code"], "image_mismatch", "{result}");
    assert_eq!(result["attempt"], 1, "a mismatch is not retried");
    let m = daemon.metrics().await;
    let verified = |r| {
        metric(
            &m,
            "guestkit_checksum_verifications_total",
            &[("result", r)],
        )
    };
    assert_eq!(verified("match"), Some(1.0), "{m}");
    assert_eq!(verified("mismatch"), Some(1.0));
    assert!(metric(&m, "guestkit_disk_bytes_read_total", &[]).unwrap() >= 2.0 * (1 << 20) as f64);

    // size_bytes is enforced too.
    let mut wrong_size = doc(&sha, 12345);
    wrong_size["job_id"] = json!("v1-size");
    wrong_size["execution"]["idempotency_key"] = json!("key-size");
    let id = http.submit(&wrong_size).await;
    let result = http.result(&id).await;
    assert_eq!(result["error"]["code"], "image_mismatch", "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_cancels_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &opts(&["--max-concurrent", "2"]));
    let http = daemon.http();

    // A loop is stopped by its timeout.
    let spin = json!({"operation": "hostile.spin", "execution": {"timeout_seconds": 1}});
    let started = Instant::now();
    let id = http.submit(&spin).await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "timed_out", "{result}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A deadline shorter than the timeout wins.
    let deadline = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() + Duration::from_millis(1500),
    )
    .to_string();
    let id = http
        .submit(
            &json!({"operation": "hostile.sleep", "payload": {"ms": 20000},
                        "execution": {"deadline": deadline, "timeout_seconds": 60}}),
        )
        .await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "timed_out", "{result}");

    // Cancel a running job.
    let id = http
        .submit(&json!({"operation": "hostile.spin", "execution": {"timeout_seconds": 120}}))
        .await;
    http.wait_state(&id, "running").await;
    let (status, body) = http.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 202, "{body}");
    let job = http.wait_state(&id, "cancelled").await;
    assert!(job["finished_at"].is_string());
    let (status, body) = http.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_finished");

    // Not cancellable.
    let id = http
        .submit(
            &json!({"operation": "hostile.sleep", "payload": {"ms": 300},
                        "execution": {"cancellable": false}}),
        )
        .await;
    let (status, body) = http.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_cancellable");

    // A retryable failure is retried up to max_attempts, with backoff.
    let id = http
        .submit(
            &json!({"operation": "hostile.error", "payload": {"message": "flaky"},
                        "execution": {"max_attempts": 2}}),
        )
        .await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["attempt"], 2, "{result}");
    // A deterministic failure is not.
    let id = http
        .submit(&json!({"operation": "hostile.panic", "execution": {"max_attempts": 3}}))
        .await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "failed");
    assert_eq!(result["attempt"], 1);
    assert_eq!(result["error"]["code"], "trap");

    let m = daemon.metrics().await;
    assert!(metric(&m, "guestkit_handler_errors_total", &[("code", "trap")]).unwrap() >= 1.0);
    assert!(
        metric(
            &m,
            "guestkit_jobs_completed_total",
            &[("outcome", "timed_out")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        metric(
            &m,
            "guestkit_jobs_completed_total",
            &[("outcome", "cancelled")]
        )
        .unwrap()
            >= 1.0
    );
}

/// Largest number of jobs whose [started_at, finished_at] intervals overlap.
fn max_overlap(jobs: &[Value]) -> usize {
    let mut points = Vec::new();
    for j in jobs {
        let at = |k: &str| {
            humantime::parse_rfc3339(j[k].as_str().unwrap())
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        points.push((at("started_at"), 1));
        points.push((at("finished_at"), -1));
    }
    points.sort();
    let (mut now, mut max) = (0i64, 0i64);
    for (_, d) in points {
        now += d;
        max = max.max(now);
    }
    max as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_runs_that_many_at_once_and_priority_orders_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &opts(&["--max-concurrent", "3"]));
    let http = daemon.http();
    let mut ids = Vec::new();
    for _ in 0..9 {
        ids.push(
            http.submit(&short("hostile.sleep", json!({"ms": 600})))
                .await,
        );
    }
    let mut jobs = Vec::new();
    for id in &ids {
        http.result(id).await;
        jobs.push(http.get(&format!("/jobs/{id}")).await.1);
    }
    assert_eq!(max_overlap(&jobs), 3, "{jobs:?}");

    // Priority: with every slot busy, a later high-priority job starts before earlier
    // low-priority ones.
    let mut blockers = Vec::new();
    for _ in 0..3 {
        blockers.push(
            http.submit(&short("hostile.sleep", json!({"ms": 800})))
                .await,
        );
    }
    for b in &blockers {
        http.wait_state(b, "running").await;
    }
    let low: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                http.submit(&json!({"operation": "echo", "execution": {"priority": 1}}))
                    .await,
            );
        }
        v
    };
    let high = http
        .submit(&json!({"operation": "echo", "execution": {"priority": 10}}))
        .await;
    let started = |j: &Value| j["started_at"].as_str().unwrap().to_string();
    http.result(&high).await;
    let high_job = http.get(&format!("/jobs/{high}")).await.1;
    for id in &low {
        http.result(id).await;
        let job = http.get(&format!("/jobs/{id}")).await.1;
        assert!(started(&high_job) <= started(&job), "{high_job} vs {job}");
    }
}

/// Sends SIGTERM once job `id` runs, expects a clean exit, and reads the job from the store.
async fn terminate_while_running(
    daemon: &mut Daemon,
    data_dir: &std::path::Path,
    id: &str,
) -> guestkit_store::Job {
    daemon.http().wait_state(id, "running").await;
    assert_eq!(
        daemon.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        daemon.log()
    );
    let store = guestkit_store::open_store(data_dir.join("jobs.db").to_str().unwrap())
        .await
        .unwrap();
    let job = store.get(None, id).await.unwrap().unwrap();
    store.close().await;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_jobs_or_releases_them() {
    let dir = tempfile::tempdir().unwrap();
    // Long grace: the running job finishes, and the daemon exits 0.
    let mut daemon = Daemon::start(dir.path(), &opts(&["--shutdown-grace", "20"]));
    let http = daemon.http();
    let id = http
        .submit(&short("hostile.sleep", json!({"ms": 1500})))
        .await;
    let job = terminate_while_running(&mut daemon, dir.path(), &id).await;
    assert_eq!(job.state, guestkit_store::JobState::Succeeded);

    // Short grace: the running job is given back, not failed, and runs after a restart.
    let mut daemon = Daemon::start(dir.path(), &opts(&["--shutdown-grace", "0.3"]));
    let http = daemon.http();
    let id = http
        .submit(&short("hostile.sleep", json!({"ms": 3000})))
        .await;
    let job = terminate_while_running(&mut daemon, dir.path(), &id).await;
    assert_eq!(job.state, guestkit_store::JobState::Queued, "{job:?}");
    let daemon = Daemon::start(dir.path(), &opts(&[]));
    let result = daemon.http().result(&id).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["attempt"], 1, "a released attempt is not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_a_stream_of_submissions_exits_promptly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A long grace: a shutdown that waits for it (instead of for the jobs) fails the test.
    let args = ["--max-concurrent", "3", "--shutdown-grace", "60"];
    let mut daemon = Daemon::start(dir.path(), &opts(&args));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut submitters = Vec::new();
    for c in 0..8 {
        let (url, stop) = (format!("{}/api/v1/jobs", daemon.api), stop.clone());
        submitters.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let doc = short("echo", json!({"c": c, "n": n}));
                n += 1;
                // Accepted jobs are counted; refusals and cut connections while the
                // worker stops are not.
                let Ok(r) = client.post(&url).json(&doc).send().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if r.status().as_u16() == 201
                    && let Ok(job) = r.json::<Value>().await
                {
                    ids.push(job["id"].as_str().unwrap().to_string());
                }
            }
            ids
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Submissions, claims and completions are all under way when the signal comes.
    let started = Instant::now();
    let code = tokio::task::block_in_place(|| daemon.terminate(Duration::from_secs(30)));
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ids = Vec::new();
    for s in submitters {
        ids.extend(s.await.unwrap());
    }
    assert_eq!(code, Some(0), "{}", daemon.log());
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(ids.len() > 20, "only {} jobs were accepted", ids.len());

    let daemon = Daemon::start(dir.path(), &opts(&args));
    let http = daemon.http();
    for id in &ids {
        let result = http.result(id).await;
        assert_eq!(result["status"], "succeeded", "{id}: {result}");
        assert_eq!(result["attempt"], 1, "{id}: {result}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_jobs_queued_and_running_then_every_job_finishes_once() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--max-concurrent", "2", "--lease-seconds", "1.5"];
    let mut daemon = Daemon::start(dir.path(), &opts(&args));
    let http = daemon.http();
    let mut ids = Vec::new();
    for i in 0..40 {
        let doc = if i % 4 == 0 {
            short("hostile.sleep", json!({"ms": 400}))
        } else {
            short("echo", json!({"n": i}))
        };
        ids.push(http.submit(&doc).await);
    }
    // Kill while some run and most wait.
    for _ in 0..200 {
        let (_, page) = http.get("/jobs?status=running").await;
        if !page["jobs"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.kill9();

    let daemon = Daemon::start(dir.path(), &opts(&args));
    let http = daemon.http();
    for id in &ids {
        let result = http.result(id).await;
        assert_eq!(result["status"], "succeeded", "{id}: {result}");
    }
    // Exactly once: one terminal state event per job, one result row.
    let store = guestkit_store::open_store(dir.path().join("jobs.db").to_str().unwrap())
        .await
        .unwrap();
    for id in &ids {
        let events = store.events_since(id, 0, 1000).await.unwrap();
        let finished = events
            .iter()
            .filter(|e| e.kind == "state" && e.data["state"] == "succeeded")
            .count();
        assert_eq!(finished, 1, "{id}: {events:?}");
        assert!(store.result(None, id).await.unwrap().is_some());
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &opts(&["--max-concurrent", "1", "--max-queued", "3"]),
    );
    let http = daemon.http();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, body) = http
            .post("/jobs", &short("hostile.sleep", json!({"ms": 2000})))
            .await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "queue_full");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 429),
        "{statuses:?}"
    );

    // The sampler publishes the queue and the pool as they are.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let m = daemon.metrics().await;
        let queued = metric(&m, "guestkit_queue_depth", &[("state", "queued")]);
        let running = metric(&m, "guestkit_queue_depth", &[("state", "running")]);
        let in_use = metric(&m, "guestkit_pool_slots", &[("state", "in_use")]);
        let active = metric(&m, "guestkit_active_jobs", &[]);
        if queued >= Some(1.0) && running == Some(1.0) && in_use >= Some(1.0) && active == Some(1.0)
        {
            break;
        }
        assert!(Instant::now() < until, "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_capabilities_health_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &opts(&[]));
    let http = daemon.http();
    let (status, doc) = http.get("/handlers").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = doc["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"guestkit.echo"), "{doc}");
    assert!(
        doc["handlers"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // Hot reload: a broken file shows up as a load error, without a restart.
    std::fs::write(dir.path().join("handlers").join("broken.wasm"), b"not wasm").unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, doc) = http.get("/handlers").await;
        if doc["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["file"] == "broken.wasm")
        {
            break;
        }
        assert!(Instant::now() < until, "{doc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let m = daemon.metrics().await;
        if metric(&m, "guestkit_handler_load_errors", &[]) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < until, "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (status, caps) = http.get("/capabilities").await;
    assert_eq!(status, 200);
    assert!(
        caps["operations"]
            .as_array()
            .unwrap()
            .contains(&json!("echo"))
    );
    assert_eq!(caps["protocol_versions"], json!(["1.0"]));
    let (status, health) = http.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "ok");

    let (status, spec) = http.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/result",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/jobs/{id}/events",
        "/api/v1/handlers",
        "/api/v1/capabilities",
        "/api/v1/health",
        "/api/v1/openapi.json",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is not documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_logs_stream_as_events() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &opts(&[]));
    let http = daemon.http();
    let id = http
        .submit(&short("hostile.log-flood", json!({"lines": 5})))
        .await;
    let id2 = http
        .submit(&short("hostile.progress", json!({"steps": 3})))
        .await;
    http.result(&id).await;
    http.result(&id2).await;
    let text = reqwest::get(format!("{}/api/v1/jobs/{id}/events", daemon.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for i in 0..5 {
        assert!(text.contains(&format!("line {i}")), "{text}");
    }
    let log_at = text.find("line 4").unwrap();
    let end_at = text.find("event: end").unwrap();
    assert!(log_at < end_at, "logs come before the end: {text}");
    // Resuming after an event id skips what was seen.
    let first_id: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let resumed = reqwest::Client::new()
        .get(format!("{}/api/v1/jobs/{id}/events", daemon.api))
        .header("last-event-id", first_id.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!resumed.contains(&format!("id: {first_id}\n")), "{resumed}");
    let (_, job) = http.get(&format!("/jobs/{id2}")).await;
    assert_eq!(job["progress"]["done"], 3, "{job}");
    assert_eq!(job["progress"]["total"], 3);
}

/// A fresh schema on the test PostgreSQL, as a URL whose connections use it.
fn postgres_schema_url() -> String {
    let base = std::env::var("GUESTKIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!(
        "gk_e2e_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let status = std::process::Command::new("psql")
        .args([base.as_str(), "-qc", &format!("CREATE SCHEMA {schema}")])
        .status()
        .expect("psql (PostgreSQL is required by these tests)");
    assert!(status.success(), "creating schema {schema}");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_postgres_queue_run_each_job_once() {
    let url = postgres_schema_url();
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let args = ["--database-url", url.as_str(), "--max-concurrent", "4"];
    let a = Daemon::start(a_dir.path(), &opts(&args));
    let b = Daemon::start(b_dir.path(), &opts(&args));
    let (ha, hb) = (a.http(), b.http());
    let mut ids = Vec::new();
    for i in 0..120 {
        let http = if i % 2 == 0 { &ha } else { &hb };
        let doc = if i % 10 == 0 {
            short("hostile.sleep", json!({"ms": 100}))
        } else {
            short("echo", json!({"i": i}))
        };
        ids.push(http.submit(&doc).await);
    }
    let mut workers = std::collections::BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        // Either worker answers for any job: the queue is shared.
        let http = if i % 3 == 0 { &hb } else { &ha };
        let result = http.result(id).await;
        assert_eq!(result["status"], "succeeded", "{result}");
        assert_eq!(result["attempt"], 1, "{result}");
        workers.insert(result["usage"]["worker"].as_str().unwrap().to_string());
    }
    assert_eq!(workers.len(), 2, "both workers took jobs: {workers:?}");
    let store = guestkit_store::open_store(&url).await.unwrap();
    for id in &ids {
        let events = store.events_since(id, 0, 1000).await.unwrap();
        let runs = events
            .iter()
            .filter(|e| e.kind == "state" && e.data["state"] == "running")
            .count();
        assert_eq!(runs, 1, "{id} ran once: {events:?}");
    }
    store.close().await;
}

/// Kills the NBD server when the test ends.
struct NbdServer(std::process::Child);

impl Drop for NbdServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_served_over_nbd_are_read_when_the_server_is_allowed() {
    let fixtures = guestkit_fixtures::build("fs-images");
    let sockets = tempfile::tempdir().unwrap();
    let qcow2 = sockets.path().join("ext4.qcow2");
    let converted = std::process::Command::new("qemu-img")
        .args(["convert", "-q", "-O", "qcow2"])
        .arg(fixtures.join("ext4.img"))
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(converted.success());
    let socket = sockets.path().join("ext4.sock");
    let _server = NbdServer(
        std::process::Command::new("qemu-nbd")
            .args(["--read-only", "--persistent", "--format=qcow2", "--socket"])
            .arg(&socket)
            .arg(&qcow2)
            .spawn()
            .expect("qemu-nbd"),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < until, "qemu-nbd did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let allow = sockets.path().to_str().unwrap().to_string();
    let daemon = Daemon::start(
        dir.path(),
        &Opts {
            args: vec!["--nbd-allow".into(), allow],
            handlers: vec![guestkit_fixtures::component("disktool", &[])],
        },
    );
    let http = daemon.http();
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    let id = http
        .submit(&json!({"operation": "disk.read", "images": [uri],
                        "payload": {"volume": "disk", "path": "/etc/hostname"}}))
        .await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["output"]["text"], "guest-under-test\n");
    assert!(result["usage"]["disk_bytes_read"].as_u64().unwrap() > 0);

    // A server outside the allowed ones is refused at submission; so is a TCP server.
    let elsewhere = format!("nbd+unix:///?socket={}/../x.sock", sockets.path().display());
    for image in [
        elsewhere.as_str(),
        "nbd+unix:///?socket=/tmp/other.sock",
        "nbd://127.0.0.1:10809/",
    ] {
        let (status, body) = http
            .post(
                "/jobs",
                &json!({"operation": "disk.read", "images": [image]}),
            )
            .await;
        assert_eq!(status, 422, "{image}: {body}");
        assert_eq!(body["error"]["field"], "images[0]", "{body}");
    }
}
