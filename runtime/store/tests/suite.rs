//! The shared behaviour suite: every test runs once on SQLite and once on PostgreSQL.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, Kind, LEASE, job, now_ms};
use guestkit_store::{
    CancelOutcome, ClaimRequest, Cycle, Error, HeartbeatStatus, JobState, ListQuery, Outcome,
    ProgressUpdate, StoreConfig, TenantCap,
};
use serde_json::json;

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Kind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Kind::Postgres).await;
                }
            )*
        }
    };
}

suite!(
    submit_and_get,
    list_pagination_and_filters,
    idempotency_and_conflicts,
    submit_batch_per_item_results,
    priority_then_age_order,
    claim_filters_by_operation,
    concurrent_claims_are_exclusive_and_atomic,
    expired_lease_is_reclaimed_with_higher_token,
    expired_lease_on_last_attempt_fails,
    retries_back_off_until_max_attempts,
    deadline_passed_times_out,
    cancel_queued_running_finished,
    events_are_ordered,
    progress_is_fenced,
    release_requeues_without_counting,
    complete_batch_isolates_lost_leases,
    write_cycle_commits_everything_in_order,
    tenant_claims_are_fair_and_capped,
    survives_close_and_reopen,
    rejects_invalid_input,
);

fn ok(usage: u64) -> Outcome {
    Outcome::Succeeded {
        output: json!({ "answer": usage }),
        usage: json!({ "fuel": usage }),
    }
}

async fn submit_and_get(kind: Kind) {
    let h = Harness::new(kind).await;
    let before = now_ms();
    let new = job("j-1");
    let s = h.store.submit(new.clone()).await.expect("submit");
    assert!(s.created);
    let got = h
        .store
        .get(Some("acme"), "j-1")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got, s.job);
    assert_eq!(got.id, new.id);
    assert_eq!(got.payload, new.payload);
    assert_eq!(got.images, new.images);
    assert_eq!(got.document, new.document);
    assert_eq!(got.priority, 5);
    assert_eq!(got.max_attempts, 3);
    assert_eq!(got.timeout_ms, 60_000);
    assert_eq!(got.state, JobState::Queued);
    assert_eq!(got.attempt, 0);
    assert_eq!(got.fencing_token, 0);
    assert!(got.created_at >= before && got.created_at <= now_ms());
    assert_eq!(got.run_after, got.created_at);
    // Tenant isolation: another tenant does not see it; the operator view does.
    assert!(
        h.store
            .get(Some("other"), "j-1")
            .await
            .expect("get")
            .is_none()
    );
    assert!(h.store.get(None, "j-1").await.expect("get").is_some());
    assert!(h.store.get(None, "nope").await.expect("get").is_none());
    assert!(h.store.result(None, "j-1").await.expect("result").is_none());
    let counts = h.store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Queued], 1);
    assert_eq!(counts[&JobState::Succeeded], 0);
    assert_eq!(counts.len(), 6);
    let live = h.store.live_counts().await.expect("live counts");
    assert_eq!((live.queued, live.running), (1, 0));
    let by_tenant: Vec<(&str, u64)> = live
        .queued_by_tenant
        .iter()
        .map(|(t, n)| (t.as_str(), *n))
        .collect();
    assert_eq!(by_tenant, [("acme", 1)]);
    let claimed = h
        .store
        .claim("w1", 4, Duration::from_secs(30), None)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let live = h.store.live_counts().await.expect("live counts");
    assert_eq!((live.queued, live.running), (0, 1));
    h.finish().await;
}

async fn list_pagination_and_filters(kind: Kind) {
    let h = Harness::new(kind).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut j = job(&format!("l-{i:02}"));
        j.tenant = if i % 2 == 0 { "even" } else { "odd" }.to_owned();
        j.operation = if i % 5 == 0 { "profile" } else { "inspect" }.to_owned();
        h.store.submit(j).await.expect("submit");
        ids.push(format!("l-{i:02}"));
    }
    // Walk all pages of 7, newest first; a job submitted mid-walk must not shift pages.
    let mut seen = Vec::new();
    let mut cursor = None;
    for page_no in 0..10 {
        let page = h
            .store
            .list(ListQuery {
                limit: 7,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(page.jobs.len() <= 7);
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        if page_no == 0 {
            h.store.submit(job("late")).await.expect("submit late");
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, expected);

    let odd = h
        .store
        .list(ListQuery {
            tenant: Some("odd".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list odd");
    assert_eq!(odd.jobs.len(), 12);
    assert!(odd.jobs.iter().all(|j| j.tenant == "odd"));
    assert!(odd.next_cursor.is_none());

    let profile_even = h
        .store
        .list(ListQuery {
            tenant: Some("even".into()),
            operation: Some("profile".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    let got: Vec<&str> = profile_even.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(got, vec!["l-20", "l-10", "l-00"]);

    let leases = h.store.claim("w", 3, LEASE, None).await.expect("claim");
    assert_eq!(leases.len(), 3);
    let running = h
        .store
        .list(ListQuery {
            state: Some(JobState::Running),
            ..Default::default()
        })
        .await
        .expect("list running");
    let mut a: Vec<_> = running.jobs.iter().map(|j| j.id.clone()).collect();
    let mut b: Vec<_> = leases.iter().map(|l| l.job.id.clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    let bad = h
        .store
        .list(ListQuery {
            cursor: Some("zz".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(
        bad,
        Err(Error::Invalid {
            field: "cursor",
            ..
        })
    ));
    h.finish().await;
}

async fn idempotency_and_conflicts(kind: Kind) {
    let h = Harness::new(kind).await;
    let mut a = job("i-1");
    a.idempotency_key = Some("key-1".into());
    let first = h.store.submit(a.clone()).await.expect("submit");
    assert!(first.created);
    // Same key, different id: the first job comes back.
    let mut again = job("i-2");
    again.idempotency_key = Some("key-1".into());
    let second = h.store.submit(again).await.expect("resubmit");
    assert!(!second.created);
    assert_eq!(second.job.id, "i-1");
    assert!(h.store.get(None, "i-2").await.expect("get").is_none());
    // Same key in another tenant is independent.
    let mut other = job("i-3");
    other.tenant = "other".into();
    other.idempotency_key = Some("key-1".into());
    assert!(h.store.submit(other).await.expect("other tenant").created);
    // Same id without a key: conflict.
    let dup = h.store.submit(job("i-1")).await;
    assert!(
        matches!(dup, Err(Error::Conflict { field: "id" })),
        "{dup:?}"
    );
    // Concurrent submits with one key: exactly one creates.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            let mut j = job(&format!("race-{i}"));
            j.idempotency_key = Some("race".into());
            store.submit(j).await
        }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for t in tasks {
        let s = t.await.expect("join").expect("submit");
        created += usize::from(s.created);
        ids.insert(s.job.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    h.finish().await;
}

async fn submit_batch_per_item_results(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.submit(job("b-0")).await.expect("submit");
    let mut bad = job("b-bad");
    bad.priority = 11;
    let batch = vec![job("b-1"), job("b-0"), bad, job("b-2"), job("b-1")];
    let results = h.store.submit_batch(batch).await.expect("batch");
    assert_eq!(results.len(), 5);
    assert!(results[0].as_ref().is_ok_and(|s| s.created));
    assert!(matches!(results[1], Err(Error::Conflict { field: "id" })));
    assert!(matches!(
        results[2],
        Err(Error::Invalid {
            field: "priority",
            ..
        })
    ));
    assert!(results[3].as_ref().is_ok_and(|s| s.created));
    assert!(matches!(results[4], Err(Error::Conflict { field: "id" })));
    // What submit_batch returned is exactly what is stored.
    for r in [&results[0], &results[3]] {
        let job = &r.as_ref().expect("created").job;
        let stored = h
            .store
            .get(None, &job.id)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(&stored, job);
    }
    // Idempotency inside one batch and against stored jobs.
    let keyed = |id: &str, key: &str| {
        let mut j = job(id);
        j.idempotency_key = Some(key.to_owned());
        j
    };
    h.store
        .submit(keyed("b-k0", "k0"))
        .await
        .expect("submit keyed");
    // Keys are per tenant: another tenant's k0 is a new job; one batch may hold both.
    let mut other = keyed("b-k4", "k0");
    other.tenant = "globex".to_owned();
    let batch = vec![
        keyed("b-k1", "k0"),
        keyed("b-k2", "k2"),
        keyed("b-k3", "k2"),
        other,
        keyed("b-k5", "k2"),
    ];
    let results = h.store.submit_batch(batch).await.expect("batch");
    let got: Vec<(String, bool)> = results
        .iter()
        .map(|r| {
            let s = r.as_ref().expect("submitted");
            (s.job.id.clone(), s.created)
        })
        .collect();
    let expected: Vec<(String, bool)> = vec![
        ("b-k0".into(), false),
        ("b-k2".into(), true),
        ("b-k2".into(), false),
        ("b-k4".into(), true),
        ("b-k2".into(), false),
    ];
    assert_eq!(got, expected);
    let counts = h.store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Queued], 6);
    h.finish().await;
}

async fn priority_then_age_order(kind: Kind) {
    let h = Harness::new(kind).await;
    let priorities = [1u8, 5, 10, 5, 10, 1, 7];
    for (i, p) in priorities.iter().enumerate() {
        let mut j = job(&format!("p-{i}"));
        j.priority = *p;
        h.store.submit(j).await.expect("submit");
    }
    // One at a time, and then several at once: both follow priority, then age.
    let first = h.store.claim("w", 1, LEASE, None).await.expect("claim");
    assert_eq!(first[0].job.id, "p-2");
    let rest = h.store.claim("w", 10, LEASE, None).await.expect("claim");
    let order: Vec<&str> = rest.iter().map(|l| l.job.id.as_str()).collect();
    assert_eq!(order, vec!["p-4", "p-6", "p-1", "p-3", "p-0", "p-5"]);
    assert!(
        h.store
            .claim("w", 10, LEASE, None)
            .await
            .expect("claim")
            .is_empty()
    );
    h.finish().await;
}

async fn claim_filters_by_operation(kind: Kind) {
    let h = Harness::new(kind).await;
    for (i, op) in ["inspect", "profile", "echo", "inspect"].iter().enumerate() {
        let mut j = job(&format!("o-{i}"));
        j.operation = (*op).to_owned();
        h.store.submit(j).await.expect("submit");
    }
    let none: Vec<String> = Vec::new();
    assert!(
        h.store
            .claim("w", 10, LEASE, Some(&none))
            .await
            .expect("claim")
            .is_empty()
    );
    let ops = vec!["profile".to_owned(), "echo".to_owned()];
    let got = h
        .store
        .claim("w", 10, LEASE, Some(&ops))
        .await
        .expect("claim");
    let mut ids: Vec<&str> = got.iter().map(|l| l.job.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["o-1", "o-2"]);
    let rest = h.store.claim("w", 10, LEASE, None).await.expect("claim");
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|l| l.job.operation == "inspect"));
    h.finish().await;
}

async fn concurrent_claims_are_exclusive_and_atomic(kind: Kind) {
    let h = Harness::new(kind).await;
    const JOBS: usize = 500;
    let batch: Vec<_> = (0..JOBS).map(|i| job(&format!("c-{i:03}"))).collect();
    for r in h.store.submit_batch(batch).await.expect("batch") {
        assert!(r.expect("submitted").created);
    }
    let mut workers = Vec::new();
    for w in 0..8 {
        let store = Arc::clone(&h.store);
        workers.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut claimed = Vec::new();
            loop {
                let leases = store.claim(&worker, 7, LEASE, None).await.expect("claim");
                if leases.is_empty() {
                    break;
                }
                for lease in leases {
                    let n: usize = lease.job.id[2..].parse().expect("index");
                    // A third fail for good, the rest succeed: the result row must exist
                    // exactly for the succeeded ones.
                    let outcome = if n.is_multiple_of(3) {
                        Outcome::Failed {
                            error: json!({ "code": "boom" }),
                            retryable: false,
                            usage: json!({}),
                        }
                    } else {
                        ok(n as u64)
                    };
                    let done = store.complete(&lease, outcome).await.expect("complete");
                    claimed.push((lease.job.id.clone(), done));
                }
            }
            claimed
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("join"));
    }
    assert_eq!(all.len(), JOBS, "every job claimed exactly once");
    let unique: HashSet<_> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), JOBS);
    // What complete returned is exactly what is stored.
    for (id, done) in &all {
        let stored = h.store.get(None, id).await.expect("get").expect("present");
        assert_eq!(&stored, done);
    }
    let counts = h.store.counts().await.expect("counts");
    assert_eq!(
        counts[&JobState::Succeeded] + counts[&JobState::Failed],
        JOBS as u64
    );
    assert_eq!(counts[&JobState::Failed], 167);
    for i in 0..JOBS {
        let id = format!("c-{i:03}");
        let job = h.store.get(None, &id).await.expect("get").expect("present");
        assert_eq!(job.attempt, 1, "{id}");
        assert_eq!(job.fencing_token, 1, "{id}");
        let result = h.store.result(None, &id).await.expect("result");
        assert_eq!(result.is_some(), job.state == JobState::Succeeded, "{id}");
        if let Some(result) = result {
            assert_eq!(result.output, json!({ "answer": i }));
            assert_eq!(result.usage, json!({ "fuel": i }));
            assert_eq!(Some(result.completed_at), job.finished_at);
        }
    }
    h.finish().await;
}

async fn expired_lease_is_reclaimed_with_higher_token(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.submit(job("e-1")).await.expect("submit");
    let stale = h
        .store
        .claim("crashed", 5, Duration::from_millis(100), None)
        .await
        .expect("claim")
        .pop()
        .expect("one lease");
    assert_eq!(stale.job.attempt, 1);
    // Not yet expired: nobody else gets it.
    assert!(
        h.store
            .claim("other", 5, LEASE, None)
            .await
            .expect("claim")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fresh = h
        .store
        .claim("other", 5, LEASE, None)
        .await
        .expect("claim")
        .pop()
        .expect("reclaimed");
    assert_eq!(fresh.job.id, "e-1");
    assert!(fresh.token > stale.token);
    assert_eq!(fresh.job.attempt, 1, "the lost attempt is not charged");
    assert_eq!(fresh.job.lease_owner.as_deref(), Some("other"));
    // The crashed worker's writes are fenced off.
    let late = h.store.complete(&stale, ok(1)).await;
    assert!(matches!(late, Err(Error::LeaseLost { .. })), "{late:?}");
    assert_eq!(
        h.store.heartbeat(&stale, LEASE).await.expect("heartbeat"),
        HeartbeatStatus::Lost
    );
    assert!(matches!(
        h.store.release(&stale).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(h.store.result(None, "e-1").await.expect("result").is_none());
    assert_eq!(
        h.store.heartbeat(&fresh, LEASE).await.expect("heartbeat"),
        HeartbeatStatus::Ok
    );
    let done = h.store.complete(&fresh, ok(2)).await.expect("complete");
    assert_eq!(done.state, JobState::Succeeded);
    let result = h
        .store
        .result(Some("acme"), "e-1")
        .await
        .expect("result")
        .expect("present");
    assert_eq!(result.output, json!({ "answer": 2 }));
    // A heartbeat keeps a short lease alive past its original expiry.
    h.store.submit(job("e-2")).await.expect("submit");
    let kept = h
        .store
        .claim("alive", 1, Duration::from_millis(150), None)
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let status = h.store.heartbeat(&kept, Duration::from_millis(150)).await;
        assert_eq!(status.expect("heartbeat"), HeartbeatStatus::Ok);
    }
    assert!(
        h.store
            .claim("thief", 1, LEASE, None)
            .await
            .expect("claim")
            .is_empty()
    );
    h.store.complete(&kept, ok(3)).await.expect("complete");
    h.finish().await;
}

async fn expired_lease_on_last_attempt_fails(kind: Kind) {
    let h = Harness::new(kind).await;
    let mut j = job("x-1");
    j.max_attempts = 1;
    h.store.submit(j).await.expect("submit");
    // The first lost leases are not charged (the worker died, not the job); after that a
    // job that keeps losing its worker fails.
    for round in 0..4 {
        let lease = h
            .store
            .claim("crashed", 1, Duration::from_millis(50), None)
            .await
            .expect("claim");
        assert_eq!(lease.len(), 1, "claim {round}");
        assert_eq!(lease[0].job.attempt, 1, "a lost lease is not counted");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        h.store
            .claim("w", 1, LEASE, None)
            .await
            .expect("claim")
            .is_empty()
    );
    let job = h
        .store
        .get(None, "x-1")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.last_error.as_ref().map(|e| e["code"].clone()),
        Some(json!("lease_expired"))
    );
    assert!(job.finished_at.is_some());
    assert!(job.lease_owner.is_none());
    h.finish().await;
}

async fn retries_back_off_until_max_attempts(kind: Kind) {
    let config = StoreConfig {
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_millis(300),
    };
    let h = Harness::with_config(kind, config).await;
    h.store.submit(job("r-1")).await.expect("submit");
    let fail = |n: u32| Outcome::Failed {
        error: json!({ "code": "transient", "attempt": n }),
        retryable: true,
        usage: json!({ "attempt": n }),
    };
    for attempt in 1..=3u32 {
        let lease = h
            .store
            .claim("w", 1, LEASE, None)
            .await
            .expect("claim")
            .pop()
            .expect("claimable after backoff");
        assert_eq!(lease.job.attempt, attempt);
        let before = now_ms();
        h.store
            .set_progress(&lease, u64::from(attempt), 9, Some("working"))
            .await
            .expect("progress");
        let after = h
            .store
            .complete(&lease, fail(attempt))
            .await
            .expect("complete");
        let stored = h
            .store
            .get(None, "r-1")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(after, stored);
        assert_eq!(
            after.last_error,
            Some(json!({ "code": "transient", "attempt": attempt }))
        );
        assert_eq!(after.usage, Some(json!({ "attempt": attempt })));
        if attempt < 3 {
            assert_eq!(after.state, JobState::Queued);
            // Equal jitter: at least half the nominal delay (200 ms, then 300 capped).
            let nominal = if attempt == 1 { 200 } else { 300 };
            assert!(after.run_after >= before + nominal / 2, "{after:?}");
            assert!(after.run_after <= now_ms() + nominal, "{after:?}");
            assert!(after.finished_at.is_none());
            // Not runnable during the backoff.
            assert!(
                h.store
                    .claim("w", 1, LEASE, None)
                    .await
                    .expect("claim")
                    .is_empty()
            );
            let wait = (after.run_after - now_ms()).max(0) as u64 + 20;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        } else {
            assert_eq!(after.state, JobState::Failed);
            assert!(after.finished_at.is_some());
        }
    }
    assert!(h.store.result(None, "r-1").await.expect("result").is_none());
    // A non-retryable failure ends the job at once.
    h.store.submit(job("r-2")).await.expect("submit");
    let lease = h
        .store
        .claim("w", 1, LEASE, None)
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    let done = h
        .store
        .complete(
            &lease,
            Outcome::Failed {
                error: json!("bad input"),
                retryable: false,
                usage: json!({}),
            },
        )
        .await
        .expect("complete");
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.attempt, 1);
    h.finish().await;
}

async fn deadline_passed_times_out(kind: Kind) {
    let h = Harness::new(kind).await;
    let mut late = job("d-late");
    late.deadline_ms = Some(now_ms() - 1);
    h.store.submit(late).await.expect("submit");
    let mut fine = job("d-fine");
    fine.deadline_ms = Some(now_ms() + 600_000);
    h.store.submit(fine).await.expect("submit");
    let mut soon = job("d-soon");
    soon.deadline_ms = Some(now_ms() + 300);
    h.store.submit(soon).await.expect("submit");
    let got = h.store.claim("w", 1, LEASE, None).await.expect("claim");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job.id, "d-fine");
    let job_late = h
        .store
        .get(None, "d-late")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(job_late.state, JobState::TimedOut);
    assert_eq!(
        job_late.last_error.as_ref().map(|e| e["code"].clone()),
        Some(json!("deadline_exceeded"))
    );
    // A running job whose worker died and whose deadline then passed ends timed out.
    let soon = h
        .store
        .claim("crashed", 1, Duration::from_millis(50), None)
        .await
        .expect("claim");
    assert_eq!(soon[0].job.id, "d-soon");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        h.store
            .claim("w", 1, LEASE, None)
            .await
            .expect("claim")
            .is_empty()
    );
    let job_soon = h
        .store
        .get(None, "d-soon")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(job_soon.state, JobState::TimedOut);
    // TimedOut reported by the executor is terminal too.
    let fine = &got[0];
    let t = h
        .store
        .complete(
            fine,
            Outcome::TimedOut {
                error: json!("slow"),
                usage: json!({}),
            },
        )
        .await
        .expect("complete");
    assert_eq!(t.state, JobState::TimedOut);
    let counts = h.store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::TimedOut], 3);
    h.finish().await;
}

async fn cancel_queued_running_finished(kind: Kind) {
    let h = Harness::new(kind).await;
    for id in ["k-queued", "k-running", "k-done", "k-release"] {
        h.store.submit(job(id)).await.expect("submit");
    }
    let mut fixed = job("k-fixed");
    fixed.cancellable = false;
    h.store.submit(fixed).await.expect("submit");

    assert_eq!(
        h.store
            .cancel(Some("acme"), "k-queued")
            .await
            .expect("cancel"),
        CancelOutcome::Cancelled
    );
    let q = h
        .store
        .get(None, "k-queued")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(q.state, JobState::Cancelled);
    assert!(q.finished_at.is_some());

    let leases = h.store.claim("w", 10, LEASE, None).await.expect("claim");
    let ids: HashSet<&str> = leases.iter().map(|l| l.job.id.as_str()).collect();
    assert!(
        !ids.contains("k-queued"),
        "a cancelled job is never claimed"
    );
    assert_eq!(ids.len(), 4);
    let lease = |id: &str| {
        leases
            .iter()
            .find(|l| l.job.id == id)
            .expect("lease")
            .clone()
    };

    let running = lease("k-running");
    assert_eq!(
        h.store.heartbeat(&running, LEASE).await.expect("hb"),
        HeartbeatStatus::Ok
    );
    assert_eq!(
        h.store.cancel(None, "k-running").await.expect("cancel"),
        CancelOutcome::Requested
    );
    assert_eq!(
        h.store.heartbeat(&running, LEASE).await.expect("hb"),
        HeartbeatStatus::CancelRequested
    );
    let c = h
        .store
        .complete(
            &running,
            Outcome::Cancelled {
                usage: json!({ "ms": 3 }),
            },
        )
        .await
        .expect("complete");
    assert_eq!(c.state, JobState::Cancelled);

    let done = lease("k-done");
    h.store.complete(&done, ok(1)).await.expect("complete");
    assert_eq!(
        h.store.cancel(None, "k-done").await.expect("cancel"),
        CancelOutcome::AlreadyFinished(JobState::Succeeded)
    );
    assert_eq!(
        h.store.cancel(None, "k-fixed").await.expect("cancel"),
        CancelOutcome::NotCancellable
    );
    assert!(matches!(
        h.store.cancel(None, "missing").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        h.store.cancel(Some("other"), "k-release").await,
        Err(Error::NotFound { .. })
    ));
    // A running job whose cancel was requested is not requeued on release.
    let rel = lease("k-release");
    assert_eq!(
        h.store.cancel(None, "k-release").await.expect("cancel"),
        CancelOutcome::Requested
    );
    h.store.release(&rel).await.expect("release");
    let r = h
        .store
        .get(None, "k-release")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(r.state, JobState::Cancelled);
    h.finish().await;
}

async fn events_are_ordered(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.submit(job("ev-1")).await.expect("submit");
    h.store.submit(job("ev-other")).await.expect("submit");
    let lease = h
        .store
        .claim("w", 1, LEASE, None)
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    assert_eq!(lease.job.id, "ev-1");
    for i in 1..=3 {
        h.store
            .set_progress(&lease, i, 3, Some(&format!("step {i}")))
            .await
            .expect("progress");
    }
    let log_seq = h
        .store
        .append_event("ev-1", "log", json!({ "line": "hello" }))
        .await
        .expect("append");
    h.store.complete(&lease, ok(7)).await.expect("complete");

    let events = h.store.events_since("ev-1", 0, 100).await.expect("events");
    let summary: Vec<(String, serde_json::Value)> = events
        .iter()
        .map(|e| {
            let key = match e.kind.as_str() {
                "state" => e.data["state"].clone(),
                "progress" => e.data["done"].clone(),
                _ => e.data["line"].clone(),
            };
            (e.kind.clone(), key)
        })
        .collect();
    let expected: Vec<(String, serde_json::Value)> = vec![
        ("state".into(), json!("queued")),
        ("state".into(), json!("running")),
        ("progress".into(), json!(1)),
        ("progress".into(), json!(2)),
        ("progress".into(), json!(3)),
        ("log".into(), json!("hello")),
        ("state".into(), json!("succeeded")),
    ];
    assert_eq!(summary, expected);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(events.iter().all(|e| e.job_id == "ev-1"));
    assert_eq!(events[5].seq, log_seq);
    assert_eq!(events[4].data["message"], json!("step 3"));
    // Resuming after an id returns only the later events; limit caps a page.
    let rest = h
        .store
        .events_since("ev-1", events[3].seq, 100)
        .await
        .expect("events");
    assert_eq!(rest, events[4..].to_vec());
    let two = h.store.events_since("ev-1", 0, 2).await.expect("events");
    assert_eq!(two, events[..2].to_vec());
    let job = h
        .store
        .get(None, "ev-1")
        .await
        .expect("get")
        .expect("present");
    let progress = job.progress.expect("progress");
    assert_eq!((progress.done, progress.total), (3, 3));
    assert!(matches!(
        h.store.append_event("nope", "log", json!({})).await,
        Err(Error::NotFound { .. })
    ));
    let huge = json!({ "line": "x".repeat(guestkit_store::MAX_EVENT_DATA) });
    assert!(matches!(
        h.store.append_event("ev-1", "log", huge).await,
        Err(Error::Invalid { field: "data", .. })
    ));
    h.finish().await;
}

async fn progress_is_fenced(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.submit(job("pf-1")).await.expect("submit");
    let lease = h
        .store
        .claim("w", 1, LEASE, None)
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    let long = "é".repeat(2000);
    h.store
        .set_progress(&lease, 1, 10, Some(&long))
        .await
        .expect("progress");
    let job = h
        .store
        .get(None, "pf-1")
        .await
        .expect("get")
        .expect("present");
    let message = job.progress.and_then(|p| p.message).expect("message");
    assert!(message.len() <= guestkit_store::MAX_PROGRESS_MESSAGE);
    assert!(long.starts_with(&message));
    h.store.complete(&lease, ok(1)).await.expect("complete");
    let late = h.store.set_progress(&lease, 2, 10, None).await;
    assert!(matches!(late, Err(Error::LeaseLost { .. })));
    let again = h.store.complete(&lease, ok(1)).await;
    assert!(
        matches!(again, Err(Error::LeaseLost { .. })),
        "complete twice"
    );
    h.finish().await;
}

async fn release_requeues_without_counting(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.submit(job("rl-1")).await.expect("submit");
    let lease = h
        .store
        .claim("w", 1, LEASE, None)
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    assert_eq!(lease.job.attempt, 1);
    h.store.release(&lease).await.expect("release");
    let job = h
        .store
        .get(None, "rl-1")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempt, 0);
    assert!(job.lease_owner.is_none());
    let again = h
        .store
        .claim("w2", 1, LEASE, None)
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    assert_eq!(again.job.attempt, 1);
    assert!(again.token > lease.token);
    assert!(matches!(
        h.store.complete(&lease, ok(1)).await,
        Err(Error::LeaseLost { .. })
    ));
    h.store.complete(&again, ok(1)).await.expect("complete");
    h.finish().await;
}

async fn complete_batch_isolates_lost_leases(kind: Kind) {
    let h = Harness::new(kind).await;
    for i in 0..4 {
        h.store
            .submit(job(&format!("cb-{i}")))
            .await
            .expect("submit");
    }
    let leases = h.store.claim("w", 4, LEASE, None).await.expect("claim");
    assert_eq!(leases.len(), 4);
    h.store.release(&leases[1]).await.expect("release");
    let items: Vec<_> = leases
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), ok(i as u64)))
        .collect();
    let results = h.store.complete_batch(items).await.expect("batch");
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert!(matches!(results[1], Err(Error::LeaseLost { .. })));
    let counts = h.store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Succeeded], 3);
    assert_eq!(counts[&JobState::Queued], 1);
    assert!(
        h.store
            .result(None, &leases[1].job.id)
            .await
            .expect("r")
            .is_none()
    );
    h.finish().await;
}

/// One cycle stores new jobs, writes log lines and progress, completes running jobs and
/// claims: the claim sees both the jobs submitted and the slots freed in the same cycle, and
/// each item gets its own result.
async fn write_cycle_commits_everything_in_order(kind: Kind) {
    let h = Harness::new(kind).await;
    for i in 0..3 {
        h.store
            .submit(job(&format!("wc-old-{i}")))
            .await
            .expect("submit");
    }
    let running = h.store.claim("w", 3, LEASE, None).await.expect("claim");
    assert_eq!(running.len(), 3);
    // Lease of running[2] is lost (released) before the cycle.
    h.store.release(&running[2]).await.expect("release");
    let mut duplicate = job("wc-old-0");
    duplicate.operation = "other".into();
    let cycle = Cycle {
        submits: vec![job("wc-new-0"), duplicate, job("wc-new-1")],
        events: vec![
            ("wc-old-0".into(), "log".into(), json!({"message": "first"})),
            (
                "no-such-job".into(),
                "log".into(),
                json!({"message": "dropped"}),
            ),
        ],
        progress: vec![
            ProgressUpdate {
                lease: running[1].clone(),
                done: 1,
                total: 2,
                message: Some("half".into()),
            },
            ProgressUpdate {
                lease: running[2].clone(),
                done: 1,
                total: 2,
                message: None,
            },
        ],
        completions: vec![(running[0].clone(), ok(7)), (running[2].clone(), ok(8))],
        claim: Some(ClaimRequest {
            worker: "w".into(),
            max: 10,
            lease: LEASE,
            operations: None,
            tenant_caps: None,
        }),
        ..Cycle::default()
    };
    let result = h.store.write_cycle(&cycle).await.expect("cycle");
    assert_eq!(result.submitted.len(), 3);
    assert!(result.submitted[0].as_ref().is_ok_and(|s| s.created));
    assert!(matches!(
        result.submitted[1],
        Err(Error::Conflict { field: "id" })
    ));
    assert!(result.submitted[2].as_ref().is_ok_and(|s| s.created));
    assert_eq!(result.events_written, 1);
    assert!(result.progress[0].is_ok());
    assert!(matches!(result.progress[1], Err(Error::LeaseLost { .. })));
    assert_eq!(
        result.completed[0].as_ref().map(|j| j.state).ok(),
        Some(JobState::Succeeded)
    );
    assert!(matches!(result.completed[1], Err(Error::LeaseLost { .. })));
    // The claim took the released job and both new ones, oldest first.
    let claimed: Vec<&str> = result.claimed.iter().map(|l| l.job.id.as_str()).collect();
    assert_eq!(claimed, ["wc-old-2", "wc-new-0", "wc-new-1"]);
    assert!(
        result
            .claimed
            .iter()
            .all(|l| l.job.state == JobState::Running)
    );

    let done = h.store.result(None, "wc-old-0").await.expect("result");
    assert_eq!(done.map(|r| r.output), Some(json!({"answer": 7})));
    let progress = h
        .store
        .get(None, "wc-old-1")
        .await
        .expect("get")
        .expect("job");
    assert_eq!(progress.progress.map(|p| p.done), Some(1));
    // The log line precedes the completion in the job's stream.
    let events = h
        .store
        .events_since("wc-old-0", 0, 100)
        .await
        .expect("events");
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e.kind.as_str() {
            "state" => format!("state:{}", e.data["state"].as_str().unwrap_or("?")),
            other => other.to_string(),
        })
        .collect();
    let log = kinds.iter().position(|k| k == "log").expect("log event");
    let end = kinds
        .iter()
        .position(|k| k == "state:succeeded")
        .expect("end event");
    assert!(log < end, "{kinds:?}");
    // New jobs: submitted, then claimed, in that order.
    let events = h
        .store
        .events_since("wc-new-0", 0, 100)
        .await
        .expect("events");
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| e.data["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["submitted", "claimed"]);
    // A cycle with nothing to claim and nothing else commits nothing and fails nothing.
    let empty = h
        .store
        .write_cycle(&Cycle::default())
        .await
        .expect("empty cycle");
    assert!(empty.claimed.is_empty() && empty.submitted.is_empty());
    h.finish().await;
}

/// Multi-tenant claims go round-robin across tenants and respect running caps; queue
/// caps refuse submissions beyond them, inside the transaction.
async fn tenant_claims_are_fair_and_capped(kind: Kind) {
    let h = Harness::new(kind).await;
    let of = |tenant: &str, id: String| {
        let mut j = job(&id);
        j.tenant = tenant.into();
        j
    };
    for i in 0..6 {
        h.store
            .submit(of("flood", format!("tf-a{i}")))
            .await
            .expect("submit");
    }
    for i in 0..2 {
        h.store
            .submit(of("quiet", format!("tf-b{i}")))
            .await
            .expect("submit");
    }
    let capped = |max: usize, flood_claim: u32| Cycle {
        claim: Some(ClaimRequest {
            worker: "w".into(),
            max,
            lease: LEASE,
            operations: None,
            tenant_caps: Some(vec![
                TenantCap {
                    max_claim: flood_claim,
                    ..TenantCap::running("flood", 2)
                },
                TenantCap::running("quiet", u32::MAX),
            ]),
        }),
        ..Cycle::default()
    };
    let claim = |max: usize| capped(max, u32::MAX);
    let first = h.store.write_cycle(&claim(10)).await.expect("claim");
    let ids: Vec<&str> = first.claimed.iter().map(|l| l.job.id.as_str()).collect();
    // Round-robin, and the flooding tenant capped at 2 running.
    assert_eq!(ids, ["tf-a0", "tf-a1", "tf-b0", "tf-b1"], "{ids:?}");
    let again = h.store.write_cycle(&claim(10)).await.expect("claim");
    assert!(
        again.claimed.is_empty(),
        "cap reached: {:?}",
        again.claimed.len()
    );
    // One flood job ends: exactly one more may start.
    let done = Cycle {
        completions: vec![(first.claimed[0].clone(), ok(1))],
        ..claim(10)
    };
    let next = h.store.write_cycle(&done).await.expect("complete + claim");
    let ids: Vec<&str> = next.claimed.iter().map(|l| l.job.id.as_str()).collect();
    assert_eq!(ids, ["tf-a2"]);
    // Another ends, but this claim may take none of flood's jobs: none starts.
    let held = Cycle {
        completions: vec![(first.claimed[1].clone(), ok(1))],
        ..capped(10, 0)
    };
    let held = h.store.write_cycle(&held).await.expect("complete + claim");
    assert!(held.claimed.is_empty(), "{:?}", held.claimed.len());
    assert_eq!(
        h.store
            .write_cycle(&capped(10, 1))
            .await
            .expect("claim")
            .claimed
            .len(),
        1
    );

    // Queue cap: flood has 2 queued (a4, a5); a cap of 4 leaves room for 2.
    let submits = Cycle {
        submits: (0..3).map(|i| of("flood", format!("tf-c{i}"))).collect(),
        queue_caps: vec![("flood".into(), 4)],
        ..Cycle::default()
    };
    let result = h.store.write_cycle(&submits).await.expect("submits");
    assert!(result.submitted[0].is_ok() && result.submitted[1].is_ok());
    assert!(
        matches!(
            &result.submitted[2],
            Err(Error::QuotaExceeded { tenant, quota: "queued", limit: 4 }) if tenant == "flood"
        ),
        "{:?}",
        result.submitted[2]
    );
    assert!(h.store.get(None, "tf-c2").await.expect("get").is_none());
    h.finish().await;
}

async fn survives_close_and_reopen(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let batch: Vec<_> = (0..50).map(|i| job(&format!("du-{i:02}"))).collect();
    h.store.submit_batch(batch).await.expect("batch");
    let leases = h.store.claim("w", 10, LEASE, None).await.expect("claim");
    for l in &leases[..5] {
        h.store.complete(l, ok(9)).await.expect("complete");
    }
    let before: BTreeMap<_, _> = h.store.counts().await.expect("counts");
    let running = leases[7].clone();
    h.reopen().await;
    let after = h.store.counts().await.expect("counts");
    assert_eq!(before, after);
    assert_eq!(after[&JobState::Succeeded], 5);
    assert_eq!(after[&JobState::Running], 5);
    assert_eq!(after[&JobState::Queued], 40);
    let r = h
        .store
        .result(None, &leases[0].job.id)
        .await
        .expect("result");
    assert_eq!(r.map(|r| r.output), Some(json!({ "answer": 9 })));
    // A lease taken before the restart is still valid afterwards.
    h.store
        .complete(&running, ok(1))
        .await
        .expect("complete after reopen");
    // Migrating again is a no-op.
    h.store.migrate().await.expect("migrate twice");
    h.finish().await;
}

async fn rejects_invalid_input(kind: Kind) {
    let h = Harness::new(kind).await;
    let cases: Vec<(guestkit_store::NewJob, &str)> = vec![
        (
            {
                let mut j = job("");
                j.id.clear();
                j
            },
            "id",
        ),
        (
            {
                let mut j = job("v");
                j.tenant.clear();
                j
            },
            "tenant",
        ),
        (
            {
                let mut j = job("v");
                j.priority = 0;
                j
            },
            "priority",
        ),
        (
            {
                let mut j = job("v");
                j.max_attempts = 0;
                j
            },
            "max_attempts",
        ),
        (
            {
                let mut j = job("v");
                j.timeout_ms = u64::MAX;
                j
            },
            "timeout_ms",
        ),
        (
            {
                let mut j = job("v");
                j.operation = "o".repeat(300);
                j
            },
            "operation",
        ),
    ];
    for (j, field) in cases {
        match h.store.submit(j).await {
            Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    assert!(matches!(
        h.store.claim("", 1, LEASE, None).await,
        Err(Error::Invalid {
            field: "worker",
            ..
        })
    ));
    let many: Vec<String> = (0..100).map(|i| format!("op{i}")).collect();
    assert!(matches!(
        h.store.claim("w", 1, LEASE, Some(&many)).await,
        Err(Error::Invalid {
            field: "operations",
            ..
        })
    ));
    assert!(
        h.store
            .claim("w", 0, LEASE, None)
            .await
            .expect("claim 0")
            .is_empty()
    );
    assert_eq!(
        h.store.counts().await.expect("counts")[&JobState::Queued],
        0
    );
    h.finish().await;
}
