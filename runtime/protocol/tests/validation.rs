//! End-to-end: documents in, `JobSpec`s or field-named refusals out.

use guestkit_protocol::{
    Audit, Authorization, Checksum, Context, Form, ImageRef, JobSpec, Metadata, Observability,
    SCHEMA_V1, ValidationError, parse, parse_json, validate,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// 2026-01-30T10:00:00Z.
const NOW_MS: i64 = 1_769_767_200_000;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn ctx() -> Context {
    Context {
        now_ms: NOW_MS,
        worker_version: "0.3.1".into(),
        worker_pool: "default".into(),
        capabilities: vec!["inspect".into(), "disk.read".into()],
        features: vec!["lvm".into(), "qcow2".into()],
        default_timeout: Duration::from_secs(3600),
        max_timeout: Duration::from_secs(86_400),
        max_attempts_cap: 10,
    }
}

/// A v1.0 document using every field.
fn full() -> Value {
    json!({
        "$schema": SCHEMA_V1,
        "version": "1.0",
        "job_id": "job-550e8400-e29b-41d4-a716-446655440000",
        "created_at": "2026-01-30T09:59:00Z",
        "kind": "VMOperation",
        "operation": "inspect",
        "metadata": {
            "name": "inspect web-01",
            "namespace": "prod-eu",
            "labels": {"team": "infra", "app.kubernetes.io/name": "web"},
            "annotations": {"note": "quarterly audit"}
        },
        "execution": {
            "idempotency_key": "inspect-web-01-2026-01-30",
            "attempt": 1,
            "max_attempts": 3,
            "timeout_seconds": 7200,
            "deadline": "2026-01-30T14:00:00Z",
            "priority": 7,
            "cancellable": false
        },
        "constraints": {
            "required_capabilities": ["inspect"],
            "required_features": ["lvm"],
            "minimum_worker_version": "0.1.0",
            "maximum_disk_size_gb": 1000,
            "require_privileged": false,
            "allowed_worker_pools": ["default", "gpu"]
        },
        "routing": {"worker_id": null, "worker_pool": "default", "affinity": {}, "anti_affinity": {}},
        "payload": {
            "type": "inspect.v1",
            "data": {
                "deep": true,
                "image": {
                    "path": "/images/web-01.qcow2",
                    "format": "qcow2",
                    "checksum": format!("sha256:{}", EMPTY_SHA256.to_uppercase()),
                    "size_bytes": 123,
                    "read_only": true
                }
            }
        },
        "images": ["extra.raw", {"path": "nbd://nbd-host:10809/data", "format": "raw"}],
        "observability": {
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "parent_span_id": null,
            "correlation_id": "req:42"
        },
        "audit": {
            "submitted_by": "alice@example.com",
            "submitted_from": "10.0.0.5",
            "authorization": {"method": "bearer", "subject": "alice"}
        }
    })
}

/// `doc` with the value at `path` (object keys) set, creating objects on the way.
fn set(mut doc: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut doc;
    for key in path {
        at = &mut at[*key];
    }
    *at = value;
    doc
}

/// The full document with one value changed.
fn with(path: &[&str], value: Value) -> Value {
    set(full(), path, value)
}

fn short(extra: Value) -> Value {
    let mut doc = json!({"operation": "echo"});
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
    doc
}

fn refuse(doc: Value) -> ValidationError {
    match validate(doc.clone(), &ctx()) {
        Ok(_) => panic!("accepted: {doc}"),
        Err(e) => e,
    }
}

fn accept(doc: Value) -> JobSpec {
    match validate(doc.clone(), &ctx()) {
        Ok(spec) => spec,
        Err(e) => panic!("refused ({e}): {doc}"),
    }
}

#[test]
fn a_full_v1_document_is_carried_into_the_spec() {
    let spec = accept(full());
    assert_eq!(spec.form, Form::V1);
    assert_eq!(
        spec.job_id.as_deref(),
        Some("job-550e8400-e29b-41d4-a716-446655440000")
    );
    assert_eq!(spec.operation, "inspect");
    assert_eq!(spec.created_at_ms, Some(NOW_MS - 60_000));
    assert_eq!(spec.payload, full()["payload"]["data"]);
    assert_eq!(
        spec.images,
        vec![
            ImageRef {
                path: "extra.raw".into(),
                format: None,
                checksum: None,
                size_bytes: None,
            },
            ImageRef {
                path: "nbd://nbd-host:10809/data".into(),
                format: Some("raw".into()),
                checksum: None,
                size_bytes: None,
            },
            ImageRef {
                path: "/images/web-01.qcow2".into(),
                format: Some("qcow2".into()),
                checksum: Some(Checksum {
                    algorithm: "sha256".into(),
                    hex: EMPTY_SHA256.into(),
                }),
                size_bytes: Some(123),
            },
        ]
    );
    assert_eq!(spec.priority, 7);
    assert_eq!(spec.max_attempts, 3);
    assert_eq!(spec.timeout, Duration::from_secs(7200));
    assert_eq!(spec.deadline_ms, Some(NOW_MS + 4 * 3600 * 1000));
    assert_eq!(
        spec.idempotency_key.as_deref(),
        Some("inspect-web-01-2026-01-30")
    );
    assert!(!spec.cancellable);
    assert_eq!(spec.max_disk_bytes, Some(1000 << 30));
    assert_eq!(
        spec.metadata,
        Metadata {
            name: Some("inspect web-01".into()),
            namespace: Some("prod-eu".into()),
            labels: BTreeMap::from([
                ("team".into(), "infra".into()),
                ("app.kubernetes.io/name".into(), "web".into()),
            ]),
            annotations: BTreeMap::from([("note".into(), "quarterly audit".into())]),
        }
    );
    assert_eq!(
        spec.observability,
        Observability {
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            parent_span_id: None,
            correlation_id: Some("req:42".into()),
        }
    );
    assert_eq!(
        spec.audit,
        Audit {
            submitted_by: Some("alice@example.com".into()),
            submitted_from: Some("10.0.0.5".into()),
            authorization: Some(Authorization {
                method: Some("bearer".into()),
                subject: Some("alice".into()),
            }),
        }
    );

    let doc = &spec.document;
    assert_eq!(doc["version"], "1.0");
    assert_eq!(doc["$schema"], SCHEMA_V1);
    assert_eq!(doc["created_at"], "2026-01-30T09:59:00Z");
    assert_eq!(doc["execution"]["priority"], 7);
    assert_eq!(doc["execution"]["deadline"], "2026-01-30T14:00:00Z");
    assert_eq!(doc["payload"]["type"], "inspect.v1");
    assert_eq!(doc["routing"]["worker_pool"], "default");
    assert_eq!(doc["constraints"]["maximum_disk_size_gb"], 1000);
    assert_eq!(doc["images"].as_array().map(Vec::len), Some(2));
    assert_eq!(doc["images"][1]["read_only"], true);
}

#[test]
fn the_short_form() {
    let spec = accept(json!({
        "operation": "echo",
        "payload": [1, {"two": 2}],
        "images": [
            "disk.qcow2",
            {"path": "/images/b.vmdk", "format": "vmdk", "checksum": format!("md5:{}", "A".repeat(32)),
             "size_bytes": 4096, "read_only": true}
        ],
        "job_id": "j1",
        "execution": {"priority": 10, "max_attempts": 10, "timeout_seconds": 86400,
                      "idempotency_key": "k~1", "cancellable": true, "attempt": 1},
        "metadata": {"name": "n", "labels": {"team": "infra"}}
    }));
    assert_eq!(spec.form, Form::Short);
    assert_eq!(spec.operation, "echo");
    assert_eq!(spec.payload, json!([1, {"two": 2}]));
    assert_eq!(spec.images.len(), 2);
    assert_eq!(spec.images[0].path, "disk.qcow2");
    assert_eq!(spec.images[1].format.as_deref(), Some("vmdk"));
    assert_eq!(
        spec.images[1].checksum,
        Some(Checksum {
            algorithm: "md5".into(),
            hex: "a".repeat(32)
        })
    );
    assert_eq!(spec.images[1].size_bytes, Some(4096));
    assert_eq!(spec.job_id.as_deref(), Some("j1"));
    assert_eq!(spec.priority, 10);
    assert_eq!(spec.max_attempts, 10);
    assert_eq!(spec.timeout, Duration::from_secs(86_400));
    assert_eq!(spec.idempotency_key.as_deref(), Some("k~1"));
    assert_eq!(spec.metadata.labels["team"], "infra");
    assert_eq!(spec.document["payload"], json!([1, {"two": 2}]));
    assert_eq!(spec.document.get("version"), None);
}

#[test]
fn defaults() {
    for (doc, form) in [
        (json!({"operation": "echo"}), Form::Short),
        (json!({"version": "1.0", "operation": "echo"}), Form::V1),
        (
            json!({"operation": "echo", "payload": null, "images": null, "job_id": null,
                   "execution": null, "metadata": null}),
            Form::Short,
        ),
        (
            json!({"version": "1.0", "operation": "echo", "payload": {}, "execution": {},
                   "constraints": {}, "routing": {}, "metadata": {"labels": null},
                   "observability": {}, "audit": {}, "images": []}),
            Form::V1,
        ),
    ] {
        let spec = accept(doc);
        assert_eq!(spec.form, form);
        assert_eq!(spec.job_id, None);
        assert_eq!(spec.payload, Value::Null);
        assert!(spec.images.is_empty());
        assert_eq!(spec.priority, 5);
        assert_eq!(spec.max_attempts, 1);
        assert_eq!(spec.timeout, Duration::from_secs(3600));
        assert_eq!(spec.deadline_ms, None);
        assert_eq!(spec.idempotency_key, None);
        assert!(spec.cancellable);
        assert_eq!(spec.max_disk_bytes, None);
        assert_eq!(spec.metadata, Metadata::default());
        assert_eq!(spec.observability, Observability::default());
        assert_eq!(spec.audit, Audit::default());
        assert_eq!(spec.created_at_ms, None);
        assert_eq!(spec.document["execution"]["timeout_seconds"], 3600);
        assert_eq!(spec.document["execution"]["priority"], 5);
        assert_eq!(spec.document["execution"]["cancellable"], true);
    }
    let spec = accept(json!({"version": "1.0", "operation": "echo"}));
    assert_eq!(
        spec.document["payload"],
        json!({"type": "echo.v1", "data": null})
    );
    assert_eq!(spec.document["kind"], "VMOperation");
    assert_eq!(spec.document["constraints"]["require_privileged"], false);
}

#[test]
fn the_normalized_document_validates_to_the_same_spec() {
    for doc in [
        full(),
        json!({"version": "1.0", "operation": "echo"}),
        json!({"operation": "echo", "payload": {"a": 1}, "images": ["a.raw"]}),
        accept(json!({"operation": "echo"})).document,
    ] {
        let spec = accept(doc);
        let again = accept(spec.document.clone());
        assert_eq!(again, spec);
    }
}

#[test]
fn accepted_edge_values() {
    for doc in [
        with(&["created_at"], json!("2026-01-30T10:05:00Z")),
        with(&["created_at"], json!("2020-01-01T00:00:00+02:00")),
        with(
            &["execution", "deadline"],
            json!("2026-01-30T10:00:00.001Z"),
        ),
        with(&["constraints", "minimum_worker_version"], json!("0.3.1")),
        with(&["constraints", "allowed_worker_pools"], json!(["default"])),
        with(&["routing"], json!({"worker_pool": "default"})),
        with(&["payload", "type"], Value::Null),
        with(&["payload", "data"], json!("just a string")),
        with(&["payload", "data", "image", "read_only"], Value::Null),
        with(&["payload", "data", "image"], Value::Null),
        with(&["job_id"], json!("a".repeat(128))),
        with(
            &["images"],
            json!(["nbd+unix:///export?socket=/run/nbd.sock"]),
        ),
        with(
            &["metadata", "labels"],
            json!(
                (0..64)
                    .map(|i| (format!("k{i}"), json!("v")))
                    .collect::<serde_json::Map<_, _>>()
            ),
        ),
        short(json!({"execution": {"priority": 1}})),
        short(json!({"payload": "text"})),
    ] {
        accept(doc);
    }
}

#[test]
fn each_refusal_names_its_field() {
    let many_labels: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let seventeen: Vec<Value> = (0..17).map(|i| json!(format!("{i}.raw"))).collect();
    let sixteen: Vec<Value> = (0..16).map(|i| json!(format!("{i}.raw"))).collect();
    // One case a line: (document, field the refusal must name).
    #[rustfmt::skip]
    let cases: Vec<(Value, &str)> = vec![
        // Unknown fields, at any depth.
        (with(&["bogus"], json!(1)), "bogus"),
        (with(&["execution", "bogus"], json!(1)), "execution.bogus"),
        (with(&["payload", "data", "image", "bogus"], json!(1)), "payload.data.image.bogus"),
        (with(&["metadata", "owner"], json!("x")), "metadata.owner"),
        (with(&["constraints", "gpu"], json!(true)), "constraints.gpu"),
        (with(&["routing", "zone"], json!("a")), "routing.zone"),
        (with(&["payload", "extra"], json!(1)), "payload.extra"),
        (with(&["observability", "baggage"], json!("x")), "observability.baggage"),
        (with(&["audit", "who"], json!("x")), "audit.who"),
        (with(&["audit", "authorization", "token"], json!("x")), "audit.authorization.token"),
        (with(&["images"], json!([{"path": "a.raw", "mode": "rw"}])), "images[0].mode"),
        // Top level.
        (with(&["version"], json!("2.0")), "version"),
        (with(&["version"], json!(1.0)), "version"),
        (with(&["version"], Value::Null), "version"),
        (with(&["$schema"], json!("https://example.com/job.json")), "$schema"),
        (with(&["kind"], json!("Other")), "kind"),
        (with(&["operation"], Value::Null), "operation"),
        (with(&["operation"], json!("Inspect")), "operation"),
        (with(&["operation"], json!("")), "operation"),
        (with(&["job_id"], json!("../x")), "job_id"),
        (with(&["job_id"], json!("a/b")), "job_id"),
        (with(&["job_id"], json!("")), "job_id"),
        (with(&["job_id"], json!(".")), "job_id"),
        (with(&["job_id"], json!("a".repeat(129))), "job_id"),
        (with(&["job_id"], json!(5)), "job_id"),
        (with(&["created_at"], json!("2026-01-30T10:05:01Z")), "created_at"),
        (with(&["created_at"], json!("yesterday")), "created_at"),
        // Execution.
        (with(&["execution", "priority"], json!(0)), "execution.priority"),
        (with(&["execution", "priority"], json!(11)), "execution.priority"),
        (with(&["execution", "priority"], json!(256)), "execution.priority"),
        (with(&["execution", "priority"], json!(-1)), "execution.priority"),
        (with(&["execution", "priority"], json!("5")), "execution.priority"),
        (with(&["execution", "priority"], json!(5.5)), "execution.priority"),
        (with(&["execution", "priority"], json!(5.0)), "execution.priority"),
        (with(&["execution", "attempt"], json!(2)), "execution.attempt"),
        (with(&["execution", "attempt"], json!(0)), "execution.attempt"),
        (with(&["execution", "max_attempts"], json!(0)), "execution.max_attempts"),
        (with(&["execution", "max_attempts"], json!(11)), "execution.max_attempts"),
        (with(&["execution", "timeout_seconds"], json!(0)), "execution.timeout_seconds"),
        (with(&["execution", "timeout_seconds"], json!(86_401)), "execution.timeout_seconds"),
        (with(&["execution", "timeout_seconds"], json!(1.5)), "execution.timeout_seconds"),
        (with(&["execution", "deadline"], json!("2026-01-30T09:00:00Z")), "execution.deadline"),
        (with(&["execution", "deadline"], json!("2026-01-30T10:00:00Z")), "execution.deadline"),
        (with(&["execution", "deadline"], json!("2026-01-30 14:00")), "execution.deadline"),
        (with(&["execution", "idempotency_key"], json!("")), "execution.idempotency_key"),
        (with(&["execution", "idempotency_key"], json!("a b")), "execution.idempotency_key"),
        (with(&["execution", "idempotency_key"], json!("é")), "execution.idempotency_key"),
        (with(&["execution", "idempotency_key"], json!("k".repeat(257))), "execution.idempotency_key"),
        (with(&["execution", "cancellable"], json!("yes")), "execution.cancellable"),
        (with(&["execution"], json!([])), "execution"),
        (with(&["execution"], json!(["key", 1, 3, 7200, null, 7, true])), "execution"),
        (with(&["metadata"], json!(["n", "ns"])), "metadata"),
        (with(&["payload"], json!(["inspect.v1", {}])), "payload"),
        (with(&["routing"], json!([null])), "routing"),
        (with(&["constraints"], json!([])), "constraints"),
        (with(&["observability"], json!(["t"])), "observability"),
        (with(&["audit"], json!(["alice"])), "audit"),
        (with(&["audit", "authorization"], json!(["bearer", "alice"])), "audit.authorization"),
        (with(&["payload", "data", "image"], json!(["/images/a.raw"])), "payload.data.image"),
        (short(json!({"execution": [null, null, null, null, null, 10]})), "execution"),
        // Constraints.
        (with(&["constraints", "require_privileged"], json!(true)), "constraints.require_privileged"),
        (with(&["constraints", "required_capabilities"], json!(["inspect", "gpu"])), "constraints.required_capabilities[1]"),
        (with(&["constraints", "required_capabilities"], json!("inspect")), "constraints.required_capabilities"),
        (with(&["constraints", "required_features"], json!(["selinux"])), "constraints.required_features[0]"),
        (with(&["constraints", "minimum_worker_version"], json!("0.4.0")), "constraints.minimum_worker_version"),
        (with(&["constraints", "minimum_worker_version"], json!("1.0.0-rc1")), "constraints.minimum_worker_version"),
        (with(&["constraints", "minimum_worker_version"], json!("1.0")), "constraints.minimum_worker_version"),
        (with(&["constraints", "maximum_disk_size_gb"], json!(0)), "constraints.maximum_disk_size_gb"),
        (with(&["constraints", "maximum_disk_size_gb"], json!(u64::MAX)), "constraints.maximum_disk_size_gb"),
        (with(&["constraints", "allowed_worker_pools"], json!(["gpu"])), "constraints.allowed_worker_pools"),
        (with(&["constraints", "allowed_worker_pools"], json!([])), "constraints.allowed_worker_pools"),
        // Routing.
        (with(&["routing", "worker_id"], json!("worker-7")), "routing.worker_id"),
        (with(&["routing", "worker_pool"], json!("gpu")), "routing.worker_pool"),
        (with(&["routing", "affinity"], json!({"zone": "a"})), "routing.affinity"),
        (with(&["routing", "anti_affinity"], json!({"job": "x"})), "routing.anti_affinity"),
        // Payload and images.
        (with(&["payload"], json!(5)), "payload"),
        (with(&["payload", "type"], json!("other.v1")), "payload.type"),
        (with(&["payload", "data", "image"], json!("/images/a.raw")), "payload.data.image"),
        (with(&["payload", "data", "image", "path"], Value::Null), "payload.data.image.path"),
        (with(&["payload", "data", "image", "path"], json!("")), "payload.data.image.path"),
        (with(&["payload", "data", "image", "path"], json!("a\0b")), "payload.data.image.path"),
        (with(&["payload", "data", "image", "checksum"], json!("sha256:abc")), "payload.data.image.checksum"),
        (with(&["payload", "data", "image", "checksum"], json!(format!("crc32:{}", "0".repeat(8)))), "payload.data.image.checksum"),
        (with(&["payload", "data", "image", "checksum"], json!(&EMPTY_SHA256[1..])), "payload.data.image.checksum"),
        (with(&["payload", "data", "image", "read_only"], json!(false)), "payload.data.image.read_only"),
        (with(&["payload", "data", "image", "format"], json!("iso")), "payload.data.image.format"),
        (with(&["payload", "data", "image", "size_bytes"], json!(-1)), "payload.data.image.size_bytes"),
        (with(&["images"], json!(["/images/web-01.qcow2"])), "payload.data.image.path"),
        (with(&["images"], json!(["a.raw", {"path": "a.raw"}])), "images[1].path"),
        (with(&["images"], json!(["a.raw", "a.raw"])), "images[1]"),
        (with(&["images"], json!(seventeen)), "images"),
        (with(&["images"], json!(sixteen)), "payload.data.image"),
        (with(&["images"], json!([5])), "images[0]"),
        (with(&["images"], json!(["http://example.com/a.raw"])), "images[0]"),
        (with(&["images"], json!([{"path": "a.raw", "read_only": false}])), "images[0].read_only"),
        (with(&["images"], json!("a.raw")), "images"),
        // Metadata.
        (with(&["metadata", "labels"], json!(many_labels)), "metadata.labels"),
        (with(&["metadata", "labels", "bad key"], json!("v")), "metadata.labels.bad key"),
        (with(&["metadata", "labels", "team"], json!(1)), "metadata.labels.team"),
        (with(&["metadata", "labels", "team"], json!("v".repeat(257))), "metadata.labels.team"),
        (with(&["metadata", "annotations", "note"], json!("v".repeat(4097))), "metadata.annotations.note"),
        (with(&["metadata", "name"], json!("n".repeat(254))), "metadata.name"),
        (with(&["metadata", "namespace"], json!("Prod")), "metadata.namespace"),
        (with(&["metadata", "namespace"], json!("n".repeat(64))), "metadata.namespace"),
        // Observability and audit.
        (with(&["observability", "trace_id"], json!("a b")), "observability.trace_id"),
        (with(&["observability", "span_id"], json!("s".repeat(129))), "observability.span_id"),
        (with(&["observability", "correlation_id"], json!(7)), "observability.correlation_id"),
        (with(&["audit", "submitted_by"], json!("a".repeat(257))), "audit.submitted_by"),
        (with(&["audit", "authorization", "subject"], json!("a".repeat(257))), "audit.authorization.subject"),
        // Short form: only its own fields.
        (json!({"payload": 1}), "operation"),
        (short(json!({"extra": 1})), "extra"),
        (short(json!({"constraints": {}})), "constraints"),
        (short(json!({"observability": {}})), "observability"),
        (short(json!({"created_at": "2026-01-30T10:00:00Z"})), "created_at"),
        (short(json!({"execution": {"priority": 0}})), "execution.priority"),
        (short(json!({"execution": {"turbo": true}})), "execution.turbo"),
        (short(json!({"images": [""]})), "images[0]"),
        (short(json!({"images": [{"format": "raw"}]})), "images[0].path"),
        (short(json!({"job_id": "../x"})), "job_id"),
        (short(json!({"metadata": {"labels": {"": "v"}}})), "metadata.labels."),
        // Not an object at all.
        (json!([1, 2]), "body"),
        (json!("echo"), "body"),
        (Value::Null, "body"),
    ];
    let mut wrong = Vec::new();
    for (doc, field) in cases {
        let e = refuse(doc.clone());
        assert!(!e.message.is_empty());
        if e.field != field {
            wrong.push(format!("{doc}\n  want {field}, got {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn messages_say_why() {
    let cases = [
        (with(&["bogus"], json!(1)), "unknown field"),
        (with(&["execution", "bogus"], json!(1)), "unknown field"),
        (
            with(&["execution", "attempt"], json!(2)),
            "must be 1 if given: attempts are counted by the server",
        ),
        (
            with(&["routing", "worker_id"], json!("w")),
            "pinning to one worker is not supported; jobs go to any worker of the pool",
        ),
        (
            with(&["constraints", "require_privileged"], json!(true)),
            "this worker never runs privileged jobs",
        ),
        (
            with(&["constraints", "required_capabilities"], json!(["gpu"])),
            "capability \"gpu\" is not offered by this worker",
        ),
        (
            with(&["constraints", "minimum_worker_version"], json!("0.4.0")),
            "requires worker 0.4.0 or later; this worker is 0.3.1",
        ),
        (
            with(&["payload", "data", "image", "read_only"], json!(false)),
            "must be true: images are always attached read-only",
        ),
        (
            with(&["execution", "priority"], json!("5")),
            "invalid type: string \"5\", expected a non-negative integer",
        ),
        (
            with(
                &["payload", "data", "image", "checksum"],
                json!("sha256:abc"),
            ),
            "a sha256 digest is 64 hex digits",
        ),
    ];
    for (doc, message) in cases {
        assert_eq!(refuse(doc).message, message);
    }
}

#[test]
fn bodies() {
    let ctx = ctx();
    let spec = parse(br#"{"operation": "echo", "payload": {"x": 1}}"#, &ctx).unwrap();
    assert_eq!(spec.payload, json!({"x": 1}));

    for body in [
        &b"not json"[..],
        b"",
        b"{\"operation\": \"echo\"",
        b"{} trailing",
    ] {
        let e = parse(body, &ctx).unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
    }
    for body in [&b"[1, 2]"[..], b"\"echo\"", b"null", b"42"] {
        let e = parse(body, &ctx).unwrap_err();
        assert_eq!(e.field, "body");
        assert_eq!(e.message, "a job document must be a JSON object");
    }
    let e = parse(br#"{"operation": "echo", "operation": "rm"}"#, &ctx).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("operation", "duplicate key")
    );

    let full = serde_json::to_vec(&full()).unwrap();
    assert_eq!(
        parse(&full, &ctx).unwrap(),
        accept(parse_json(&full).unwrap())
    );
}

#[test]
fn specs_and_errors_round_trip_as_json() {
    let spec = accept(full());
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<JobSpec>(&text).unwrap(), spec);

    let e = refuse(with(&["execution", "priority"], json!(11)));
    assert_eq!(
        e.to_response_body(),
        json!({"error": {"code": "invalid_field", "field": "execution.priority",
                         "message": "must be an integer from 1 (least urgent) to 10 (most urgent)"}})
    );
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"field": "execution.priority",
               "message": "must be an integer from 1 (least urgent) to 10 (most urgent)"})
    );
}

#[test]
fn context_limits_apply() {
    let mut ctx = ctx();
    ctx.max_attempts_cap = 3;
    ctx.max_timeout = Duration::from_secs(60);
    ctx.default_timeout = Duration::from_secs(30);
    ctx.worker_pool = "gpu".into();
    let spec = validate(
        json!({"operation": "echo", "execution": {"max_attempts": 3}}),
        &ctx,
    )
    .unwrap();
    assert_eq!(spec.timeout, Duration::from_secs(30));
    for (doc, field) in [
        (
            json!({"operation": "echo", "execution": {"max_attempts": 4}}),
            "execution.max_attempts",
        ),
        (
            json!({"operation": "echo", "execution": {"timeout_seconds": 61}}),
            "execution.timeout_seconds",
        ),
        (
            set(
                with(&["execution", "timeout_seconds"], json!(60)),
                &["constraints", "allowed_worker_pools"],
                json!(["default"]),
            ),
            "constraints.allowed_worker_pools",
        ),
        (
            with(&["execution", "timeout_seconds"], json!(60)),
            "routing.worker_pool",
        ),
    ] {
        assert_eq!(validate(doc, &ctx).unwrap_err().field, field);
    }
    let default = Context::default();
    assert_eq!(default.worker_pool, "default");
    assert_eq!(default.max_attempts_cap, 10);
    assert!(default.now_ms > NOW_MS - 365 * 24 * 3600 * 1000);
}

/// JSON pointers of every value in `doc`.
fn pointers(doc: &Value, at: String, out: &mut Vec<String>) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(value, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                pointers(value, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[test]
fn any_value_anywhere_is_refused_or_accepted_without_panicking() {
    let odd = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(1.5),
        json!(u64::MAX),
        json!(""),
        json!("x".repeat(5000)),
        json!("\0"),
        json!([]),
        json!({}),
        json!([{}]),
        json!({"path": "a.raw"}),
    ];
    for doc in [full(), accept(json!({"operation": "echo"})).document] {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        for pointer in all {
            for value in &odd {
                let mut mutated = doc.clone();
                match mutated.pointer_mut(&pointer) {
                    Some(slot) => *slot = value.clone(),
                    None => panic!("no {pointer}"),
                }
                if let Err(e) = validate(mutated, &ctx()) {
                    assert!(!e.field.is_empty() && !e.message.is_empty());
                }
            }
        }
    }
}
