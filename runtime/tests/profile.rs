//! `guestkit.profile` end to end: the real daemon, real HTTP, guest roots written by a recipe
//! with weaknesses planted on purpose (and a hardened and a damaged counterpart), on disks
//! built by sfdisk, mke2fs and qemu-img. Every finding is compared field by field: id, volume
//! and evidence with what the recipe wrote (`expected.json`, from grep/lstat/readlink on its own
//! files), title, profile, severity and remediation with `docs/profile.md`, and the whole
//! document with `docs/schemas/profile-output.schema.json`.

mod common;

use common::{Daemon, Http, Opts};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn expected(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// One check as `docs/profile.md` describes it.
#[derive(Debug, Clone)]
struct DocCheck {
    /// Position in the document: findings are ordered by it.
    order: usize,
    title: String,
    profile: String,
    severity: String,
    remediation: String,
}

/// The checks of `docs/profile.md`, from its `### ID` sections and their `- key: value` lines.
fn documented() -> BTreeMap<String, DocCheck> {
    let doc = std::fs::read_to_string(repo().join("docs/profile.md")).expect("docs/profile.md");
    let mut checks = BTreeMap::new();
    for (order, section) in doc.split("\n### ").skip(1).enumerate() {
        let id = section.lines().next().unwrap().trim().to_string();
        let field = |key: &str| {
            let prefix = format!("- {key}: ");
            section
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("{id}: no `{key}` in docs/profile.md"))
                .trim_matches('`')
                .to_string()
        };
        let check = DocCheck {
            order,
            title: field("title"),
            profile: field("profile"),
            severity: field("severity"),
            remediation: field("remediation"),
        };
        checks.insert(id, check);
    }
    assert!(checks.len() >= 20, "docs/profile.md lists the checks");
    checks
}

/// The documented risk score weights.
fn weight(severity: &str) -> u64 {
    match severity {
        "critical" => 25,
        "high" => 10,
        "medium" => 5,
        "low" => 2,
        other => panic!("severity {other}"),
    }
}

fn rank(severity: &str) -> u8 {
    match severity {
        "low" => 0,
        "medium" => 1,
        "high" => 2,
        "critical" => 3,
        other => panic!("severity {other}"),
    }
}

const ALL_PROFILES: [&str; 7] = [
    "ssh",
    "accounts",
    "filesystem",
    "network",
    "mac",
    "services",
    "kernel",
];

/// Checks `value` against the subset of JSON Schema the published schema uses.
fn validate(schema: &Value, root: &Value, value: &Value, at: &str) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/$defs/").expect("local $ref");
        validate(&root["$defs"][name], root, value, at);
    }
    if let Some(c) = schema.get("const") {
        assert_eq!(value, c, "{at}");
    }
    if let Some(e) = schema["enum"].as_array() {
        assert!(e.contains(value), "{at}: {value} not in {e:?}");
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let ok = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("schema type {other}"),
        });
        assert!(ok, "{at}: {value} is not {types:?}");
    }
    if let Some(min) = schema["minimum"].as_i64() {
        assert!(value.as_i64().unwrap() >= min, "{at}");
    }
    if let Some(max) = schema["maximum"].as_i64() {
        assert!(value.as_i64().unwrap() <= max, "{at}");
    }
    if let Some(obj) = value.as_object() {
        let props = schema["properties"].as_object();
        for req in schema["required"].as_array().into_iter().flatten() {
            assert!(
                obj.contains_key(req.as_str().unwrap()),
                "{at}: {req} missing"
            );
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(s, root, v, &format!("{at}.{k}")),
                None => assert!(
                    schema["additionalProperties"] != false,
                    "{at}: {k} is not in the schema"
                ),
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema["minItems"].as_u64() {
            assert!(items.len() as u64 >= min, "{at}: fewer than {min} items");
        }
        if schema["uniqueItems"] == true {
            for (i, a) in items.iter().enumerate() {
                assert!(!items[..i].contains(a), "{at}: {a} twice");
            }
        }
        if schema.get("items").is_some() {
            for (i, v) in items.iter().enumerate() {
                validate(&schema["items"], root, v, &format!("{at}[{i}]"));
            }
        }
    }
}

fn validate_output(output: &Value) {
    let text = std::fs::read_to_string(repo().join("docs/schemas/profile-output.schema.json"))
        .expect("the output schema");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    validate(&schema, &schema, output, "output");
}

/// A daemon whose image roots are the fixture directory (and `extra`, if given).
fn daemon(fixtures: &Path, data: &Path, extra: Option<&Path>) -> Daemon {
    let mut args = vec!["--image-root".into(), fixtures.display().to_string()];
    if let Some(extra) = extra {
        args.extend(["--image-root".into(), extra.display().to_string()]);
    }
    Daemon::start(
        data,
        &Opts {
            args,
            handlers: vec![],
        },
    )
}

/// Runs `profile` on `images` and returns the whole result document.
async fn profile(http: &Http, images: &[&str], payload: Value) -> Value {
    let id = http
        .submit(&json!({"operation": "profile", "images": images, "payload": payload}))
        .await;
    http.result(&id).await
}

/// A finding's sort key as docs/profile.md orders them within one root.
fn sort_key(docs: &BTreeMap<String, DocCheck>, f: &Value) -> (usize, String, u64) {
    let id = f["id"].as_str().unwrap();
    let e = &f["evidence"][0];
    (
        docs.get(id)
            .unwrap_or_else(|| panic!("{id} is not documented"))
            .order,
        e["path"].as_str().unwrap_or_default().to_string(),
        e["line"].as_u64().unwrap_or(0),
    )
}

/// The findings `expected` lists for one image, as the handler must report them: with the
/// documented title, profile, severity and remediation, in the documented order, filtered.
fn expected_findings(
    docs: &BTreeMap<String, DocCheck>,
    image: &str,
    expected: &Value,
    profiles: &[&str],
    min_severity: &str,
) -> Vec<Value> {
    let mut out: Vec<Value> = expected["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let id = f["id"].as_str().unwrap();
            let d = &docs[id];
            json!({
                "id": id, "title": d.title, "severity": d.severity, "profile": d.profile,
                "image": image, "volume": f["volume"], "evidence": f["evidence"],
                "remediation": d.remediation,
            })
        })
        .filter(|f| profiles.contains(&f["profile"].as_str().unwrap()))
        .filter(|f| rank(f["severity"].as_str().unwrap()) >= rank(min_severity))
        .collect();
    out.sort_by_key(|f| sort_key(docs, f));
    out
}

/// Compares a whole `profile` output with what `expected` says about `image`.
fn check_output(
    docs: &BTreeMap<String, DocCheck>,
    image: &str,
    expected: &Value,
    output: &Value,
    profiles: &[&str],
    min_severity: &str,
) {
    validate_output(output);
    assert_eq!(output["schema_version"], "1.0");
    assert_eq!(output["profiles"], json!(profiles), "{image}");
    assert_eq!(output["min_severity"], min_severity, "{image}");

    let roots: Vec<Value> = expected["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!({"image": image, "volume": r["volume"], "fs_type": r["fs_type"], "os": r["os"],
                   "mounts": r["mounts"]})
        })
        .collect();
    assert_eq!(output["roots"], json!(roots), "{image}: roots");

    let want = expected_findings(docs, image, expected, profiles, min_severity);
    let got = output["findings"].as_array().expect("findings");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{image}: finding {i}");
    }
    assert_eq!(got.len(), want.len(), "{image}: findings {got:#?}");

    let count = |sev: &str| want.iter().filter(|f| f["severity"] == sev).count();
    assert_eq!(
        output["summary"],
        json!({"critical": count("critical"), "high": count("high"), "medium": count("medium"),
               "low": count("low"), "total": want.len()}),
        "{image}: summary"
    );
    let score: u64 = want
        .iter()
        .map(|f| weight(f["severity"].as_str().unwrap()))
        .sum();
    assert_eq!(output["risk_score"], score.min(100), "{image}: risk score");

    let warnings = output["warnings"].as_array().expect("warnings");
    let got_warnings: Vec<Value> = warnings
        .iter()
        .map(|w| {
            assert_eq!(w["image"], image);
            assert!(!w["message"].as_str().unwrap().is_empty(), "{w}");
            let mut w = w.clone();
            w.as_object_mut().unwrap().remove("message");
            w.as_object_mut().unwrap().remove("image");
            w
        })
        .collect();
    assert_eq!(
        json!(got_warnings),
        expected["warnings"],
        "{image}: warnings {warnings:#?}"
    );
    assert_eq!(output["partial"], !warnings.is_empty(), "{image}: partial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_of_every_fixture_matches_what_the_recipe_planted() {
    let fixtures = guestkit_fixtures::build("guest-insecure");
    let expected = expected(&fixtures);
    let docs = documented();
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path(), None);
    let http = daemon.http();

    let images: Vec<&str> = expected
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(images.len(), 4, "{images:?}");
    for image in images {
        let result = profile(&http, &[image], Value::Null).await;
        assert_eq!(result["status"], "succeeded", "{image}: {result:#}");
        assert_eq!(result["usage"]["handler"]["name"], "guestkit.profile");
        check_output(
            &docs,
            image,
            &expected[image],
            &result["output"],
            &ALL_PROFILES,
            "low",
        );
    }
    // The damaged root is a partial result with warnings, not a failed job; the intact root
    // has nothing to warn about.
    let corrupt = profile(&http, &["corrupt.raw"], json!({})).await;
    assert_eq!(corrupt["output"]["partial"], true);
    assert!(corrupt["output"]["summary"]["total"].as_u64().unwrap() > 0);
    let hardened = profile(&http, &["hardened.raw"], json!({})).await;
    assert_eq!(hardened["output"]["risk_score"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_severity_and_images_in_the_payload_are_honoured() {
    let fixtures = guestkit_fixtures::build("guest-insecure");
    let expected = expected(&fixtures);
    let docs = documented();
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path(), None);
    let http = daemon.http();
    let image = "insecure.qcow2";

    for (profiles, min_severity) in [
        (vec!["kernel", "ssh"], "medium"),
        (vec!["accounts", "filesystem", "services"], "critical"),
        (vec!["network", "mac"], "low"),
        (ALL_PROFILES.to_vec(), "high"),
    ] {
        let result = profile(
            &http,
            &[image],
            json!({"profiles": profiles, "min_severity": min_severity}),
        )
        .await;
        assert_eq!(result["status"], "succeeded", "{result:#}");
        // Profiles come back in catalogue order, whatever order the payload used.
        let ordered: Vec<&str> = ALL_PROFILES
            .into_iter()
            .filter(|p| profiles.contains(p))
            .collect();
        check_output(
            &docs,
            image,
            &expected[image],
            &result["output"],
            &ordered,
            min_severity,
        );
    }

    // Two images granted: both profiled by default, one when the payload names it.
    let both = profile(&http, &["hardened.raw", image], json!(null)).await;
    let out = &both["output"];
    assert_eq!(out["roots"].as_array().unwrap().len(), 2, "{out:#}");
    assert_eq!(out["roots"][0]["image"], "hardened.raw");
    assert_eq!(out["roots"][1]["image"], image);
    let want = expected_findings(&docs, image, &expected[image], &ALL_PROFILES, "low");
    assert_eq!(out["findings"], json!(want));
    let one = profile(
        &http,
        &["hardened.raw", image],
        json!({"images": ["hardened.raw"]}),
    )
    .await;
    check_output(
        &docs,
        "hardened.raw",
        &expected["hardened.raw"],
        &one["output"],
        &ALL_PROFILES,
        "low",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_and_images_without_linux_fail_the_job() {
    let fixtures = guestkit_fixtures::build("guest-insecure");
    let blank = tempfile::tempdir().unwrap();
    std::fs::write(blank.path().join("blank.img"), vec![0u8; 4 << 20]).unwrap();
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path(), Some(blank.path()));
    let http = daemon.http();

    for (payload, field) in [
        (json!({"profiles": ["ssh", "nope"]}), "payload.profiles[1]"),
        (json!({"profiles": []}), "payload.profiles"),
        (json!({"profiles": "ssh"}), "payload.profiles"),
        (json!({"min_severity": "extreme"}), "payload.min_severity"),
        (json!({"min_severity": 2}), "payload.min_severity"),
        (json!({"images": ["hardened.raw"]}), "payload.images[0]"),
        (json!({"severity": "high"}), "payload.severity"),
        (json!(["ssh"]), "payload"),
    ] {
        let result = profile(&http, &["insecure.raw"], payload.clone()).await;
        assert_eq!(result["status"], "failed", "{payload}: {result:#}");
        assert_eq!(
            result["error"]["code"], "invalid_input",
            "{payload}: {result:#}"
        );
        assert_eq!(result["attempt"], 1, "invalid input is not retried");
        let message = result["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{field}:")),
            "{payload}: {message}"
        );
    }

    let result = profile(&http, &["blank.img"], Value::Null).await;
    assert_eq!(result["status"], "failed", "{result:#}");
    assert_eq!(result["error"]["code"], "unsupported", "{result:#}");
}

/// The Arch guest keeps its root in Btrfs subvolume `@` and mounts `@home` by `subvol=` and
/// `@log` by `subvolid=`: the root is found there and each subvolume is mounted where its
/// fstab says (subvolume paths as the recipe's dump-tree showed them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_in_a_btrfs_subvolume_is_profiled_with_its_subvolume_mounts() {
    let fixtures = guestkit_fixtures::build("guest-arch");
    let exp = expected(&fixtures);
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path(), None);
    let http = daemon.http();
    let result = profile(&http, &["arch.raw"], json!({})).await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let output = &result["output"];
    validate_output(output);
    let roots = output["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{output:#}");
    let root = &roots[0];
    let subvol = |mp: &str| exp["subvolumes"][mp]["path"].clone();
    assert_eq!(
        (&root["volume"], &root["fs_type"], &root["subvolume"]),
        (&json!("p2"), &json!("btrfs"), &subvol("/")),
        "{output:#}"
    );
    assert_eq!(root["os"]["id"], "arch");
    assert_eq!(
        root["mounts"],
        json!([
            {"path": "/home", "volume": "p2", "subvolume": subvol("/home")},
            {"path": "/var/log", "volume": "p2", "subvolume": subvol("/var/log")},
        ]),
        "{output:#}"
    );
}
