//! "Accepted survives kill -9": a child process submits and completes jobs on a SQLite
//! file and reports each one only after the store call returned; the parent kills it with
//! SIGKILL mid-stream and checks that everything reported is in the reopened file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use guestkit_store::{JobState, JobStore, NewJob, Outcome, SqliteStore};
use serde_json::json;

const DB_ENV: &str = "GUESTKIT_STORE_CRASH_DB";

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        tenant: "acme".to_owned(),
        operation: "inspect".to_owned(),
        payload: json!({ "id": id }),
        images: json!([]),
        priority: 5,
        max_attempts: 1,
        timeout_ms: 1000,
        deadline_ms: None,
        idempotency_key: None,
        cancellable: true,
        document: json!({ "job_id": id }),
    }
}

/// The child's body; run only by `accepted_jobs_survive_sigkill` through `--ignored`.
#[tokio::test]
#[ignore = "helper process of accepted_jobs_survive_sigkill"]
async fn crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        panic!("{DB_ENV} not set: this is a helper, run accepted_jobs_survive_sigkill");
    };
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("migrate");
    for i in 0.. {
        let id = format!("k-{i}");
        store.submit(job(&id)).await.expect("submit");
        println!("accepted {id}");
        if i % 3 == 0 {
            for lease in store
                .claim("child", 4, Duration::from_secs(60), None)
                .await
                .expect("claim")
            {
                let output = json!({ "done": lease.job.id });
                let outcome = Outcome::Succeeded {
                    output,
                    usage: json!({}),
                };
                store.complete(&lease, outcome).await.expect("complete");
                println!("completed {}", lease.job.id);
            }
        }
    }
}

#[tokio::test]
async fn accepted_jobs_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut accepted = Vec::new();
    let mut completed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(id) = line.strip_prefix("accepted ") {
            accepted.push(id.to_owned());
        } else if let Some(id) = line.strip_prefix("completed ") {
            completed.push(id.to_owned());
        }
        if accepted.len() >= 300 {
            break;
        }
    }
    // Child::kill sends SIGKILL on Unix: no destructor, no checkpoint, no close.
    child.kill().expect("kill child");
    let status = child.wait().expect("wait child");
    assert!(
        !status.success(),
        "the child must have been killed, got {status:?}"
    );
    assert_eq!(accepted.len(), 300, "child stopped early");
    assert!(!completed.is_empty());

    let store = SqliteStore::open(&path).await.expect("reopen");
    store.migrate().await.expect("migrate");
    for id in &accepted {
        let job = store.get(None, id).await.expect("get");
        assert!(job.is_some(), "accepted job {id} lost by kill -9");
    }
    for id in &completed {
        let job = store.get(None, id).await.expect("get").expect("present");
        assert_eq!(job.state, JobState::Succeeded, "{id}");
        let result = store
            .result(None, id)
            .await
            .expect("result")
            .expect("result row");
        assert_eq!(result.output, json!({ "done": id }));
    }
    store.close().await;
}
