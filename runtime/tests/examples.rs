//! The handler examples in `examples/`: each built with its own tool (plain cargo, and
//! cargo-component), dropped into a running worker's handlers directory (hot reload), and run
//! over HTTP against a real ext4 image built by `mke2fs -d`.

mod common;

use common::{Daemon, Http, Opts};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the examples are built: beside the other test artefacts, not inside `examples/`.
fn target_dir(example: &str) -> PathBuf {
    guestkit_fixtures::cache_root()
        .parent()
        .expect("the fixture cache lives in a target dir")
        .join("examples")
        .join(example)
}

/// Runs `cargo ARGS` in `examples/NAME` and returns the component at `wasm` (relative to the
/// example's target dir).
fn build_example(name: &str, args: &[&str], wasm: &str) -> PathBuf {
    let dir = guestkit_fixtures::workspace_root()
        .join("examples")
        .join(name);
    let target = target_dir(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&dir)
        .args(args)
        .arg("--target-dir")
        .arg(&target);
    // The host build's settings must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running cargo {args:?} for {name}: {e}"));
    assert!(
        out.status.success(),
        "building examples/{name} with `cargo {}` failed (cargo-component comes from \
         `cargo xtask deps`):\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let built = target.join(wasm);
    assert!(built.is_file(), "{} was not built", built.display());
    built
}

/// Drops `wasm` into the daemon's handlers directory the way a deployment would: written
/// under a hidden name, then renamed into place.
fn deploy(daemon: &Daemon, wasm: &Path, file_name: &str) {
    let handlers = daemon.data_dir.join("handlers");
    let staging = handlers.join(format!(".{file_name}.tmp"));
    std::fs::copy(wasm, &staging).unwrap();
    std::fs::rename(&staging, handlers.join(file_name)).unwrap();
}

/// Waits until the daemon serves `operation` (the directory watcher picked the file up).
async fn wait_served(http: &Http, operation: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, doc) = http.get("/handlers").await;
        let handler = doc["handlers"].as_array().and_then(|hs| {
            hs.iter()
                .find(|h| {
                    h["operations"]
                        .as_array()
                        .is_some_and(|ops| ops.contains(&json!(operation)))
                })
                .cloned()
        });
        if let Some(handler) = handler {
            return handler;
        }
        assert!(
            Instant::now() < until,
            "{operation} was never served: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The example's own `job.json`, with its image swapped for `image`.
fn example_job(name: &str, image: &str) -> Value {
    let path = guestkit_fixtures::workspace_root()
        .join("examples")
        .join(name)
        .join("job.json");
    let mut job: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    job["images"] = json!([image]);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_examples_build_hot_load_and_read_a_real_image() {
    let fixtures = guestkit_fixtures::build("fs-images");
    let plain = build_example(
        "handler-plain",
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
        "wasm32-wasip2/release/handler_plain.wasm",
    );
    let component = build_example(
        "handler-component",
        &["component", "build", "--release"],
        "wasm32-wasip1/release/handler_component.wasm",
    );

    let dir = tempfile::tempdir().unwrap();
    let root = fixtures.to_str().unwrap().to_string();
    let daemon = Daemon::start(
        dir.path(),
        &Opts {
            args: vec!["--image-root".into(), root],
            handlers: vec![],
        },
    );
    let http = daemon.http();

    // plain cargo + wit-bindgen: list /etc on the ext4 image.
    deploy(&daemon, &plain, "list-dir.wasm");
    let served = wait_served(&http, "example.list-dir").await;
    assert_eq!(served["name"], "example.list-dir", "{served}");
    let id = http.submit(&example_job("handler-plain", "ext4.img")).await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let output = &result["output"];
    assert_eq!(output["fs_type"], "ext4", "{output}");
    assert_eq!(output["volume"], "disk", "{output}");
    let entries = output["entries"].as_array().unwrap();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {output}"))
    };
    // What the recipe wrote: etc/hostname is "guest-under-test\n", etc/shadow mode 0600,
    // etc/link-up a symlink (reported as one, not followed).
    assert_eq!(entry("hostname")["kind"], "file");
    assert_eq!(entry("hostname")["size"], 17);
    assert_eq!(entry("shadow")["mode"], "0600");
    assert_eq!(entry("link-up")["kind"], "symlink");

    // A bad request is the handler's invalid-input, not a crash.
    let id = http
        .submit(&json!({
            "operation": "example.list-dir",
            "payload": {"path": "/no/such/dir"},
            "images": ["ext4.img"],
        }))
        .await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["code"], "invalid_input", "{result}");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/dir"),
        "{result}"
    );

    // cargo-component: hostname and os-release of every filesystem on the image.
    deploy(&daemon, &component, "hostname.wasm");
    wait_served(&http, "example.hostname").await;
    let id = http
        .submit(&example_job("handler-component", "ext4.img"))
        .await;
    let result = http.result(&id).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let found = &result["output"]["filesystems"][0];
    assert_eq!(found["hostname"], "guest-under-test", "{result}");
    assert_eq!(found["os_release"]["ID"], "fixture", "{result}");
    assert_eq!(found["os_release"]["NAME"], "Fixture Linux", "{result}");
}
