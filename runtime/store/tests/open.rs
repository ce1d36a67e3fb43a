//! `open_store` picks the backend from the URL and migrates.

use guestkit_store::{Error, JobState, NewJob, open_store};
use serde_json::json;

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        tenant: "t".to_owned(),
        operation: "echo".to_owned(),
        payload: json!({}),
        images: json!([]),
        priority: 5,
        max_attempts: 1,
        timeout_ms: 1000,
        deadline_ms: None,
        idempotency_key: None,
        cancellable: true,
        document: json!({}),
    }
}

#[tokio::test]
async fn sqlite_url_and_plain_path_open_the_same_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let path_str = path.to_str().expect("utf-8 temp path");
    let by_url = open_store(&format!("sqlite:{path_str}"))
        .await
        .expect("sqlite: url");
    by_url.submit(job("a")).await.expect("submit");
    by_url.close().await;
    assert!(path.exists());
    let by_path = open_store(path_str).await.expect("plain path");
    let got = by_path
        .get(Some("t"), "a")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.state, JobState::Queued);
    by_path.close().await;
}

#[tokio::test]
async fn unknown_scheme_is_rejected() {
    match open_store("mysql://localhost/db").await {
        Err(Error::Invalid { field: "url", .. }) => {}
        Err(other) => panic!("expected invalid url, got {other}"),
        Ok(_) => panic!("expected invalid url, got a store"),
    }
}
