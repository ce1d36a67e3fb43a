//! `guestkit-worker run`: the handler author's local loop, through the real binary.

use serde_json::Value;
use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    let cache = guestkit_fixtures::cache_root().join("cli-compile-cache");
    Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("running guestkit-worker")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn run_echo_with_an_image_prints_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; 4096]).unwrap();
    let out = worker(&[
        "run",
        "--operation",
        "echo",
        "--payload",
        r#"{"hello":"world"}"#,
        "--image",
        image.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = stdout_json(&out);
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["output"]["echo"]["hello"], "world");
    assert_eq!(doc["output"]["images"][0], "disk.img");
    assert_eq!(doc["handler"]["name"], "guestkit.echo");
    assert_eq!(doc["handler"]["digest"].as_str().map(str::len), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[debug] echoing payload"));
}

#[test]
fn run_a_not_installed_component_and_report_its_failure() {
    let hostile = guestkit_fixtures::component("hostile", &[]);
    let out = worker(&[
        "run",
        "--handler",
        hostile.to_str().unwrap(),
        "--operation",
        "hostile.spin",
        "--timeout",
        "0.2",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed job exits 1");
    let doc = stdout_json(&out);
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["code"], "timed_out");
    assert_eq!(doc["error"]["retryable"], true);

    let payload_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        payload_file.path(),
        r#"{"kind":"invalid-input","message":"bad field x"}"#,
    )
    .unwrap();
    let out = worker(&[
        "run",
        "--handler",
        hostile.to_str().unwrap(),
        "-o",
        "hostile.error",
        "--payload",
        &format!("@{}", payload_file.path().display()),
    ]);
    let doc = stdout_json(&out);
    assert_eq!(doc["error"]["code"], "invalid_input");
    assert_eq!(doc["error"]["message"], "invalid input: bad field x");
}

#[test]
fn bad_invocations_get_a_clear_message_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "-o", "echo", "--payload", "{not json"],
            "--payload: not valid JSON",
        ),
        (
            &["run", "-o", "no-such-op"],
            "no handler serves operation 'no-such-op'",
        ),
        (
            &["run", "-o", "echo", "--image", "/nonexistent/disk.img"],
            "image /nonexistent/disk.img",
        ),
        (
            &["run", "-o", "echo", "--image", "/dev/null"],
            "not a regular file",
        ),
        (
            &["run", "-o", "echo", "--timeout=-1"],
            "--timeout: must be a positive",
        ),
        (
            &["run", "-o", "echo", "--timeout", "0"],
            "--timeout: must be a positive",
        ),
        (&["run"], "--operation is required"),
        (
            &["run", "--handler", "/nonexistent.wasm"],
            "reading /nonexistent.wasm",
        ),
    ];
    for (args, expected) in cases {
        let out = worker(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
}
