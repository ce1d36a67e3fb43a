//! Store throughput: submit_batch + claim + complete_batch of 20,000 jobs, on SQLite (temp
//! file) and PostgreSQL (`GUESTKIT_TEST_POSTGRES_URL`, a scratch schema).
//!
//! `cargo bench --bench throughput` (add `-- sqlite` or `-- postgres` for one backend).

use std::sync::Arc;
use std::time::{Duration, Instant};

use guestkit_store::{JobStore, NewJob, Outcome, PgOptions, PgStore, SqliteStore};
use serde_json::json;
use sqlx::Connection;

const JOBS: usize = 20_000;
const SUBMIT_BATCH: usize = 1_000;
const CLAIM_BATCH: usize = 500;
const WORKERS: usize = 4;

fn job(i: usize, mixed: bool) -> NewJob {
    NewJob {
        id: format!("bench-{i:06}"),
        tenant: "bench".to_owned(),
        operation: "inspect".to_owned(),
        payload: json!({ "image": "disk.qcow2", "checks": ["os", "packages"] }),
        images: json!([{ "path": "disk.qcow2", "format": "qcow2" }]),
        priority: if mixed { (i % 10 + 1) as u8 } else { 5 },
        max_attempts: 3,
        timeout_ms: 60_000,
        deadline_ms: None,
        idempotency_key: Some(format!("idem-{i}")),
        cancellable: true,
        document: json!({ "version": "1.0", "job_id": format!("bench-{i:06}") }),
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn run(name: &str, store: Arc<dyn JobStore>, mixed: bool) {
    let start = Instant::now();
    let jobs: Vec<NewJob> = (0..JOBS).map(|i| job(i, mixed)).collect();
    for chunk in jobs.chunks(SUBMIT_BATCH) {
        let results = store
            .submit_batch(chunk.to_vec())
            .await
            .expect("submit batch");
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(|s| s.created)));
    }
    let submitted = start.elapsed();

    let process = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let store = Arc::clone(&store);
        workers.push(tokio::spawn(async move {
            let worker = format!("bench-worker-{w}");
            let mut done = 0;
            let (mut in_claim, mut in_complete) = (Duration::ZERO, Duration::ZERO);
            loop {
                let t = Instant::now();
                let leases = store
                    .claim(&worker, CLAIM_BATCH, Duration::from_secs(60), None)
                    .await
                    .expect("claim");
                in_claim += t.elapsed();
                if leases.is_empty() {
                    return (done, in_claim, in_complete);
                }
                let items: Vec<_> = leases
                    .into_iter()
                    .map(|lease| {
                        let outcome = Outcome::Succeeded {
                            output: json!({ "os": "linux", "id": lease.job.id }),
                            usage: json!({ "fuel": 1234, "ms": 5 }),
                        };
                        (lease, outcome)
                    })
                    .collect();
                let t = Instant::now();
                let results = store.complete_batch(items).await.expect("complete batch");
                in_complete += t.elapsed();
                done += results.iter().filter(|r| r.is_ok()).count();
            }
        }));
    }
    let mut completed = 0;
    let (mut in_claim, mut in_complete) = (Duration::ZERO, Duration::ZERO);
    for w in workers {
        let (done, claim, complete) = w.await.expect("worker");
        completed += done;
        in_claim += claim;
        in_complete += complete;
    }
    let processed = process.elapsed();
    let total = start.elapsed();
    assert_eq!(completed, JOBS);
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts[&guestkit_store::JobState::Succeeded], JOBS as u64);
    println!(
        "{name}: {JOBS} jobs: submit_batch {:.0} jobs/s ({:.2?}); claim+complete_batch with \
         {WORKERS} workers {:.0} jobs/s ({:.2?}); end-to-end {:.0} jobs/s ({:.2?})",
        rate(JOBS, submitted),
        submitted,
        rate(JOBS, processed),
        processed,
        rate(JOBS, total),
        total
    );
    println!(
        "{name}: time summed over workers: in claim {in_claim:.2?}, in complete_batch {in_complete:.2?}"
    );
    store.close().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    for (label, mixed) in [("same priority", false), ("priorities 1..=10", true)] {
        if wants("sqlite") {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SqliteStore::open(dir.path().join("bench.db"))
                .await
                .expect("open");
            store.migrate().await.expect("migrate");
            run(&format!("sqlite, {label}"), Arc::new(store), mixed).await;
        }
        if wants("postgres") {
            postgres(label, mixed).await;
        }
    }
}

async fn postgres(label: &str, mixed: bool) {
    {
        let url = std::env::var("GUESTKIT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("gk_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL unreachable at {url}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create schema");
        let options = PgOptions {
            schema: Some(schema.clone()),
            ..PgOptions::default()
        };
        let store = PgStore::connect_with(&url, options).await.expect("connect");
        store.migrate().await.expect("migrate");
        run(&format!("postgres, {label}"), Arc::new(store), mixed).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await
            .expect("drop schema");
    }
}
