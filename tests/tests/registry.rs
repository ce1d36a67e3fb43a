//! The handler registry against a real directory: load errors, conflicts, built-in override,
//! and hot reload (add, atomic replace, in-place replace, remove) while jobs run.

use guestkit_host_api::NullObserver;
use guestkit_tests::{component, job, sandbox};
use guestkit_worker::{CancelToken, JobLimits, Registry, RegistryConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn versioned(version: &str) -> PathBuf {
    component("versioned", &[("GK_TEST_VERSION", version)])
}

/// Copies `src` into `dir/name` the way deploy tools do: write a hidden temp file, rename.
fn install_atomically(src: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn registry(dir: &Path) -> Arc<Registry> {
    Registry::new(
        sandbox(),
        RegistryConfig {
            dir: Some(dir.to_path_buf()),
            builtins: true,
            tenants: Vec::new(),
        },
    )
    .await
    .expect("registry")
}

/// Waits until `check` holds for the registry's snapshot, driven by the directory watcher.
async fn wait_until(registry: &Registry, what: &str, check: impl Fn(&Registry) -> bool) {
    let mut changes = registry.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check(registry) {
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            panic!("timed out waiting for: {what}");
        }
    }
}

async fn run_version(registry: &Registry, op: &str, sleep_ms: u64) -> Result<String, String> {
    let handler = registry
        .get(op)
        .ok_or_else(|| format!("no handler for {op}"))?;
    let report = sandbox()
        .run(
            handler.pre(),
            &job(op, json!({"sleep_ms": sleep_ms})),
            &JobLimits::default(),
            Arc::new(NullObserver),
            &CancelToken::new(),
        )
        .await;
    report
        .outcome
        .map(|o| o["version"].as_str().unwrap_or_default().to_string())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_add_replace_remove_while_jobs_run() {
    let (v1, v2, v3) = (versioned("1"), versioned("2"), versioned("3"));
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path()).await;
    let _watch = registry.watch(Duration::from_secs(3600)).unwrap();
    assert!(registry.get("versioned").is_none());
    assert!(
        registry.get("echo").is_some(),
        "built-ins serve from the start"
    );

    // Add.
    install_atomically(&v1, dir.path(), "versioned.wasm");
    wait_until(&registry, "v1 loaded", |r| r.get("versioned").is_some()).await;
    assert_eq!(run_version(&registry, "versioned", 0).await.unwrap(), "1");

    // Long jobs in flight on v1 while the file is replaced and then removed.
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        let r = registry.clone();
        in_flight.push(tokio::spawn(async move {
            run_version(&r, "versioned", 1500).await
        }));
    }
    // A steady stream of short jobs, recording every version seen and every failure.
    let stop = Arc::new(AtomicBool::new(false));
    let stream = {
        let (r, stop) = (registry.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                seen.push(run_version(&r, "versioned", 0).await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Replace by atomic rename.
    install_atomically(&v2, dir.path(), "versioned.wasm");
    wait_until(&registry, "v2 serving", |r| {
        r.get("versioned").is_some_and(|h| h.meta.version == "2")
    })
    .await;

    // Replace in place (truncate + write, like `cp` over the file): whatever partial state
    // the watcher sees, the operation keeps being served.
    std::fs::write(
        dir.path().join("versioned.wasm"),
        std::fs::read(&v3).unwrap(),
    )
    .unwrap();
    wait_until(&registry, "v3 serving", |r| {
        r.get("versioned").is_some_and(|h| h.meta.version == "3")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = stream.await.unwrap();

    // Remove: new jobs find no handler, but the jobs already running on v1 all finish.
    std::fs::remove_file(dir.path().join("versioned.wasm")).unwrap();
    wait_until(&registry, "removed", |r| r.get("versioned").is_none()).await;
    for t in in_flight {
        assert_eq!(t.await.unwrap(), Ok("1".to_string()), "in-flight job on v1");
    }
    assert!(run_version(&registry, "versioned", 0).await.is_err());

    let failures: Vec<_> = seen.iter().filter(|r| r.is_err()).collect();
    assert!(
        failures.is_empty(),
        "jobs failed during reload: {failures:?}"
    );
    let versions: Vec<&str> = seen.iter().map(|r| r.as_deref().unwrap()).collect();
    let mut ordered = versions.clone();
    ordered.sort();
    assert_eq!(versions, ordered, "versions went backwards: {versions:?}");
    assert_eq!(versions.first(), Some(&"1"));
    assert_eq!(versions.last(), Some(&"3"));
    assert!(registry.get("echo").is_some());
}

#[tokio::test]
async fn broken_handlers_are_reported_and_never_stop_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("garbage.wasm"),
        b"\0asm definitely not a component",
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.wasm"), b"").unwrap();
    std::fs::copy(
        component(
            "versioned",
            &[
                ("GK_TEST_DESCRIBE", "loop"),
                ("GK_TEST_OPERATION", "looping"),
            ],
        ),
        dir.path().join("loops-in-describe.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("ignored.txt"), b"not a handler").unwrap();
    install_atomically(&versioned("1"), dir.path(), "good.wasm");

    let registry = registry(dir.path()).await;
    let snapshot = registry.snapshot();
    let errors: Vec<(String, String)> = snapshot
        .errors
        .iter()
        .map(|e| {
            (
                e.path.file_name().unwrap().to_string_lossy().into_owned(),
                e.error.clone(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|(f, e)| f == "garbage.wasm" && e.contains("compiling")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|(f, _)| f == "empty.wasm"), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|(f, e)| f == "loops-in-describe.wasm" && e.contains("describe() failed")),
        "{errors:?}"
    );
    assert!(registry.get("looping").is_none());
    assert_eq!(run_version(&registry, "versioned", 0).await.unwrap(), "1");
    assert!(registry.get("echo").is_some());
}

#[tokio::test]
async fn an_operation_is_served_by_one_handler_and_conflicts_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    install_atomically(&versioned("1"), dir.path(), "a.wasm");
    install_atomically(&versioned("2"), dir.path(), "b.wasm");
    let registry = registry(dir.path()).await;
    let snapshot = registry.snapshot();
    assert_eq!(
        snapshot.get("versioned").unwrap().meta.version,
        "1",
        "first by file name wins"
    );
    assert_eq!(snapshot.errors.len(), 1);
    assert!(
        snapshot.errors[0].error.contains("already served by"),
        "{:?}",
        snapshot.errors
    );

    // Remove the winner: the other takes over on the next scan, without recompiling.
    std::fs::remove_file(dir.path().join("a.wasm")).unwrap();
    registry.rescan().await.unwrap();
    assert_eq!(registry.get("versioned").unwrap().meta.version, "2");
    assert!(registry.snapshot().errors.is_empty());
}

#[tokio::test]
async fn a_directory_handler_overrides_a_builtin_and_renames_do_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path()).await;
    assert_eq!(registry.get("echo").unwrap().meta.name, "guestkit.echo");

    let custom = component(
        "versioned",
        &[("GK_TEST_OPERATION", "echo"), ("GK_TEST_VERSION", "9")],
    );
    install_atomically(&custom, dir.path(), "my-echo.wasm");
    registry.rescan().await.unwrap();
    let served = registry.get("echo").unwrap();
    assert_eq!(
        (served.meta.name.as_str(), served.meta.version.as_str()),
        ("test.versioned", "9")
    );

    // Same bytes under a new name: same digest, same compiled handler.
    std::fs::rename(
        dir.path().join("my-echo.wasm"),
        dir.path().join("renamed.wasm"),
    )
    .unwrap();
    registry.rescan().await.unwrap();
    let renamed = registry.get("echo").unwrap();
    assert_eq!(renamed.digest, served.digest);
    assert_eq!(renamed.loaded_at, served.loaded_at, "not loaded again");

    std::fs::remove_file(dir.path().join("renamed.wasm")).unwrap();
    registry.rescan().await.unwrap();
    assert_eq!(
        registry.get("echo").unwrap().meta.name,
        "guestkit.echo",
        "built-in is back"
    );
}

#[tokio::test]
async fn the_compile_cache_is_keyed_by_digest_and_survives_corruption() {
    use guestkit_worker::{EngineConfig, Sandbox, registry::HandlerSource};
    let cache = tempfile::tempdir().unwrap();
    let bytes = guestkit_tests::builtin("echo").to_vec();
    let digest = guestkit_worker::engine::digest(&bytes);
    let sb = Sandbox::new(EngineConfig {
        pool_slots: 4,
        cache_dir: Some(cache.path().to_path_buf()),
        ..EngineConfig::default()
    })
    .unwrap();
    let load = |sb: Arc<Sandbox>, bytes: Vec<u8>| {
        let digest = guestkit_worker::engine::digest(&bytes);
        async move {
            guestkit_worker::registry::load(
                &sb,
                bytes,
                digest,
                HandlerSource::Builtin("echo".into()),
            )
            .await
        }
    };
    load(sb.clone(), bytes.clone()).await.unwrap();
    let entries: Vec<PathBuf> = walk(cache.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].ends_with(format!("{digest}.cwasm")));

    // A corrupted entry is discarded and rebuilt, not trusted and not fatal.
    std::fs::write(&entries[0], b"garbage").unwrap();
    let handler = load(sb.clone(), bytes.clone()).await.unwrap();
    assert_eq!(handler.meta.name, "guestkit.echo");
    assert!(std::fs::metadata(&entries[0]).unwrap().len() > 1000);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
