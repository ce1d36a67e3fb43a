//! Job documents: Job Protocol v1.0 (the original guestkit worker's format) and the short
//! form, validated into a [`JobSpec`].
//!
//! The documents are walked as JSON values rather than deserialized with serde so that every
//! refusal names the exact field (`execution.priority`, `payload.data.image.checksum`,
//! `metadata.labels.team`), unknown fields included. Every field accepted here is enforced
//! by the worker or refused here; none is silently ignored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the validator needs to know about the worker and the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Now, unix milliseconds.
    pub now_ms: i64,
    /// This worker's version (`MAJOR.MINOR.PATCH`).
    pub worker_version: String,
    /// The worker pool this worker belongs to.
    pub worker_pool: String,
    /// Capabilities jobs may require (`constraints.required_capabilities`).
    pub capabilities: Vec<String>,
    /// Features jobs may require (`constraints.required_features`).
    pub features: Vec<String>,
    /// Timeout of a job that gives none.
    pub default_timeout: Duration,
    /// Longest timeout a job may ask for.
    pub max_timeout: Duration,
    /// Most attempts a job may ask for.
    pub max_attempts_cap: u32,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            now_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            worker_version: env!("CARGO_PKG_VERSION").into(),
            worker_pool: "default".into(),
            capabilities: Vec::new(),
            features: Vec::new(),
            default_timeout: Duration::from_secs(3600),
            max_timeout: Duration::from_secs(86_400),
            max_attempts_cap: 10,
        }
    }
}

/// Which form a document was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// A Job Protocol v1.0 document (`version: "1.0"`).
    V1,
    /// `operation` + `payload` + `images`.
    Short,
}

/// An expected image checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `sha256`, `sha512`, `sha1`, `md5` or `blake3`.
    pub algorithm: String,
    /// Lowercase hex digest.
    pub hex: String,
}

/// An image the job asks to be granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Path (relative to an image root, or absolute inside one).
    pub path: String,
    /// Required format.
    pub format: Option<String>,
    /// Required checksum of the image file.
    pub checksum: Option<Checksum>,
    /// Required virtual size in bytes.
    pub size_bytes: Option<u64>,
}

/// A validated job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The document's form.
    pub form: Form,
    /// Client-chosen id (None: the worker generates one).
    pub job_id: Option<String>,
    /// Operation to run.
    pub operation: String,
    /// Handler input.
    pub payload: Value,
    /// Images to grant.
    pub images: Vec<ImageRef>,
    /// 1..=10, 10 most urgent.
    pub priority: u8,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Absolute deadline, unix ms.
    pub deadline_ms: Option<i64>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Whether cancel may stop the job.
    pub cancellable: bool,
    /// Largest virtual disk size the job accepts (`constraints.maximum_disk_size_gb`).
    pub max_disk_bytes: Option<u64>,
    /// When the client says it created the document, unix ms.
    pub created_at_ms: Option<i64>,
    /// The document with every effective value filled in, as stored for audit.
    pub document: Value,
}

/// A refused document: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the field (`body` for the document as a whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

type Result<T> = std::result::Result<T, ValidationError>;

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(ValidationError {
        field: field.into(),
        message: message.into(),
    })
}

/// Parses and validates a request body.
pub fn parse(body: &[u8], ctx: &Context) -> Result<JobSpec> {
    let doc: Value =
        serde_json::from_slice(body).or_else(|e| fail("body", format!("not valid JSON: {e}")))?;
    validate(doc, ctx)
}

/// Validates a parsed document.
pub fn validate(doc: Value, ctx: &Context) -> Result<JobSpec> {
    let Value::Object(obj) = doc else {
        return fail("body", "a job document must be a JSON object");
    };
    if obj.contains_key("version") {
        validate_v1(obj, ctx)
    } else {
        validate_short(obj, ctx)
    }
}

/// Refuses keys not in `allowed`, naming the first unknown one.
fn only(obj: &Map<String, Value>, prefix: &str, allowed: &[&str]) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => fail(join(prefix, k), "unknown field"),
        None => Ok(()),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .map_or_else(|| fail(field, "must be an object"), Ok)
}

fn string<'a>(v: &'a Value, field: &str, max: usize) -> Result<&'a str> {
    let Some(s) = v.as_str() else {
        return fail(field, "must be a string");
    };
    if s.len() > max {
        return fail(field, format!("must be at most {max} bytes"));
    }
    Ok(s)
}

fn opt<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn integer(v: &Value, field: &str, min: u64, max: u64) -> Result<u64> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => fail(field, format!("must be an integer from {min} to {max}")),
    }
}

/// Job ids: safe in any path, URL or log line.
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn job_id(obj: &Map<String, Value>) -> Result<Option<String>> {
    let Some(v) = opt(obj, "job_id") else {
        return Ok(None);
    };
    let id = string(v, "job_id", 128)?;
    if !valid_job_id(id) {
        return fail(
            "job_id",
            "must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        );
    }
    Ok(Some(id.to_string()))
}

fn operation(obj: &Map<String, Value>) -> Result<String> {
    let Some(v) = obj.get("operation") else {
        return fail("operation", "is required");
    };
    let op = string(v, "operation", 64)?;
    if !crate::registry::valid_operation_name(op) {
        return fail(
            "operation",
            "must be 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit",
        );
    }
    Ok(op.to_string())
}

/// Parses RFC 3339 into unix milliseconds.
fn timestamp(v: &Value, field: &str) -> Result<i64> {
    let s = string(v, field, 64)?;
    let t = humantime::parse_rfc3339_weak(s)
        .ok()
        .filter(|_| s.ends_with('Z') || s.ends_with('z'))
        .or_else(|| parse_offset(s));
    match t {
        Some(t) => Ok(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)),
        None => fail(
            field,
            "must be an RFC 3339 timestamp such as 2026-01-30T10:00:00Z",
        ),
    }
}

/// RFC 3339 with a numeric offset (`+02:00`), which humantime does not take.
fn parse_offset(s: &str) -> Option<SystemTime> {
    let split = s.len().checked_sub(6)?;
    let (base, offset) = s.split_at(split);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1i64,
        _ => return None,
    };
    let hours: i64 = offset.get(1..3)?.parse().ok()?;
    let minutes: i64 = offset.get(4..6)?.parse().ok()?;
    if offset.as_bytes().get(3) != Some(&b':') || hours > 23 || minutes > 59 {
        return None;
    }
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    let shift = Duration::from_secs(((hours * 60 + minutes) * 60) as u64);
    if sign > 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// What `execution` resolves to.
struct Execution {
    idempotency_key: Option<String>,
    max_attempts: u32,
    timeout: Duration,
    deadline_ms: Option<i64>,
    priority: u8,
    cancellable: bool,
}

fn execution(obj: &Map<String, Value>, ctx: &Context) -> Result<Execution> {
    let mut e = Execution {
        idempotency_key: None,
        max_attempts: 1,
        timeout: ctx.default_timeout,
        deadline_ms: None,
        priority: 5,
        cancellable: true,
    };
    let Some(v) = opt(obj, "execution") else {
        return Ok(e);
    };
    let x = object(v, "execution")?;
    only(
        x,
        "execution",
        &[
            "idempotency_key",
            "attempt",
            "max_attempts",
            "timeout_seconds",
            "deadline",
            "priority",
            "cancellable",
        ],
    )?;
    if let Some(v) = opt(x, "idempotency_key") {
        let key = string(v, "execution.idempotency_key", 256)?;
        if key.is_empty() || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return fail(
                "execution.idempotency_key",
                "must be 1-256 printable ASCII characters without spaces",
            );
        }
        e.idempotency_key = Some(key.to_string());
    }
    if let Some(v) = opt(x, "attempt")
        && v.as_u64() != Some(1)
    {
        return fail(
            "execution.attempt",
            "attempts are counted by the worker; only 1 may be given",
        );
    }
    if let Some(v) = opt(x, "max_attempts") {
        e.max_attempts = integer(
            v,
            "execution.max_attempts",
            1,
            u64::from(ctx.max_attempts_cap),
        )? as u32;
    }
    if let Some(v) = opt(x, "timeout_seconds") {
        let secs = integer(v, "execution.timeout_seconds", 1, ctx.max_timeout.as_secs())?;
        e.timeout = Duration::from_secs(secs);
    }
    if let Some(v) = opt(x, "deadline") {
        let at = timestamp(v, "execution.deadline")?;
        if at <= ctx.now_ms {
            return fail("execution.deadline", "is in the past");
        }
        e.deadline_ms = Some(at);
    }
    if let Some(v) = opt(x, "priority") {
        e.priority = integer(v, "execution.priority", 1, 10)? as u8;
    }
    if let Some(v) = opt(x, "cancellable") {
        e.cancellable = v.as_bool().map_or_else(
            || fail("execution.cancellable", "must be true or false"),
            Ok,
        )?;
    }
    Ok(e)
}

fn string_map(
    v: &Value,
    field: &str,
    max_entries: usize,
    max_value: usize,
    check_key: bool,
) -> Result<()> {
    let m = object(v, field)?;
    if m.len() > max_entries {
        return fail(field, format!("at most {max_entries} entries"));
    }
    for (k, v) in m {
        let path = join(field, k);
        if check_key
            && (k.is_empty()
                || k.len() > 63
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b)))
        {
            return fail(path, "keys must be 1-63 characters of A-Z a-z 0-9 . _ / -");
        }
        string(v, &path, max_value)?;
    }
    Ok(())
}

fn metadata(obj: &Map<String, Value>) -> Result<()> {
    let Some(v) = opt(obj, "metadata") else {
        return Ok(());
    };
    let m = object(v, "metadata")?;
    only(
        m,
        "metadata",
        &["name", "namespace", "labels", "annotations"],
    )?;
    if let Some(v) = opt(m, "name") {
        string(v, "metadata.name", 253)?;
    }
    if let Some(v) = opt(m, "namespace") {
        let ns = string(v, "metadata.namespace", 63)?;
        if !ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return fail("metadata.namespace", "must be a-z 0-9 -");
        }
    }
    if let Some(v) = opt(m, "labels") {
        string_map(v, "metadata.labels", 64, 256, true)?;
    }
    if let Some(v) = opt(m, "annotations") {
        string_map(v, "metadata.annotations", 64, 4096, false)?;
    }
    Ok(())
}

const FORMATS: &[&str] = &["raw", "qcow2", "vmdk", "vdi", "vhdx", "vhd", "vpc"];
const ALGORITHMS: &[(&str, usize)] = &[
    ("sha256", 64),
    ("sha512", 128),
    ("sha1", 40),
    ("md5", 32),
    ("blake3", 64),
];
const MAX_IMAGES: usize = 16;

fn image(v: &Value, field: &str) -> Result<ImageRef> {
    let path_ok = |p: &str, field: &str| -> Result<String> {
        if p.is_empty() || p.len() > 4096 || p.contains('\0') {
            return fail(field, "must be a path of 1-4096 bytes");
        }
        Ok(p.to_string())
    };
    if let Some(p) = v.as_str() {
        return Ok(ImageRef {
            path: path_ok(p, field)?,
            format: None,
            checksum: None,
            size_bytes: None,
        });
    }
    let o = object(v, field)?;
    only(
        o,
        field,
        &["path", "format", "checksum", "size_bytes", "read_only"],
    )?;
    let Some(p) = o.get("path") else {
        return fail(join(field, "path"), "is required");
    };
    let path = path_ok(string(p, &join(field, "path"), 4096)?, &join(field, "path"))?;
    let format = match opt(o, "format") {
        Some(v) => {
            let f = string(v, &join(field, "format"), 16)?;
            if !FORMATS.contains(&f) {
                return fail(
                    join(field, "format"),
                    format!("must be one of {}", FORMATS.join(", ")),
                );
            }
            Some(f.to_string())
        }
        None => None,
    };
    let checksum = match opt(o, "checksum") {
        Some(v) => {
            let cf = join(field, "checksum");
            let s = string(v, &cf, 256)?;
            let Some((algo, hex)) = s.split_once(':') else {
                return fail(cf, "must be ALGORITHM:HEX, e.g. sha256:e3b0c442...");
            };
            let Some((_, len)) = ALGORITHMS.iter().find(|(a, _)| *a == algo) else {
                return fail(cf, "algorithm must be sha256, sha512, sha1, md5 or blake3");
            };
            if hex.len() != *len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return fail(cf, format!("a {algo} digest is {len} hex digits"));
            }
            Some(Checksum {
                algorithm: algo.to_string(),
                hex: hex.to_ascii_lowercase(),
            })
        }
        None => None,
    };
    let size_bytes = match opt(o, "size_bytes") {
        Some(v) => Some(integer(v, &join(field, "size_bytes"), 0, u64::MAX)?),
        None => None,
    };
    if let Some(v) = opt(o, "read_only")
        && v.as_bool() != Some(true)
    {
        return fail(
            join(field, "read_only"),
            "images are always granted read-only; only true is accepted",
        );
    }
    Ok(ImageRef {
        path,
        format,
        checksum,
        size_bytes,
    })
}

fn images(obj: &Map<String, Value>, into: &mut Vec<ImageRef>) -> Result<()> {
    let Some(v) = opt(obj, "images") else {
        return Ok(());
    };
    let Some(list) = v.as_array() else {
        return fail("images", "must be an array");
    };
    for (i, item) in list.iter().enumerate() {
        into.push(image(item, &format!("images[{i}]"))?);
    }
    Ok(())
}

fn check_images(images: &[ImageRef]) -> Result<()> {
    if images.len() > MAX_IMAGES {
        return fail("images", format!("at most {MAX_IMAGES} images"));
    }
    for (i, image) in images.iter().enumerate() {
        if images[..i].iter().any(|other| other.path == image.path) {
            return fail(
                format!("images[{i}]"),
                format!("{} is granted twice", image.path),
            );
        }
    }
    Ok(())
}

/// Compares `MAJOR.MINOR.PATCH` versions.
fn version(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = s.split('.');
    let v = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    parts.next().is_none().then_some(v)
}

fn strings<'a>(v: &'a Value, field: &str) -> Result<Vec<&'a str>> {
    let Some(list) = v.as_array() else {
        return fail(field, "must be an array of strings");
    };
    if list.len() > 64 {
        return fail(field, "at most 64 entries");
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| string(v, &format!("{field}[{i}]"), 128))
        .collect()
}

fn constraints(obj: &Map<String, Value>, ctx: &Context) -> Result<Option<u64>> {
    let Some(v) = opt(obj, "constraints") else {
        return Ok(None);
    };
    let c = object(v, "constraints")?;
    only(
        c,
        "constraints",
        &[
            "required_capabilities",
            "required_features",
            "minimum_worker_version",
            "maximum_disk_size_gb",
            "require_privileged",
            "allowed_worker_pools",
        ],
    )?;
    for (key, have, what) in [
        (
            "required_capabilities",
            &ctx.capabilities,
            "this worker does not have capability",
        ),
        (
            "required_features",
            &ctx.features,
            "this worker does not have feature",
        ),
    ] {
        if let Some(v) = opt(c, key) {
            let field = format!("constraints.{key}");
            for (i, want) in strings(v, &field)?.into_iter().enumerate() {
                if !have.iter().any(|h| h == want) {
                    return fail(format!("{field}[{i}]"), format!("{what} {want:?}"));
                }
            }
        }
    }
    if let Some(v) = opt(c, "minimum_worker_version") {
        let field = "constraints.minimum_worker_version";
        let want = version(string(v, field, 64)?)
            .map_or_else(|| fail(field, "must be MAJOR.MINOR.PATCH"), Ok)?;
        let have = version(&ctx.worker_version).unwrap_or((0, 0, 0));
        if want > have {
            return fail(
                field,
                format!("this worker is version {}", ctx.worker_version),
            );
        }
    }
    let mut max_disk = None;
    if let Some(v) = opt(c, "maximum_disk_size_gb") {
        let gb = integer(v, "constraints.maximum_disk_size_gb", 1, 1 << 30)?;
        max_disk = Some(gb << 30);
    }
    if let Some(v) = opt(c, "require_privileged") {
        match v.as_bool() {
            Some(false) => {}
            Some(true) => {
                return fail(
                    "constraints.require_privileged",
                    "this worker never runs privileged jobs: handlers are sandboxed and images read in userspace",
                );
            }
            None => return fail("constraints.require_privileged", "must be true or false"),
        }
    }
    if let Some(v) = opt(c, "allowed_worker_pools") {
        let field = "constraints.allowed_worker_pools";
        if !strings(v, field)?.contains(&ctx.worker_pool.as_str()) {
            return fail(
                field,
                format!("this worker's pool is {:?}", ctx.worker_pool),
            );
        }
    }
    Ok(max_disk)
}

fn routing(obj: &Map<String, Value>, ctx: &Context) -> Result<()> {
    let Some(v) = opt(obj, "routing") else {
        return Ok(());
    };
    let r = object(v, "routing")?;
    only(
        r,
        "routing",
        &["worker_id", "worker_pool", "affinity", "anti_affinity"],
    )?;
    if opt(r, "worker_id").is_some() {
        return fail(
            "routing.worker_id",
            "pinning to one worker is not supported; jobs go to any worker of the pool",
        );
    }
    if let Some(v) = opt(r, "worker_pool") {
        let pool = string(v, "routing.worker_pool", 128)?;
        if pool != ctx.worker_pool {
            return fail(
                "routing.worker_pool",
                format!("this worker's pool is {:?}", ctx.worker_pool),
            );
        }
    }
    for key in ["affinity", "anti_affinity"] {
        if let Some(v) = opt(r, key)
            && !object(v, &format!("routing.{key}"))?.is_empty()
        {
            return fail(format!("routing.{key}"), "is not supported; leave it empty");
        }
    }
    Ok(())
}

fn token_map(obj: &Map<String, Value>, key: &str, fields: &[&str], max: usize) -> Result<()> {
    let Some(v) = opt(obj, key) else {
        return Ok(());
    };
    let m = object(v, key)?;
    only(m, key, fields)?;
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        let field = join(key, k);
        if k == "authorization" {
            let a = object(v, &field)?;
            only(a, &field, &["method", "subject"])?;
            for (ak, av) in a {
                if !av.is_null() {
                    string(av, &join(&field, ak), 256)?;
                }
            }
            continue;
        }
        let s = string(v, &field, max)?;
        if key == "observability"
            && !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return fail(field, "must be A-Z a-z 0-9 . _ : -");
        }
    }
    Ok(())
}

fn validate_v1(obj: Map<String, Value>, ctx: &Context) -> Result<JobSpec> {
    only(
        &obj,
        "",
        &[
            "$schema",
            "version",
            "job_id",
            "created_at",
            "kind",
            "operation",
            "metadata",
            "execution",
            "constraints",
            "routing",
            "payload",
            "images",
            "observability",
            "audit",
        ],
    )?;
    if obj.get("version").and_then(Value::as_str) != Some("1.0") {
        return fail("version", "only Job Protocol version \"1.0\" is supported");
    }
    if let Some(v) = opt(&obj, "$schema")
        && v.as_str() != Some("https://guestkit.dev/schemas/job-v1.json")
    {
        return fail(
            "$schema",
            "must be https://guestkit.dev/schemas/job-v1.json",
        );
    }
    if let Some(v) = opt(&obj, "kind")
        && v.as_str() != Some("VMOperation")
    {
        return fail("kind", "only \"VMOperation\" is supported");
    }
    let job_id = job_id(&obj)?;
    let operation = operation(&obj)?;
    let created_at_ms = match opt(&obj, "created_at") {
        Some(v) => {
            let at = timestamp(v, "created_at")?;
            if at > ctx.now_ms + 5 * 60 * 1000 {
                return fail("created_at", "is more than 5 minutes in the future");
            }
            Some(at)
        }
        None => None,
    };
    metadata(&obj)?;
    let exec = execution(&obj, ctx)?;
    let max_disk_bytes = constraints(&obj, ctx)?;
    routing(&obj, ctx)?;
    token_map(
        &obj,
        "observability",
        &["trace_id", "span_id", "parent_span_id", "correlation_id"],
        128,
    )?;
    token_map(
        &obj,
        "audit",
        &["submitted_by", "submitted_from", "authorization"],
        256,
    )?;
    let Some(p) = obj.get("payload") else {
        return fail("payload", "is required");
    };
    let p = object(p, "payload")?;
    only(p, "payload", &["type", "data"])?;
    if let Some(v) = opt(p, "type") {
        let t = string(v, "payload.type", 128)?;
        let want = format!("{operation}.v1");
        if t != want {
            return fail(
                "payload.type",
                format!("must be {want:?} for this operation"),
            );
        }
    }
    let data = p.get("data").cloned().unwrap_or(Value::Null);
    let mut grants = Vec::new();
    images(&obj, &mut grants)?;
    if let Some(img) = data.get("image").filter(|v| !v.is_null()) {
        grants.push(image(img, "payload.data.image")?);
    }
    check_images(&grants)?;
    let mut document = Value::Object(obj);
    fill_execution(&mut document, &exec);
    Ok(JobSpec {
        form: Form::V1,
        job_id,
        operation,
        payload: data,
        images: grants,
        priority: exec.priority,
        max_attempts: exec.max_attempts,
        timeout: exec.timeout,
        deadline_ms: exec.deadline_ms,
        idempotency_key: exec.idempotency_key,
        cancellable: exec.cancellable,
        max_disk_bytes,
        created_at_ms,
        document,
    })
}

fn validate_short(obj: Map<String, Value>, ctx: &Context) -> Result<JobSpec> {
    only(
        &obj,
        "",
        &[
            "operation",
            "payload",
            "images",
            "job_id",
            "execution",
            "metadata",
        ],
    )?;
    let job_id = job_id(&obj)?;
    let operation = operation(&obj)?;
    metadata(&obj)?;
    let exec = execution(&obj, ctx)?;
    let mut grants = Vec::new();
    images(&obj, &mut grants)?;
    check_images(&grants)?;
    let payload = obj.get("payload").cloned().unwrap_or(Value::Null);
    let mut document = Value::Object(obj);
    fill_execution(&mut document, &exec);
    Ok(JobSpec {
        form: Form::Short,
        job_id,
        operation,
        payload,
        images: grants,
        priority: exec.priority,
        max_attempts: exec.max_attempts,
        timeout: exec.timeout,
        deadline_ms: exec.deadline_ms,
        idempotency_key: exec.idempotency_key,
        cancellable: exec.cancellable,
        max_disk_bytes: None,
        created_at_ms: None,
        document,
    })
}

/// Writes the effective execution policy into the stored document.
fn fill_execution(document: &mut Value, e: &Execution) {
    document["execution"] = json!({
        "idempotency_key": e.idempotency_key,
        "max_attempts": e.max_attempts,
        "timeout_seconds": e.timeout.as_secs(),
        "deadline": e.deadline_ms.map(rfc3339),
        "priority": e.priority,
        "cancellable": e.cancellable,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            now_ms: 1_780_000_000_000,
            capabilities: vec!["echo".into(), "disk.qcow2".into()],
            features: vec!["lvm".into()],
            ..Context::default()
        }
    }

    fn full() -> Value {
        json!({
            "$schema": "https://guestkit.dev/schemas/job-v1.json",
            "version": "1.0",
            "job_id": "job-550e8400",
            "created_at": "2026-01-30T10:00:00Z",
            "kind": "VMOperation",
            "operation": "echo",
            "metadata": {"name": "n", "namespace": "prod", "labels": {"team": "platform"},
                         "annotations": {"ticket": "INC-1"}},
            "execution": {"idempotency_key": "k", "attempt": 1, "max_attempts": 3,
                          "timeout_seconds": 7200, "deadline": "2030-01-30T14:00:00Z",
                          "priority": 7, "cancellable": false},
            "constraints": {"required_capabilities": ["echo", "disk.qcow2"],
                            "required_features": ["lvm"], "minimum_worker_version": "0.1.0",
                            "maximum_disk_size_gb": 2, "require_privileged": false,
                            "allowed_worker_pools": ["default", "other"]},
            "routing": {"worker_id": null, "worker_pool": "default", "affinity": {},
                        "anti_affinity": {}},
            "payload": {"type": "echo.v1", "data": {"x": 1, "image": {
                "path": "vm.qcow2", "format": "qcow2",
                "checksum": "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "size_bytes": 42, "read_only": true}}},
            "images": ["other.img"],
            "observability": {"trace_id": "4bf92f35", "span_id": "1", "parent_span_id": null,
                              "correlation_id": "weekly-1"},
            "audit": {"submitted_by": "svc", "submitted_from": "10.0.0.1",
                      "authorization": {"method": "bearer_token", "subject": "sa"}}
        })
    }

    #[test]
    fn a_full_v1_document_is_carried_into_the_spec() {
        let spec = validate(full(), &ctx()).unwrap();
        assert_eq!(spec.form, Form::V1);
        assert_eq!(spec.job_id.as_deref(), Some("job-550e8400"));
        assert_eq!(spec.operation, "echo");
        assert_eq!(spec.priority, 7);
        assert_eq!(spec.max_attempts, 3);
        assert_eq!(spec.timeout, Duration::from_secs(7200));
        assert_eq!(spec.deadline_ms, Some(1_896_012_000_000));
        assert_eq!(spec.idempotency_key.as_deref(), Some("k"));
        assert!(!spec.cancellable);
        assert_eq!(spec.max_disk_bytes, Some(2 << 30));
        assert_eq!(spec.created_at_ms, Some(1_769_767_200_000));
        assert_eq!(spec.payload["x"], 1);
        assert_eq!(spec.images.len(), 2);
        assert_eq!(spec.images[0].path, "other.img");
        let image = &spec.images[1];
        assert_eq!(image.format.as_deref(), Some("qcow2"));
        assert_eq!(image.size_bytes, Some(42));
        let sum = image.checksum.as_ref().unwrap();
        assert_eq!(sum.algorithm, "sha256");
        assert!(sum.hex.starts_with("e3b0c442"));
        assert_eq!(spec.document["execution"]["priority"], 7);
    }

    #[test]
    fn the_short_form_and_its_defaults() {
        let spec = validate(json!({"operation": "echo"}), &ctx()).unwrap();
        assert_eq!(spec.form, Form::Short);
        assert_eq!(spec.payload, Value::Null);
        assert_eq!((spec.priority, spec.max_attempts), (5, 1));
        assert!(spec.cancellable);
        assert_eq!(spec.timeout, ctx().default_timeout);
        let spec = validate(
            json!({"operation": "echo", "payload": [1, 2], "images": ["a.img",
                   {"path": "b.qcow2", "format": "qcow2"}], "job_id": "j1",
                   "execution": {"priority": 10}}),
            &ctx(),
        )
        .unwrap();
        assert_eq!(spec.payload, json!([1, 2]));
        assert_eq!(spec.images.len(), 2);
        assert_eq!(spec.priority, 10);
    }

    #[test]
    fn each_refusal_names_its_field() {
        let with = |path: &[&str], value: Value| {
            let mut doc = full();
            let mut at = &mut doc;
            for key in &path[..path.len() - 1] {
                at = &mut at[*key];
            }
            at[path[path.len() - 1]] = value;
            doc
        };
        let cases: Vec<(Value, &str)> = vec![
            (with(&["bogus"], json!(1)), "bogus"),
            (with(&["execution", "bogus"], json!(1)), "execution.bogus"),
            (
                with(&["payload", "data", "image", "bogus"], json!(1)),
                "payload.data.image.bogus",
            ),
            (
                with(&["execution", "priority"], json!(0)),
                "execution.priority",
            ),
            (
                with(&["execution", "priority"], json!(11)),
                "execution.priority",
            ),
            (
                with(&["execution", "priority"], json!("5")),
                "execution.priority",
            ),
            (
                with(&["execution", "priority"], json!(5.5)),
                "execution.priority",
            ),
            (
                with(&["execution", "attempt"], json!(2)),
                "execution.attempt",
            ),
            (
                with(&["execution", "max_attempts"], json!(11)),
                "execution.max_attempts",
            ),
            (
                with(&["execution", "timeout_seconds"], json!(0)),
                "execution.timeout_seconds",
            ),
            (
                with(&["execution", "deadline"], json!("2020-01-01T00:00:00Z")),
                "execution.deadline",
            ),
            (
                with(&["execution", "deadline"], json!("tomorrow")),
                "execution.deadline",
            ),
            (with(&["job_id"], json!("../x")), "job_id"),
            (with(&["job_id"], json!("a/b")), "job_id"),
            (with(&["job_id"], json!("")), "job_id"),
            (with(&["job_id"], json!("a".repeat(129))), "job_id"),
            (
                with(&["created_at"], json!("2031-01-01T00:00:00Z")),
                "created_at",
            ),
            (with(&["kind"], json!("Other")), "kind"),
            (with(&["version"], json!("2.0")), "version"),
            (with(&["operation"], json!("Bad Op")), "operation"),
            (
                with(&["constraints", "require_privileged"], json!(true)),
                "constraints.require_privileged",
            ),
            (
                with(
                    &["constraints", "required_capabilities"],
                    json!(["echo", "x"]),
                ),
                "constraints.required_capabilities[1]",
            ),
            (
                with(&["constraints", "required_features"], json!(["selinux"])),
                "constraints.required_features[0]",
            ),
            (
                with(&["constraints", "minimum_worker_version"], json!("99.0.0")),
                "constraints.minimum_worker_version",
            ),
            (
                with(&["constraints", "allowed_worker_pools"], json!(["gpu"])),
                "constraints.allowed_worker_pools",
            ),
            (
                with(&["routing", "worker_id"], json!("w1")),
                "routing.worker_id",
            ),
            (
                with(&["routing", "worker_pool"], json!("gpu")),
                "routing.worker_pool",
            ),
            (
                with(&["routing", "affinity"], json!({"a": 1})),
                "routing.affinity",
            ),
            (
                with(
                    &["payload", "data", "image", "checksum"],
                    json!("sha256:abc"),
                ),
                "payload.data.image.checksum",
            ),
            (
                with(
                    &["payload", "data", "image", "checksum"],
                    json!("crc32:00000000"),
                ),
                "payload.data.image.checksum",
            ),
            (
                with(&["payload", "data", "image", "read_only"], json!(false)),
                "payload.data.image.read_only",
            ),
            (
                with(&["payload", "data", "image", "format"], json!("iso")),
                "payload.data.image.format",
            ),
            (with(&["images"], json!(["vm.qcow2"])), "images[1]"),
            (
                with(&["payload", "type"], json!("inspect.v1")),
                "payload.type",
            ),
            (
                with(&["observability", "trace_id"], json!("a b")),
                "observability.trace_id",
            ),
            (with(&["audit", "who"], json!("x")), "audit.who"),
            (
                with(&["metadata", "labels"], {
                    let m: Map<String, Value> =
                        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
                    Value::Object(m)
                }),
                "metadata.labels",
            ),
            (
                with(&["metadata", "labels", "bad key"], json!("v")),
                "metadata.labels.bad key",
            ),
            (
                with(&["metadata", "labels", "n"], json!(1)),
                "metadata.labels.n",
            ),
            (json!([1]), "body"),
            (json!({"payload": 1}), "operation"),
            (json!({"operation": "echo", "extra": 1}), "extra"),
            (json!({"operation": "echo", "images": "a.img"}), "images"),
            (json!({"operation": "echo", "images": [""]}), "images[0]"),
        ];
        for (doc, field) in cases {
            let err = validate(doc.clone(), &ctx()).expect_err(&doc.to_string());
            assert_eq!(err.field, field, "{doc}: {err}");
        }
        assert_eq!(parse(b"{oops", &ctx()).unwrap_err().field, "body");
    }

    #[test]
    fn timestamps_with_offsets() {
        let a = timestamp(&json!("2026-01-30T12:00:00+02:00"), "t").unwrap();
        let b = timestamp(&json!("2026-01-30T10:00:00Z"), "t").unwrap();
        assert_eq!(a, b);
        assert!(timestamp(&json!("2026-01-30T10:00:00"), "t").is_err());
    }
}
