//! The handler author's loop, for real: `handler new` scaffolds a crate, plain cargo builds it
//! for wasm32-wasip2, `handler check` validates it, `run --handler` runs it against a real
//! ext4 image without installing it.

mod common;

use guestkit_worker::authoring::{self, CheckPolicy};
use guestkit_worker::{EngineConfig, Sandbox};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(common::binary())
        .arg("--cache-dir")
        .arg(common::compile_cache())
        .args(args)
        .output()
        .expect("running guestkit-worker")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Builds the scaffolded crate with plain `cargo build --release`, as its README says; the
/// target dir is shared between runs so only the crate itself is rebuilt.
fn build_scaffold(dir: &Path, name: &str) -> PathBuf {
    let target = guestkit_fixtures::cache_root()
        .parent()
        .expect("the fixture cache lives in a target dir")
        .join("scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--quiet", "--release", "--target-dir"])
        .arg(&target);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running cargo build");
    assert!(
        out.status.success(),
        "the scaffold does not build:\n{}",
        stderr(&out)
    );
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(authoring::wasm_file_name(name));
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    wasm
}

#[test]
fn scaffold_builds_checks_and_runs_against_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let crate_dir = tmp.path().join("probe");
    let out = worker(&[
        "handler",
        "new",
        "my-probe",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("cargo build --release"),
        "{}",
        stdout(&out)
    );
    for file in [
        "Cargo.toml",
        ".cargo/config.toml",
        "wit/handler.wit",
        "src/lib.rs",
        "README.md",
        "payload.json",
        "job.json",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} missing");
    }
    // The scaffold's WIT is the worker's.
    assert_eq!(
        std::fs::read_to_string(crate_dir.join("wit/handler.wit")).unwrap(),
        std::fs::read_to_string(guestkit_fixtures::workspace_root().join("wit/handler.wit"))
            .unwrap()
    );
    // A second `new` into the same directory is refused, as is a bad name.
    let again = worker(&[
        "handler",
        "new",
        "my-probe",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let bad = worker(&[
        "handler",
        "new",
        "Bad.Name",
        "--dir",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("handler name"), "{}", stderr(&bad));

    let wasm = build_scaffold(&crate_dir, "my-probe");
    let wasm_arg = wasm.to_str().unwrap();

    // check: table and JSON.
    let out = worker(&["handler", "check", wasm_arg]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("handler:     my-probe 0.1.0"), "{table}");
    assert!(table.contains("guestkit:handler/disk@0.1.0"), "{table}");
    assert!(table.contains("result:      ok"), "{table}");
    let report = json(&worker(&["handler", "check", wasm_arg, "--output", "json"]));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["wasm"], "component");
    assert_eq!(report["handler"]["operations"][0], "my-probe");
    assert_eq!(
        report["handler"]["payload_schema"]["type"], "object",
        "{report}"
    );
    assert_eq!(report["exports"], serde_json::json!(["describe", "handle"]));
    let imports = report["imports"].as_array().unwrap();
    assert!(
        imports
            .iter()
            .all(|i| i["provided"] == true && i["allowed"] == true)
    );
    assert!(
        imports
            .iter()
            .any(|i| i["name"] == "guestkit:handler/disk@0.1.0"),
        "{report}"
    );

    // run --handler: not installed anywhere, against the fs-images ext4 image.
    let image = guestkit_fixtures::build("fs-images").join("ext4.img");
    let payload = crate_dir.join("payload.json");
    let out = worker(&[
        "run",
        "--handler",
        wasm_arg,
        "-p",
        &format!("@{}", payload.display()),
        "--image",
        image.to_str().unwrap(),
    ]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", stderr(&out));
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["handler"]["name"], "my-probe");
    let found = &doc["output"]["found"][0];
    assert_eq!(found["text"], "guest-under-test\n", "{doc}");
    assert_eq!(found["fs_type"], "ext4", "{doc}");
    assert!(
        stderr(&out).contains("[info] read /etc/hostname"),
        "{}",
        stderr(&out)
    );

    // A payload the handler refuses: exit 1, invalid_input naming the field.
    let out = worker(&[
        "run",
        "--handler",
        wasm_arg,
        "-p",
        r#"{"pth": "/etc/hostname"}"#,
        "--image",
        image.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["error"]["code"], "invalid_input", "{doc}");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("pth"),
        "{doc}"
    );

    // Built against a newer WIT than this worker's: an import the host does not link makes
    // the component invalid, and check names it.
    let wit_path = crate_dir.join("wit/handler.wit");
    let wit = std::fs::read_to_string(&wit_path).unwrap();
    let wit = wit
        .replace(
            "/// The world every handler component targets.",
            "interface extra {\n    ping: func();\n}\n\n/// The world every handler component targets.",
        )
        .replace("    import checksum;\n", "    import checksum;\n    import extra;\n");
    std::fs::write(&wit_path, wit).unwrap();
    let lib_path = crate_dir.join("src/lib.rs");
    let lib = std::fs::read_to_string(&lib_path).unwrap().replace(
        "    fn handle(job: Job) -> Result<Output, HandlerError> {\n",
        "    fn handle(job: Job) -> Result<Output, HandlerError> {\n        guestkit::handler::extra::ping();\n",
    );
    std::fs::write(&lib_path, lib).unwrap();
    let newer = build_scaffold(&crate_dir, "my-probe");
    let out = worker(&["handler", "check", newer.to_str().unwrap(), "-O", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("imports guestkit:handler/extra@0.1.0"),
        "{problems}"
    );
    assert!(
        report["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "guestkit:handler/extra@0.1.0" && i["provided"] == false),
        "{report}"
    );
}

#[test]
fn check_rejects_what_would_not_load() {
    let tmp = tempfile::tempdir().unwrap();
    let core = tmp.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = worker(&["handler", "check", core.to_str().unwrap(), "-O", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(report["wasm"], "core-module");
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .contains("not a component")
    );

    let text = tmp.path().join("text.wasm");
    std::fs::write(&text, b"#!/bin/sh\necho hi\n").unwrap();
    let out = worker(&["handler", "check", text.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("INVALID"), "{}", stdout(&out));

    // A component that is not a handler: a header that claims to be one, and nothing else.
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let out = worker(&["handler", "check", junk.to_str().unwrap(), "-O", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json(&out)["problems"][0]
            .as_str()
            .unwrap()
            .contains("does not compile"),
        "{}",
        stdout(&out)
    );

    // A valid handler passes the default policy; a stricter one (a tenant's) can refuse its
    // WASI imports or the operations it serves.
    let hostile = guestkit_fixtures::component("hostile", &[]);
    let out = worker(&["handler", "check", hostile.to_str().unwrap(), "-O", "json"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = Sandbox::new(EngineConfig {
        pool_slots: 2,
        ..EngineConfig::default()
    })
    .unwrap();
    let strict = CheckPolicy {
        allowed_imports: vec!["guestkit:handler/*".into()],
        allowed_operations: Some(vec!["echo".into()]),
    };
    let report = runtime
        .block_on(authoring::check_file(&sandbox, &hostile, &strict))
        .unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("wasi:") && p.contains("policy does not allow")),
        "{:?}",
        report.problems
    );
    let default = runtime
        .block_on(authoring::check_file(
            &sandbox,
            &hostile,
            &CheckPolicy::default(),
        ))
        .unwrap();
    assert!(default.ok, "{:?}", default.problems);
    let only_echo = CheckPolicy {
        allowed_operations: Some(vec!["echo".into()]),
        ..CheckPolicy::default()
    };
    let report = runtime
        .block_on(authoring::check_file(&sandbox, &hostile, &only_echo))
        .unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("serves operation 'hostile.")),
        "{:?}",
        report.problems
    );

    // The same policy from the command line.
    let out = worker(&[
        "handler",
        "check",
        hostile.to_str().unwrap(),
        "--allow-import",
        "guestkit:handler/*",
        "--allow-operation",
        "echo",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT ALLOWED"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("which the policy does not allow"),
        "{}",
        stdout(&out)
    );

    // A file that is not there is a wrong invocation.
    let out = worker(&["handler", "check", "/no/such/file.wasm"]);
    assert_eq!(out.status.code(), Some(2));
}
