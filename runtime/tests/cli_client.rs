//! Every client command of the CLI against a real daemon.

mod common;

use common::{Daemon, Opts};
use serde_json::Value;
use std::process::{Command, Output};

fn cli(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(common::binary())
        .args(args)
        .env("GUESTKIT_WORKER_API_URL", &daemon.api)
        .output()
        .expect("running the CLI")
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_client_command_against_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &Opts {
            args: vec![],
            handlers: vec![guestkit_fixtures::component("hostile", &[])],
        },
    );

    // submit from flags, --wait, every output format.
    let out = cli(
        &daemon,
        &[
            "submit",
            "-o",
            "echo",
            "-p",
            r#"{"a":1}"#,
            "--wait",
            "--output",
            "json",
        ],
    );
    let result = ok_json(&out);
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["output"]["echo"]["a"], 1);
    let id = result["job_id"].as_str().unwrap().to_string();

    let out = cli(&daemon, &["submit", "-o", "echo", "--wait"]);
    assert!(out.status.success());
    assert!(text(&out).contains("status:"), "{}", text(&out));

    // submit a JSON file and a YAML file.
    let json_file = dir.path().join("job.json");
    std::fs::write(
        &json_file,
        r#"{"version":"1.0","job_id":"from-json","operation":"echo","payload":{"type":"echo.v1","data":{"x":1}}}"#,
    )
    .unwrap();
    let job = ok_json(&cli(
        &daemon,
        &["submit", json_file.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(job["id"], "from-json");
    let yaml_file = dir.path().join("job.yaml");
    std::fs::write(
        &yaml_file,
        "operation: echo\njob_id: from-yaml\npayload:\n  y: 2\nexecution:\n  priority: 9\n",
    )
    .unwrap();
    let out = cli(
        &daemon,
        &["submit", yaml_file.to_str().unwrap(), "--output", "yaml"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text(&out).contains("id: from-yaml"), "{}", text(&out));
    assert!(text(&out).contains("priority: 9"), "{}", text(&out));

    // The example jobs in the repository run as they are.
    let examples = guestkit_fixtures::workspace_root().join("examples/jobs");
    for example in ["echo-v1.json", "echo-short.yaml"] {
        let path = examples.join(example);
        let r = ok_json(&cli(
            &daemon,
            &["submit", path.to_str().unwrap(), "--wait", "-O", "json"],
        ));
        assert_eq!(r["status"], "succeeded", "{example}: {r}");
    }

    // result, with --wait and without.
    let r = ok_json(&cli(
        &daemon,
        &["result", "from-yaml", "--wait", "30", "--output", "json"],
    ));
    assert_eq!(r["output"]["echo"]["y"], 2);
    let out = cli(&daemon, &["result", &id]);
    assert!(text(&out).contains("succeeded"), "{}", text(&out));

    // status (table, json) and --watch.
    let out = cli(&daemon, &["status", &id]);
    assert!(out.status.success());
    assert!(text(&out).contains(&id));
    assert!(text(&out).contains("succeeded"));
    let s = ok_json(&cli(&daemon, &["status", &id, "--output", "json"]));
    assert_eq!(s["status"], "succeeded");
    let out = cli(
        &daemon,
        &[
            "submit",
            "-o",
            "hostile.progress",
            "-p",
            r#"{"steps":3}"#,
            "-O",
            "json",
        ],
    );
    let pid = ok_json(&out)["id"].as_str().unwrap().to_string();
    let out = cli(&daemon, &["status", &pid, "--watch"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let watched = text(&out);
    assert!(watched.contains("state"), "{watched}");
    assert!(watched.contains("end      succeeded"), "{watched}");

    // list with filters.
    let page = ok_json(&cli(
        &daemon,
        &["list", "--operation", "echo", "--output", "json"],
    ));
    assert!(page["jobs"].as_array().unwrap().len() >= 4);
    let out = cli(&daemon, &["list", "--status", "succeeded", "--limit", "2"]);
    assert!(text(&out).starts_with("ID"), "{}", text(&out));
    assert!(text(&out).contains("(more: --cursor"), "{}", text(&out));
    let out = cli(&daemon, &["list", "--status", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("status"));

    // cancel: a running job, then an already finished one.
    let out = cli(
        &daemon,
        &[
            "submit",
            "-o",
            "hostile.sleep",
            "-p",
            r#"{"ms":20000}"#,
            "-O",
            "json",
        ],
    );
    let sid = ok_json(&out)["id"].as_str().unwrap().to_string();
    let http = daemon.http();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(http.wait_state(&sid, "running"));
    let c = ok_json(&cli(&daemon, &["cancel", &sid, "--output", "json"]));
    assert_eq!(c["status"], "cancelling");
    let out = cli(&daemon, &["result", &sid, "--wait", "30"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled job is not a success"
    );
    assert!(text(&out).contains("cancelled"));
    let out = cli(&daemon, &["cancel", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already finished"));

    // handlers, capabilities, health.
    let out = cli(&daemon, &["handlers"]);
    assert!(text(&out).contains("guestkit.echo"), "{}", text(&out));
    let h = ok_json(&cli(&daemon, &["handlers", "--output", "json"]));
    assert!(h["handlers"].as_array().unwrap().len() >= 2);
    let out = cli(&daemon, &["capabilities"]);
    assert!(text(&out).contains("operations:"), "{}", text(&out));
    let c = ok_json(&cli(&daemon, &["capabilities", "--output", "json"]));
    assert_eq!(c["protocol_versions"][0], "1.0");
    let out = cli(&daemon, &["health"]);
    assert!(text(&out).contains("status:"));
    let hl = ok_json(&cli(&daemon, &["health", "-O", "json"]));
    assert_eq!(hl["status"], "ok");

    // Errors: a 4xx exits 2 with the server's message naming the field.
    let out = cli(&daemon, &["submit", "-o", "echo", "--priority", "11"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("execution.priority"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&daemon, &["status", "no-such-job"]);
    assert_eq!(out.status.code(), Some(2));
    // An unreachable worker exits 3 with a clear message.
    let out = Command::new(common::binary())
        .args(["health", "--api-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
