//! Hostile-input suite for a multi-tenant worker: a real daemon started with a tenants
//! file, driven over real HTTP by tenants that try to reach each other's jobs, handlers and
//! images, send malformed requests, flood the queue and run handlers that try to exceed
//! every quota. Each attack must be refused with the right status, show up in the audit
//! log, and leave the worker serving.

mod common;

use common::{Daemon, Http, Opts, metric};
use guestkit_worker::tenants::hash_token;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ALPHA: &str = "alpha-secret-token";
const BETA: &str = "beta-secret-token";
const GAMMA: &str = "gamma-secret-token";

/// A daemon with three tenants: alpha (private hostile handler, tight per-job limits and
/// 2 jobs at once), beta (echo only) and gamma (private hostile handler, 1 job at once and
/// at most 20 queued).
struct World {
    daemon: Daemon,
    _dir: tempfile::TempDir,
    images_a: PathBuf,
    images_b: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let images_a = dir.path().join("images-a");
    let images_b = dir.path().join("images-b");
    for d in [&data, &images_a, &images_b] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(images_a.join("a.img"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(images_b.join("b.img"), vec![0u8; 1 << 20]).unwrap();
    // Ways out of alpha's root: a symlink to beta's image and one to a device.
    std::os::unix::fs::symlink(images_b.join("b.img"), images_a.join("escape.img")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", images_a.join("device.img")).unwrap();
    let hostile = guestkit_fixtures::component("hostile", &[]);
    for tenant in ["alpha", "gamma"] {
        let private = data.join("handlers").join(tenant);
        std::fs::create_dir_all(&private).unwrap();
        std::fs::copy(&hostile, private.join("hostile.wasm")).unwrap();
    }
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        format!(
            r#"
[[tenants]]
id = "alpha"
token_hashes = ["{a}"]
handlers = ["*"]
image_roots = ["{ia}"]
[tenants.quotas]
max_concurrent = 2
fuel = 50000000
memory_mib = 32
timeout_seconds = 5

[[tenants]]
id = "beta"
token_hashes = ["{b}"]
handlers = ["guestkit.echo"]
image_roots = ["{ib}"]

[[tenants]]
id = "gamma"
token_hashes = ["{g}"]
handlers = ["echo"]
[tenants.quotas]
max_concurrent = 1
max_queued = 20
"#,
            a = hash_token(ALPHA),
            b = hash_token(BETA),
            g = hash_token(GAMMA),
            ia = images_a.display(),
            ib = images_b.display(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(
        &data,
        &Opts {
            args: vec![
                "--tenants".into(),
                tenants.display().to_string(),
                "--max-concurrent".into(),
                "4".into(),
            ],
            handlers: Vec::new(),
        },
    );
    World {
        daemon,
        _dir: dir,
        images_a,
        images_b,
    }
}

fn job(operation: &str, payload: Value) -> Value {
    json!({"operation": operation, "payload": payload})
}

fn with_image(operation: &str, image: &str) -> Value {
    json!({"operation": operation, "payload": {}, "images": [{"path": image}]})
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_field: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    assert!(body["error"]["code"].is_string(), "JSON error body: {body}");
    if let Some(field) = want_field {
        assert_eq!(body["error"]["field"], field, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_and_cross_tenant_access_on_every_endpoint() {
    let w = world();
    let alpha = w.daemon.http_as(Some(ALPHA));
    let beta = w.daemon.http_as(Some(BETA));
    let nobody = w.daemon.http_as(None);
    let forger = w.daemon.http_as(Some("alpha-secret-token-but-not-quite"));

    // Health and the API description are public (probes); everything else needs a token.
    assert_eq!(nobody.get("/health").await.0, 200);
    assert_eq!(nobody.get("/openapi.json").await.0, 200);
    let id = alpha
        .submit(&job("echo", json!({"secret": "alpha's"})))
        .await;
    let endpoints: Vec<(&str, String)> = vec![
        ("GET", "/jobs".into()),
        ("POST", "/jobs".into()),
        ("GET", format!("/jobs/{id}")),
        ("GET", format!("/jobs/{id}/result")),
        ("GET", format!("/jobs/{id}/events")),
        ("POST", format!("/jobs/{id}/cancel")),
        ("GET", "/handlers".into()),
        ("GET", "/capabilities".into()),
    ];
    for client in [&nobody, &forger] {
        for (method, path) in &endpoints {
            let (status, body) = match *method {
                "GET" => client.get(path).await,
                _ => client.post(path, &job("echo", json!({}))).await,
            };
            assert_error(status, &body, 401, None);
        }
    }
    // A malformed Authorization header is refused the same way.
    let raw = reqwest::Client::new()
        .get(format!("{}/api/v1/jobs", alpha.base))
        .header("authorization", format!("Basic {ALPHA}"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 401);
    assert!(raw.headers().contains_key("www-authenticate"));

    // Another tenant's job does not exist for beta, on every endpoint.
    let result = alpha.result(&id).await;
    assert_eq!(result["output"]["echo"]["secret"], "alpha's");
    assert_eq!(result["usage"]["tenant"], "alpha");
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/result"),
        format!("/jobs/{id}/events"),
    ] {
        let (status, body) = beta.get(&path).await;
        assert_error(status, &body, 404, None);
    }
    let (status, body) = beta.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    assert_error(status, &body, 404, None);
    let (_, list) = beta.get("/jobs").await;
    assert!(
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["id"] != id),
        "beta lists alpha's job: {list}"
    );
    let (_, list) = alpha.get("/jobs").await;
    assert!(
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id)
    );

    // A chosen job id lives in its tenant's namespace (`alpha.`): beta can neither take
    // one of alpha's ids nor learn that it exists from a 409.
    let chosen = json!({"operation": "echo", "job_id": "alpha.build-1"});
    assert_eq!(alpha.post("/jobs", &chosen).await.0, 201);
    let (status, body) = alpha.post("/jobs", &chosen).await;
    assert_error(status, &body, 409, Some("job_id"));
    for taken in ["alpha.build-1", "build-1", "alphabuild-1", id.as_str()] {
        let (status, body) = beta
            .post("/jobs", &json!({"operation": "echo", "job_id": taken}))
            .await;
        assert_error(status, &body, 422, Some("job_id"));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("\"beta.\""),
            "{body}"
        );
    }
    let beta_chosen = json!({"operation": "echo", "job_id": "beta.build-1"});
    assert_eq!(beta.post("/jobs", &beta_chosen).await.0, 201);

    // Handlers: alpha's private hostile handler is alpha's alone; beta may run echo only.
    let names = |v: &Value| -> Vec<String> {
        v["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, mine) = alpha.get("/handlers").await;
    assert!(names(&mine).iter().any(|n| n == "test.hostile"), "{mine}");
    let (_, theirs) = beta.get("/handlers").await;
    assert_eq!(names(&theirs), ["guestkit.echo"], "{theirs}");
    let (_, caps) = beta.get("/capabilities").await;
    assert_eq!(caps["operations"], json!(["echo"]), "{caps}");
    for op in ["hostile.spin", "inspect"] {
        let (status, body) = beta.post("/jobs", &job(op, json!({}))).await;
        assert_error(status, &body, 422, Some("operation"));
    }

    // Malformed and oversize requests from an authenticated tenant.
    let (status, body) = alpha
        .post_raw("/jobs", b"{not json".to_vec(), "application/json")
        .await;
    assert_error(status, &body, 400, None);
    let (status, body) = alpha
        .post(
            "/jobs",
            &json!({"operation": "echo", "payload": {}, "sneaky": 1}),
        )
        .await;
    assert_error(status, &body, 422, Some("sneaky"));
    let (status, body) = alpha
        .post(
            "/jobs",
            &json!({"operation": "echo", "job_id": "../../etc/passwd"}),
        )
        .await;
    assert_error(status, &body, 422, Some("job_id"));
    let big = format!(
        r#"{{"operation":"echo","payload":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs", alpha.base))
        .bearer_auth(ALPHA)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    if let Ok(r) = response {
        assert_eq!(r.status().as_u16(), 413);
    }

    // Every refusal is in the audit log and the metrics; the worker still serves.
    let log = w.daemon.log();
    assert!(
        log.contains("auth_failure"),
        "no audit line for auth failures"
    );
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("audit")).collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("submit") && l.contains("alpha")),
        "no audit line for submissions: {audit:#?}"
    );
    let metrics = w.daemon.metrics().await;
    let failures = metric(&metrics, "guestkit_auth_failures_total", &[]).unwrap_or(0.0);
    assert!(failures >= 17.0, "auth failures counted: {failures}");
    assert!(
        metric(
            &metrics,
            "guestkit_tenant_jobs_total",
            &[("tenant", "alpha"), ("outcome", "succeeded")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    let again = alpha
        .submit(&job("echo", json!({"still": "serving"})))
        .await;
    assert_eq!(alpha.result(&again).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_resolve_only_inside_the_tenants_roots() {
    let w = world();
    let alpha = w.daemon.http_as(Some(ALPHA));
    let beta = w.daemon.http_as(Some(BETA));
    let gamma = w.daemon.http_as(Some(GAMMA));
    // Admitted: a regular file under alpha's root, relative or absolute.
    alpha.submit(&with_image("echo", "a.img")).await;
    alpha
        .submit(&with_image(
            "echo",
            w.images_a.join("a.img").to_str().unwrap(),
        ))
        .await;
    let b_abs = w.images_b.join("b.img");
    let attacks: Vec<(&Http, String)> = vec![
        (&alpha, b_abs.display().to_string()),
        (&alpha, "../images-b/b.img".into()),
        (
            &alpha,
            format!("{}/../images-b/b.img", w.images_a.display()),
        ),
        (&alpha, "escape.img".into()),
        (&alpha, "device.img".into()),
        (&alpha, "/dev/zero".into()),
        (&alpha, "/etc/passwd".into()),
        (&alpha, ".".into()),
        (&beta, "a.img".into()),
        (&beta, w.images_a.join("a.img").display().to_string()),
        (&gamma, "a.img".into()),
        (&gamma, "b.img".into()),
    ];
    for (client, path) in attacks {
        let (status, body) = client.post("/jobs", &with_image("echo", &path)).await;
        assert_error(status, &body, 422, Some("images[0]"));
    }
    // Nothing of the refused jobs was stored.
    let (_, list) = alpha.get("/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(w.daemon.http_as(Some(BETA)).get("/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_job_quotas_stop_handlers_that_try_to_exceed_them() {
    let w = world();
    let alpha = w.daemon.http_as(Some(ALPHA));
    // Time: a job may not ask for more than the tenant's 5 s.
    let (status, body) = alpha
        .post(
            "/jobs",
            &json!({"operation": "hostile.sleep", "payload": {"ms": 10},
                    "execution": {"timeout_seconds": 60}}),
        )
        .await;
    assert_error(status, &body, 422, Some("execution.timeout_seconds"));
    // Fuel (50M for alpha), memory (32 MiB for alpha), wall clock (5 s for alpha).
    let cases = [
        ("hostile.spin", json!({}), "fuel_exhausted"),
        ("hostile.alloc", json!({}), "memory_limit"),
        ("hostile.sleep", json!({"ms": 30000}), "timed_out"),
    ];
    let started = Instant::now();
    let mut ids = Vec::new();
    for (op, payload, _) in &cases {
        ids.push(alpha.submit(&job(op, payload.clone())).await);
    }
    for ((op, _, code), id) in cases.iter().zip(&ids) {
        let result = alpha.result(id).await;
        assert_ne!(result["status"], "succeeded", "{op}: {result}");
        let error = &result["error"];
        assert!(
            error["code"] == *code || (*code == "timed_out" && result["status"] == "timed_out"),
            "{op}: {result}"
        );
        if *op == "hostile.spin" {
            let fuel = result["usage"]["fuel_consumed"]
                .as_u64()
                .unwrap_or(u64::MAX);
            assert!(fuel <= 50_000_000, "fuel over the tenant quota: {fuel}");
        }
        if *op == "hostile.alloc" {
            let peak = result["usage"]["peak_memory_bytes"]
                .as_u64()
                .unwrap_or(u64::MAX);
            assert!(peak <= 32 << 20, "memory over the tenant quota: {peak}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the 5 s time quota was not applied"
    );
    // The worker survived all of it.
    let id = alpha.submit(&job("echo", json!({"ok": true}))).await;
    assert_eq!(alpha.result(&id).await["status"], "succeeded");
    let metrics = w.daemon.metrics().await;
    let errors = metric(&metrics, "guestkit_handler_errors_total", &[]).unwrap_or(0.0);
    assert!(errors >= 3.0, "handler errors counted: {errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_from_several_tenants_respect_quotas_and_lose_nothing() {
    let w = world();
    let alpha = w.daemon.http_as(Some(ALPHA));
    let beta = w.daemon.http_as(Some(BETA));
    let gamma = w.daemon.http_as(Some(GAMMA));
    // Gamma runs one job at a time and may queue 20: park it behind a slow job first.
    let blocker = gamma
        .submit(&job("hostile.sleep", json!({"ms": 3000})))
        .await;
    let until = Instant::now() + Duration::from_secs(30);
    while gamma.get(&format!("/jobs/{blocker}")).await.1["status"] != "running" {
        assert!(Instant::now() < until, "gamma's blocker never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Alpha runs at most 2 at once.
    let mut slow = Vec::new();
    for _ in 0..6 {
        slow.push(
            alpha
                .submit(&job("hostile.sleep", json!({"ms": 400})))
                .await,
        );
    }
    // 1,000 submissions at once: 400 alpha, 400 beta, 200 gamma.
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (client, tenant) = match i % 5 {
            0 | 1 => (alpha.clone(), "alpha"),
            2 | 3 => (beta.clone(), "beta"),
            _ => (gamma.clone(), "gamma"),
        };
        tasks.push(tokio::spawn(async move {
            let (status, body) = client.post("/jobs", &job("echo", json!({"i": i}))).await;
            (tenant, status, body)
        }));
    }
    let mut accepted: HashMap<&str, Vec<String>> = HashMap::new();
    let mut refused: HashMap<&str, usize> = HashMap::new();
    let mut max_running_alpha = 0;
    for t in tasks {
        let (tenant, status, body) = t.await.unwrap();
        match status {
            201 => accepted
                .entry(tenant)
                .or_default()
                .push(body["id"].as_str().unwrap().to_string()),
            429 => {
                assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
                *refused.entry(tenant).or_default() += 1;
            }
            other => panic!("{tenant}: unexpected {other} {body}"),
        }
    }
    // Exact queue quota: gamma got 20 in (its blocker runs), the rest 429; nobody else
    // was refused.
    assert_eq!(accepted["gamma"].len(), 20, "gamma accepted");
    assert_eq!(refused.get("gamma"), Some(&180));
    assert_eq!(accepted["alpha"].len(), 400);
    assert_eq!(accepted["beta"].len(), 400);
    assert!(!refused.contains_key("alpha") && !refused.contains_key("beta"));
    // While alpha's slow jobs run, it never has more than 2 running.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, running) = alpha.get("/jobs?status=running&limit=100").await;
        let n = running["jobs"].as_array().unwrap().len();
        max_running_alpha = max_running_alpha.max(n);
        let (_, done) = alpha.get(&format!("/jobs/{}", slow[5])).await;
        if done["status"] == "succeeded" || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        max_running_alpha <= 2,
        "alpha ran {max_running_alpha} at once"
    );
    // Nothing lost: every accepted job finishes once, with its own result.
    for (tenant, ids) in &accepted {
        let client = match *tenant {
            "alpha" => &alpha,
            "beta" => &beta,
            _ => &gamma,
        };
        for id in ids {
            let result = client.result(id).await;
            assert_eq!(result["status"], "succeeded", "{tenant} {id}: {result}");
            assert_eq!(result["attempt"], 1, "{result}");
        }
    }
    assert_eq!(gamma.result(&blocker).await["status"], "succeeded");
    for id in &slow {
        assert_eq!(alpha.result(id).await["status"], "succeeded");
    }
    // Usage is accounted per tenant in the metrics.
    let metrics = w.daemon.metrics().await;
    for tenant in ["alpha", "beta", "gamma"] {
        let done = metric(
            &metrics,
            "guestkit_tenant_jobs_total",
            &[("tenant", tenant), ("outcome", "succeeded")],
        )
        .unwrap_or(0.0);
        assert!(done >= 20.0, "{tenant}: {done}");
        assert!(
            metric(
                &metrics,
                "guestkit_tenant_fuel_consumed_total",
                &[("tenant", tenant)]
            )
            .unwrap_or(0.0)
                > 0.0
        );
    }
}

/// A tenant held to two jobs at a time still runs its queue back to back: each completion
/// starts its next job, without waiting for other submissions or for the worker's poll
/// (every 250 ms: the 20 jobs of 20 ms would take over 2 s that way, 0.2 s this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capped_tenant_runs_its_queue_back_to_back() {
    let w = world();
    let alpha = w.daemon.http_as(Some(ALPHA));
    let mut ids = Vec::new();
    let submitting = Instant::now();
    for _ in 0..20 {
        ids.push(alpha.submit(&job("hostile.sleep", json!({"ms": 20}))).await);
    }
    for id in &ids {
        assert_eq!(alpha.result(id).await["status"], "succeeded");
    }
    let took = submitting.elapsed();
    assert!(
        took < Duration::from_millis(1200),
        "the queue took {took:?}"
    );
}

#[test]
fn tenants_file_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(
        &file,
        "[[tenants]]\nid = \"Not Valid\"\ntoken_hashes = []\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::binary())
        .args([
            "daemon",
            "--listen",
            "127.0.0.1:0",
            "--no-metrics",
            "--tenants",
        ])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tenants[0].id"), "{stderr}");
    // hash-token reads the token from stdin and prints what the file needs.
    let mut child = std::process::Command::new(common::binary())
        .args(["tenant", "hash-token"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        hash_token("s3cret")
    );
}
