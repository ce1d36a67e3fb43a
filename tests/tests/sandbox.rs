//! The sandbox against real components: echo round trip, and a hostile handler whose every
//! kind of abuse fails only its own job while the next job runs fine.

use guestkit_host_api::{LogLevel, NullObserver, Observer};
use guestkit_tests::{builtin, component, job, sandbox};
use guestkit_worker::registry::{self, HandlerSource};
use guestkit_worker::{CancelToken, JobFailure, JobLimits, LoadedHandler, RunReport};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn load_bytes(bytes: Vec<u8>, name: &str) -> Arc<LoadedHandler> {
    let digest = guestkit_worker::engine::digest(&bytes);
    Arc::new(
        registry::load(
            &sandbox(),
            bytes,
            digest,
            HandlerSource::Builtin(name.into()),
        )
        .await
        .expect("loading component"),
    )
}

async fn echo() -> Arc<LoadedHandler> {
    load_bytes(builtin("echo").to_vec(), "echo").await
}

async fn hostile() -> Arc<LoadedHandler> {
    let path = component("hostile", &[]);
    load_bytes(std::fs::read(path).unwrap(), "hostile").await
}

async fn run(
    h: &LoadedHandler,
    op: &str,
    payload: serde_json::Value,
    limits: &JobLimits,
) -> RunReport {
    sandbox()
        .run(
            h.pre(),
            &job(op, payload),
            limits,
            Arc::new(NullObserver),
            &CancelToken::new(),
        )
        .await
}

async fn assert_echo_still_works(echo: &LoadedHandler, after: &str) {
    let report = run(echo, "echo", json!({"after": after}), &JobLimits::default()).await;
    let output = report
        .outcome
        .unwrap_or_else(|e| panic!("echo after {after} failed: {e}"));
    assert_eq!(output["echo"], json!({"after": after}));
}

#[tokio::test]
async fn echo_round_trip() {
    let echo = echo().await;
    assert_eq!(echo.meta.name, "guestkit.echo");
    assert_eq!(echo.meta.operations, ["echo"]);
    let payload = json!({"hello": "world", "n": [1, 2, 3], "nested": {"ok": true}});
    let report = run(&echo, "echo", payload.clone(), &JobLimits::default()).await;
    let output = report.outcome.expect("echo succeeds");
    assert_eq!(output["echo"], payload);
    assert_eq!(output["job_id"], "test-echo");
    assert_eq!(output["attempt"], 1);
    assert!(report.usage.fuel_consumed > 0);
    assert!(report.usage.peak_memory_bytes > 0);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);
impl Observer for Recorder {
    fn log(&self, level: LogLevel, message: &str) {
        self.0.lock().unwrap().push(format!("{level}:{message}"));
    }
    fn progress(&self, done: u64, total: u64, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("progress:{done}/{total}:{message}"));
    }
}

#[tokio::test]
async fn logs_and_progress_reach_the_observer_bounded() {
    let hostile = hostile().await;
    let recorder = Arc::new(Recorder::default());
    let report = sandbox()
        .run(
            hostile.pre(),
            &job("hostile.log-flood", json!({"lines": 5000})),
            &JobLimits::default(),
            recorder.clone(),
            &CancelToken::new(),
        )
        .await;
    assert_eq!(
        report.outcome.expect("log flood is not a failure"),
        json!(5000)
    );
    assert_eq!(report.usage.dropped_log_lines, 4000);
    let lines = recorder.0.lock().unwrap().clone();
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[0], "info:line 0");

    let recorder = Arc::new(Recorder::default());
    let report = sandbox()
        .run(
            hostile.pre(),
            &job("hostile.progress", json!({"steps": 50})),
            &JobLimits::default(),
            recorder.clone(),
            &CancelToken::new(),
        )
        .await;
    assert!(report.outcome.is_ok());
    let lines = recorder.0.lock().unwrap().clone();
    // Rate-limited, but the first and the final report always arrive.
    assert_eq!(
        lines.first().map(String::as_str),
        Some("progress:1/50:working")
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("progress:50/50:working")
    );
    assert!(lines.len() < 50, "progress not rate-limited: {lines:?}");
}

#[tokio::test]
async fn each_hostile_job_fails_alone_with_a_clear_error() {
    let echo = echo().await;
    let hostile = hostile().await;
    let base = JobLimits::default();

    // An infinite loop is stopped by fuel...
    let limits = JobLimits {
        fuel: 200_000_000,
        ..base.clone()
    };
    let r = run(&hostile, "hostile.spin", json!(null), &limits).await;
    assert_eq!(
        r.outcome,
        Err(JobFailure::FuelExhausted { limit: 200_000_000 })
    );
    assert_eq!(r.usage.fuel_consumed, 200_000_000);
    assert_echo_still_works(&echo, "fuel").await;

    // ...and, with fuel to spare, by the wall clock (epoch interruption).
    let limits = JobLimits {
        fuel: u64::MAX,
        wall_clock: Duration::from_millis(300),
        ..base.clone()
    };
    let started = Instant::now();
    let r = run(&hostile, "hostile.spin", json!(null), &limits).await;
    assert_eq!(r.outcome, Err(JobFailure::TimedOut { limit_ms: 300 }));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_echo_still_works(&echo, "epoch").await;

    // A job blocked in a host call (a WASI sleep) is dropped at its deadline too.
    let limits = JobLimits {
        wall_clock: Duration::from_millis(300),
        ..base.clone()
    };
    let started = Instant::now();
    let r = run(&hostile, "hostile.sleep", json!({"ms": 60_000}), &limits).await;
    assert_eq!(r.outcome, Err(JobFailure::TimedOut { limit_ms: 300 }));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_echo_still_works(&echo, "sleep").await;

    // A memory bomb hits the per-job memory limit.
    let limits = JobLimits {
        memory_bytes: 64 << 20,
        ..base.clone()
    };
    let r = run(&hostile, "hostile.alloc", json!(null), &limits).await;
    match r.outcome {
        Err(JobFailure::MemoryLimit { requested, limit }) => {
            assert_eq!(limit, 64 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected memory limit, got {other:?}"),
    }
    assert!(r.usage.peak_memory_bytes <= 64 << 20);
    assert!(r.usage.peak_memory_bytes > 32 << 20);
    assert_echo_still_works(&echo, "alloc").await;

    // Unbounded recursion overflows the wasm stack...
    let r = run(&hostile, "hostile.recurse", json!(null), &base).await;
    assert_eq!(r.outcome, Err(JobFailure::StackOverflow));
    assert_echo_still_works(&echo, "recurse").await;

    // ...or, with big frames, the guest's shadow stack in linear memory, which traps.
    let r = run(&hostile, "hostile.recurse-shadow", json!(null), &base).await;
    assert!(
        matches!(&r.outcome, Err(JobFailure::Trap { message }) if message.contains("out of bounds")),
        "{:?}",
        r.outcome
    );
    assert_echo_still_works(&echo, "recurse-shadow").await;

    // A panic is a trap whose message carries the panic text from stderr.
    let r = run(&hostile, "hostile.panic", json!(null), &base).await;
    match &r.outcome {
        Err(JobFailure::Trap { message }) => {
            assert!(
                message.contains("deliberate panic from the hostile handler"),
                "{message}"
            )
        }
        other => panic!("expected trap, got {other:?}"),
    }
    assert_echo_still_works(&echo, "panic").await;

    let r = run(&hostile, "hostile.unreachable", json!(null), &base).await;
    assert!(
        matches!(&r.outcome, Err(JobFailure::Trap { message }) if message.contains("unreachable")),
        "{:?}",
        r.outcome
    );
    assert_echo_still_works(&echo, "unreachable").await;

    // Oversized and malformed output.
    let limits = JobLimits {
        max_output_bytes: 1 << 20,
        ..base.clone()
    };
    let r = run(
        &hostile,
        "hostile.output",
        json!({"bytes": 2 << 20}),
        &limits,
    )
    .await;
    // Far over the limit: the host refuses to even copy it out of the instance.
    assert_eq!(
        r.outcome,
        Err(JobFailure::TransferTooLarge {
            limit: (1 << 20) + (64 << 10)
        })
    );
    // Just over the limit: copied, measured, rejected.
    let r = run(
        &hostile,
        "hostile.output",
        json!({"bytes": (1 << 20) + 10}),
        &limits,
    )
    .await;
    assert_eq!(
        r.outcome,
        Err(JobFailure::OutputTooLarge {
            size: (1 << 20) + 12,
            limit: 1 << 20
        })
    );
    let r = run(&hostile, "hostile.output", json!({"bytes": 1000}), &limits).await;
    assert_eq!(
        r.outcome
            .expect("small output is fine")
            .as_str()
            .map(str::len),
        Some(1000)
    );
    let r = run(&hostile, "hostile.not-json", json!(null), &base).await;
    assert!(matches!(r.outcome, Err(JobFailure::InvalidOutput(_))));
    assert_echo_still_works(&echo, "output").await;

    // The handler's own typed errors map one to one; only `failed` is worth a retry.
    for (kind, expected) in [
        ("invalid-input", JobFailure::InvalidInput("m".into())),
        ("unsupported", JobFailure::Unsupported("m".into())),
        ("failed", JobFailure::HandlerFailed("m".into())),
    ] {
        let r = run(
            &hostile,
            "hostile.error",
            json!({"kind": kind, "message": "m"}),
            &base,
        )
        .await;
        assert_eq!(r.outcome.as_ref().err(), Some(&expected));
        assert_eq!(expected.retryable(), kind == "failed");
    }
    // A payload that does not fit is invalid input, via the SDK's typed parsing.
    let r = run(&hostile, "hostile.output", json!({"bytes": 1}), &base).await;
    assert!(r.outcome.is_ok());
}

#[tokio::test]
async fn cancel_stops_a_running_job_in_wasm_or_in_a_host_call() {
    let hostile = hostile().await;
    for (op, payload) in [
        ("hostile.spin", json!(null)),
        ("hostile.sleep", json!({"ms": 60_000})),
    ] {
        let cancel = CancelToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            trigger.cancel();
        });
        let limits = JobLimits {
            fuel: u64::MAX,
            ..JobLimits::default()
        };
        let started = Instant::now();
        let r = sandbox()
            .run(
                hostile.pre(),
                &job(op, payload),
                &limits,
                Arc::new(NullObserver),
                &cancel,
            )
            .await;
        assert_eq!(r.outcome, Err(JobFailure::Cancelled), "{op}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{op} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_jobs_running_concurrently_do_not_disturb_echo_jobs() {
    let echo = echo().await;
    let hostile = hostile().await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let hostile = hostile.clone();
        tasks.push(tokio::spawn(async move {
            let (op, limits) = match i % 3 {
                0 => (
                    "hostile.spin",
                    JobLimits {
                        fuel: u64::MAX,
                        wall_clock: Duration::from_millis(500),
                        ..JobLimits::default()
                    },
                ),
                1 => (
                    "hostile.alloc",
                    JobLimits {
                        memory_bytes: 32 << 20,
                        ..JobLimits::default()
                    },
                ),
                _ => ("hostile.panic", JobLimits::default()),
            };
            run(&hostile, op, json!(null), &limits)
                .await
                .outcome
                .is_err()
        }));
    }
    for i in 0..200 {
        let r = run(&echo, "echo", json!(i), &JobLimits::default()).await;
        assert_eq!(r.outcome.expect("echo under load")["echo"], json!(i));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "every hostile job fails");
    }
}
