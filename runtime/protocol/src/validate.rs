//! The two forms' validation: structure through serde, then the value rules, then the
//! normalized document.

use crate::document::{Constraints, Execution, Payload, Routing, ShortDocument, V1Document};
use crate::error::{Result, ValidationError, deserialize_at, fail, join};
use crate::image::Grants;
use crate::rules::{self, max_chars};
use crate::{
    Audit, Context, Form, JobSpec, MAX_CREATED_AT_SKEW_MS, Metadata, Observability, SCHEMA_V1,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const MAX_NAME_CHARS: usize = 253;
const MAX_NAMESPACE_CHARS: usize = 63;
const MAX_MAP_ENTRIES: usize = 64;
const MAX_LABEL_VALUE_CHARS: usize = 256;
const MAX_ANNOTATION_VALUE_CHARS: usize = 4096;
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
const MAX_AUDIT_CHARS: usize = 256;
const DEFAULT_PRIORITY: u8 = 5;
const MAX_PRIORITY: u8 = 10;
const GIB: u64 = 1 << 30;

/// Validates a parsed job document: a JSON object in either form (a `version` key selects
/// Job Protocol v1.0, its absence the short form).
///
/// The first problem found is returned, named by its field path; a value that is not an
/// object is refused with field `body`. Whether a handler serves the operation and whether
/// the image paths are allowed are left to the caller.
pub fn validate(doc: Value, ctx: &Context) -> std::result::Result<JobSpec, ValidationError> {
    let Value::Object(object) = &doc else {
        return fail("body", "a job document must be a JSON object");
    };
    if object.contains_key("version") {
        validate_v1(doc, ctx)
    } else {
        validate_short(doc, ctx)
    }
}

fn validate_short(doc: Value, ctx: &Context) -> Result<JobSpec> {
    let d: ShortDocument = deserialize_at(doc, "")?;
    let operation = rules::operation(d.operation)?;
    let payload = d.payload.unwrap_or(Value::Null);
    let mut grants = Grants::default();
    grants.add_list(d.images)?;
    let job_id = rules::job_id(d.job_id)?;
    let execution = execution(d.execution, ctx)?;
    let metadata = metadata(d.metadata)?;

    let images = grants.into_images();
    let document = json!({
        "operation": operation,
        "payload": payload,
        "images": images.iter().map(|i| i.to_document()).collect::<Vec<_>>(),
        "job_id": job_id,
        "execution": execution.to_document(),
        "metadata": metadata,
    });
    Ok(JobSpec {
        form: Form::Short,
        job_id,
        operation,
        payload,
        images,
        priority: execution.priority,
        max_attempts: execution.max_attempts,
        timeout: execution.timeout,
        deadline_ms: execution.deadline_ms,
        idempotency_key: execution.idempotency_key,
        cancellable: execution.cancellable,
        max_disk_bytes: None,
        metadata,
        observability: Observability::default(),
        audit: Audit::default(),
        created_at_ms: None,
        document,
    })
}

fn validate_v1(doc: Value, ctx: &Context) -> Result<JobSpec> {
    let d: V1Document = deserialize_at(doc, "")?;
    if d.schema.as_deref().is_some_and(|s| s != SCHEMA_V1) {
        return fail("$schema", format!("must be {SCHEMA_V1:?} if given"));
    }
    if d.version.as_deref() != Some("1.0") {
        return fail(
            "version",
            "must be \"1.0\" (the only protocol version supported)",
        );
    }
    let job_id = rules::job_id(d.job_id)?;
    let created_at_ms = match &d.created_at {
        Some(s) => Some(created_at(s, ctx)?),
        None => None,
    };
    if d.kind.as_deref().is_some_and(|k| k != "VMOperation") {
        return fail("kind", "must be \"VMOperation\" if given");
    }
    let operation = rules::operation(d.operation)?;
    let metadata = metadata(d.metadata)?;
    let execution = execution(d.execution, ctx)?;
    let constraints = constraints(d.constraints.unwrap_or_default(), ctx)?;
    routing(d.routing.unwrap_or_default(), ctx)?;

    let Payload { kind, data } = d.payload.unwrap_or_default();
    let payload_type = format!("{operation}.v1");
    if kind.is_some_and(|k| k != payload_type) {
        return fail(
            "payload.type",
            format!("must be {payload_type:?} (the operation's payload type) if given"),
        );
    }
    let data = data.unwrap_or(Value::Null);

    let mut grants = Grants::default();
    grants.add_list(d.images)?;
    let listed: Vec<Value> = grants.images().iter().map(|i| i.to_document()).collect();
    if let Some(image) = data.get("image").filter(|image| !image.is_null()) {
        grants.add_payload_image(image.clone())?;
    }
    let observability = observability(d.observability.unwrap_or_default())?;
    let audit = audit(d.audit.unwrap_or_default())?;

    let document = json!({
        "$schema": SCHEMA_V1,
        "version": "1.0",
        "job_id": job_id,
        "created_at": created_at_ms.and_then(rules::format_ms),
        "kind": "VMOperation",
        "operation": operation,
        "metadata": metadata,
        "execution": execution.to_document(),
        "constraints": constraints.document,
        "routing": {
            "worker_id": null,
            "worker_pool": ctx.worker_pool,
            "affinity": {},
            "anti_affinity": {},
        },
        "payload": { "type": payload_type, "data": data },
        // Only the listed images: `payload.data.image` stays where it was, and grants itself
        // again when the document is validated again.
        "images": listed,
        "observability": observability,
        "audit": audit,
    });
    Ok(JobSpec {
        form: Form::V1,
        job_id,
        operation,
        payload: data,
        images: grants.into_images(),
        priority: execution.priority,
        max_attempts: execution.max_attempts,
        timeout: execution.timeout,
        deadline_ms: execution.deadline_ms,
        idempotency_key: execution.idempotency_key,
        cancellable: execution.cancellable,
        max_disk_bytes: constraints.max_disk_bytes,
        metadata,
        observability,
        audit,
        created_at_ms,
        document,
    })
}

fn created_at(s: &str, ctx: &Context) -> Result<i64> {
    let ms = rules::timestamp_ms(s, "created_at")?;
    if ms > ctx.now_ms.saturating_add(MAX_CREATED_AT_SKEW_MS) {
        return fail(
            "created_at",
            "is more than 5 minutes in the future (is the client's clock right?)",
        );
    }
    Ok(ms)
}

/// `execution` at its effective values.
struct EffectiveExecution {
    idempotency_key: Option<String>,
    max_attempts: u32,
    timeout: Duration,
    deadline_ms: Option<i64>,
    priority: u8,
    cancellable: bool,
}

impl EffectiveExecution {
    fn to_document(&self) -> Value {
        json!({
            "idempotency_key": self.idempotency_key,
            "attempt": 1,
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout.as_secs(),
            "deadline": self.deadline_ms.and_then(rules::format_ms),
            "priority": self.priority,
            "cancellable": self.cancellable,
        })
    }
}

fn execution(e: Option<Execution>, ctx: &Context) -> Result<EffectiveExecution> {
    let e = e.unwrap_or_default();
    if let Some(key) = &e.idempotency_key
        && (key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_BYTES
            || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)))
    {
        return fail(
            "execution.idempotency_key",
            "must be 1-256 printable ASCII characters (no spaces)",
        );
    }
    if e.attempt.is_some_and(|n| n != 1) {
        return fail(
            "execution.attempt",
            "must be 1 if given: attempts are counted by the server",
        );
    }
    let cap = ctx.max_attempts_cap;
    let max_attempts = match e.max_attempts {
        None => 1,
        Some(n) => match u32::try_from(n) {
            Ok(n) if (1..=cap).contains(&n) => n,
            _ => {
                return fail(
                    "execution.max_attempts",
                    format!("must be an integer from 1 to {cap}"),
                );
            }
        },
    };
    let max_secs = ctx.max_timeout.as_secs();
    let timeout = match e.timeout_seconds {
        None => ctx.default_timeout,
        Some(secs) if (1..=max_secs).contains(&secs) => Duration::from_secs(secs),
        Some(_) => {
            return fail(
                "execution.timeout_seconds",
                format!("must be an integer from 1 to {max_secs}"),
            );
        }
    };
    let deadline_ms = match &e.deadline {
        None => None,
        Some(s) => {
            let ms = rules::timestamp_ms(s, "execution.deadline")?;
            if ms <= ctx.now_ms {
                return fail("execution.deadline", "is not in the future");
            }
            Some(ms)
        }
    };
    let priority = match e.priority {
        None => DEFAULT_PRIORITY,
        Some(p) => match u8::try_from(p) {
            Ok(p) if (1..=MAX_PRIORITY).contains(&p) => p,
            _ => {
                return fail(
                    "execution.priority",
                    "must be an integer from 1 (least urgent) to 10 (most urgent)",
                );
            }
        },
    };
    Ok(EffectiveExecution {
        idempotency_key: e.idempotency_key,
        max_attempts,
        timeout,
        deadline_ms,
        priority,
        cancellable: e.cancellable.unwrap_or(true),
    })
}

fn metadata(m: Option<Metadata>) -> Result<Metadata> {
    let m = m.unwrap_or_default();
    if let Some(name) = &m.name {
        max_chars(name, MAX_NAME_CHARS, "metadata.name")?;
    }
    if let Some(namespace) = &m.namespace
        && (namespace.len() > MAX_NAMESPACE_CHARS
            || !namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return fail(
            "metadata.namespace",
            "must be at most 63 characters of a-z 0-9 -",
        );
    }
    string_map(&m.labels, "metadata.labels", MAX_LABEL_VALUE_CHARS)?;
    string_map(
        &m.annotations,
        "metadata.annotations",
        MAX_ANNOTATION_VALUE_CHARS,
    )?;
    Ok(m)
}

/// Labels and annotations: bounded entries, key syntax, bounded values.
fn string_map(map: &BTreeMap<String, String>, field: &str, max_value: usize) -> Result<()> {
    if map.len() > MAX_MAP_ENTRIES {
        return fail(field, format!("at most {MAX_MAP_ENTRIES} entries"));
    }
    for (key, value) in map {
        let entry = join(field, key);
        if !rules::is_valid_label_key(key) {
            return fail(entry, "keys must be 1-63 characters of A-Z a-z 0-9 . _ / -");
        }
        max_chars(value, max_value, &entry)?;
    }
    Ok(())
}

/// `constraints` at their effective values.
struct EffectiveConstraints {
    max_disk_bytes: Option<u64>,
    document: Value,
}

fn constraints(c: Constraints, ctx: &Context) -> Result<EffectiveConstraints> {
    let capabilities = c.required_capabilities.unwrap_or_default();
    offered(
        &capabilities,
        &ctx.capabilities,
        "constraints.required_capabilities",
        "capability",
    )?;
    let features = c.required_features.unwrap_or_default();
    offered(
        &features,
        &ctx.features,
        "constraints.required_features",
        "feature",
    )?;
    if let Some(minimum) = &c.minimum_worker_version {
        minimum_version(minimum, ctx)?;
    }
    let max_disk_bytes = match c.maximum_disk_size_gb {
        None => None,
        Some(0) => return fail("constraints.maximum_disk_size_gb", "must be at least 1"),
        Some(gb) => match gb.checked_mul(GIB) {
            Some(bytes) => Some(bytes),
            None => return fail("constraints.maximum_disk_size_gb", "is too large"),
        },
    };
    if c.require_privileged == Some(true) {
        return fail(
            "constraints.require_privileged",
            "this worker never runs privileged jobs",
        );
    }
    if let Some(pools) = &c.allowed_worker_pools
        && !pools.contains(&ctx.worker_pool)
    {
        return fail(
            "constraints.allowed_worker_pools",
            format!("does not include this worker's pool {:?}", ctx.worker_pool),
        );
    }
    let document = json!({
        "required_capabilities": capabilities,
        "required_features": features,
        "minimum_worker_version": c.minimum_worker_version,
        "maximum_disk_size_gb": c.maximum_disk_size_gb,
        "require_privileged": false,
        "allowed_worker_pools": c.allowed_worker_pools,
    });
    Ok(EffectiveConstraints {
        max_disk_bytes,
        document,
    })
}

/// Refuses the first of `required` that this worker does not offer.
fn offered(required: &[String], offered: &[String], field: &str, what: &str) -> Result<()> {
    match required.iter().position(|r| !offered.contains(r)) {
        Some(i) => fail(
            format!("{field}[{i}]"),
            format!("{what} {:?} is not offered by this worker", required[i]),
        ),
        None => Ok(()),
    }
}

fn minimum_version(minimum: &str, ctx: &Context) -> Result<()> {
    const FIELD: &str = "constraints.minimum_worker_version";
    let Some(wanted) = rules::parse_version(minimum) else {
        let why = if minimum.contains(['-', '+']) {
            "must be MAJOR.MINOR.PATCH (pre-release and build suffixes are not supported)"
        } else {
            "must be MAJOR.MINOR.PATCH"
        };
        return fail(FIELD, why);
    };
    let Some(have) = rules::worker_version(&ctx.worker_version) else {
        return fail(
            FIELD,
            format!(
                "this worker's version {:?} cannot be compared",
                ctx.worker_version
            ),
        );
    };
    if wanted > have {
        return fail(
            FIELD,
            format!(
                "requires worker {minimum} or later; this worker is {}",
                ctx.worker_version
            ),
        );
    }
    Ok(())
}

fn routing(r: Routing, ctx: &Context) -> Result<()> {
    if r.worker_id.is_some() {
        return fail(
            "routing.worker_id",
            "pinning to one worker is not supported; jobs go to any worker of the pool",
        );
    }
    if let Some(pool) = &r.worker_pool
        && *pool != ctx.worker_pool
    {
        return fail(
            "routing.worker_pool",
            format!("must be this worker's pool {:?}", ctx.worker_pool),
        );
    }
    for (field, rules) in [
        ("routing.affinity", &r.affinity),
        ("routing.anti_affinity", &r.anti_affinity),
    ] {
        if rules.as_ref().is_some_and(|m| !m.is_empty()) {
            return fail(
                field,
                "must be {} if given: placement rules are not supported",
            );
        }
    }
    Ok(())
}

fn observability(o: Observability) -> Result<Observability> {
    for (name, value) in [
        ("trace_id", &o.trace_id),
        ("span_id", &o.span_id),
        ("parent_span_id", &o.parent_span_id),
        ("correlation_id", &o.correlation_id),
    ] {
        if let Some(value) = value
            && !rules::is_valid_trace_token(value)
        {
            return fail(
                join("observability", name),
                "must be at most 128 characters of A-Z a-z 0-9 . _ : -",
            );
        }
    }
    Ok(o)
}

fn audit(a: Audit) -> Result<Audit> {
    let authorization = a.authorization.clone().unwrap_or_default();
    for (field, value) in [
        ("audit.submitted_by", &a.submitted_by),
        ("audit.submitted_from", &a.submitted_from),
        ("audit.authorization.method", &authorization.method),
        ("audit.authorization.subject", &authorization.subject),
    ] {
        if let Some(value) = value {
            max_chars(value, MAX_AUDIT_CHARS, field)?;
        }
    }
    Ok(a)
}
