//! Job documents, validated: a submitted JSON body becomes a [`JobSpec`] or a
//! [`ValidationError`] naming the offending field by its dotted path
//! (`execution.priority`, `metadata.labels.team`, `payload.data.image.checksum`, `body`).
//!
//! Two forms are accepted; a `version` key selects the first:
//!
//! - **Job Protocol v1.0** (the original guestkit worker's documents): `version: "1.0"`,
//!   `operation`, and optional `metadata`, `execution`, `constraints`, `routing`, `payload`
//!   (`{type, data}`; `data` is the handler input), `images`, `observability`, `audit`.
//! - **Short form**: `operation`, `payload` (the handler input itself), `images`, `job_id`,
//!   `execution`, `metadata`.
//!
//! Unknown fields are refused everywhere, and every accepted field is either enforced (carried
//! into the [`JobSpec`] for the worker to act on, or checked against this worker's [`Context`])
//! or refused; none is silently ignored. The structure is checked by serde
//! (`deny_unknown_fields`, with `serde_path_to_error` supplying the path), the values by
//! hand-written rules afterwards.
//!
//! ```
//! use guestkit_protocol::{Context, Form, parse};
//!
//! let spec = parse(br#"{"operation": "echo", "payload": {"hi": 1}}"#, &Context::default())?;
//! assert_eq!(spec.form, Form::Short);
//! assert_eq!(spec.priority, 5);
//!
//! let err = parse(br#"{"operation": "echo", "execution": {"priority": 11}}"#, &Context::default())
//!     .unwrap_err();
//! assert_eq!(err.field, "execution.priority");
//! # Ok::<(), guestkit_protocol::ValidationError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod document;
mod error;
mod image;
mod json;
mod rules;
mod validate;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::ValidationError;
pub use image::{Checksum, ImageRef, MAX_IMAGES};
pub use json::parse_json;
pub use rules::{is_valid_job_id, is_valid_operation};
pub use validate::validate;

/// The only `$schema` a v1.0 document may name.
pub const SCHEMA_V1: &str = "https://guestkit.dev/schemas/job-v1.json";

/// How far in the future a v1.0 document's `created_at` may lie (client clock skew), in
/// milliseconds.
pub const MAX_CREATED_AT_SKEW_MS: i64 = 5 * 60 * 1000;

/// What validation needs to know about this worker and the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Now, in unix milliseconds (deadlines must lie after it).
    pub now_ms: i64,
    /// This worker's version, `MAJOR.MINOR.PATCH` (checked against
    /// `constraints.minimum_worker_version`).
    pub worker_version: String,
    /// The worker pool this worker serves (`routing.worker_pool`,
    /// `constraints.allowed_worker_pools`).
    pub worker_pool: String,
    /// Capabilities jobs may require (`constraints.required_capabilities`).
    pub capabilities: Vec<String>,
    /// Features jobs may require (`constraints.required_features`).
    pub features: Vec<String>,
    /// Timeout of a job that names none.
    pub default_timeout: Duration,
    /// Longest timeout a job may ask for (`execution.timeout_seconds`).
    pub max_timeout: Duration,
    /// Most attempts a job may ask for (`execution.max_attempts`).
    pub max_attempts_cap: u32,
}

impl Default for Context {
    /// Now from the system clock, pool `default`, this crate's version, no capabilities or
    /// features, a 3600 s default and 86400 s maximum timeout, at most 10 attempts.
    fn default() -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Context {
            now_ms,
            worker_version: env!("CARGO_PKG_VERSION").to_string(),
            worker_pool: "default".to_string(),
            capabilities: Vec::new(),
            features: Vec::new(),
            default_timeout: Duration::from_secs(3600),
            max_timeout: Duration::from_secs(86_400),
            max_attempts_cap: 10,
        }
    }
}

/// Which form a document was submitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// A Job Protocol v1.0 document (it had a `version` key).
    V1,
    /// The short form: `operation`, `payload`, `images`, ...
    Short,
}

/// A validated job: everything the worker needs to queue and run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The form the document was submitted in.
    pub form: Form,
    /// The client's job id; `None` lets the server generate one.
    pub job_id: Option<String>,
    /// The operation to run (whether a handler serves it is the caller's check).
    pub operation: String,
    /// The handler input: the short form's `payload`, or a v1.0 document's `payload.data`.
    pub payload: Value,
    /// Images to grant the job, read-only, in document order (`images`, then a v1.0
    /// document's `payload.data.image`). Paths are not yet resolved against image roots.
    pub images: Vec<ImageRef>,
    /// Priority, 1 (least urgent) to 10 (most urgent).
    pub priority: u8,
    /// How many attempts the job may take.
    pub max_attempts: u32,
    /// Timeout of each attempt.
    pub timeout: Duration,
    /// Absolute deadline, unix milliseconds.
    pub deadline_ms: Option<i64>,
    /// Idempotency key: a resubmission with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// Whether a cancel request may stop the job.
    pub cancellable: bool,
    /// Largest image virtual size the job accepts, in bytes
    /// (`constraints.maximum_disk_size_gb` × 2^30); the executor enforces it.
    pub max_disk_bytes: Option<u64>,
    /// Name, namespace, labels and annotations.
    pub metadata: Metadata,
    /// Tracing and correlation ids.
    pub observability: Observability,
    /// The client's audit claims (v1.0 `audit`); the server keeps its own audit record.
    pub audit: Audit,
    /// When the client says it created the document (v1.0 `created_at`), unix milliseconds.
    pub created_at_ms: Option<i64>,
    /// The normalized document: the submitted form with every field at its effective value.
    /// It validates again to the same spec (while its deadline has not passed).
    pub document: Value,
}

/// A job's `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct Metadata {
    /// Human-readable name, at most 253 characters.
    pub name: Option<String>,
    /// Namespace, at most 63 characters of `a-z 0-9 -`.
    pub namespace: Option<String>,
    /// At most 64 labels; keys 1-63 characters of `A-Z a-z 0-9 . _ / -`, values at most 256
    /// characters.
    #[serde(default, deserialize_with = "document::null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// At most 64 annotations; keys as for labels, values at most 4096 characters.
    #[serde(default, deserialize_with = "document::null_as_default")]
    pub annotations: BTreeMap<String, String>,
}

/// A v1.0 document's `observability` ids: each at most 128 characters of
/// `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct Observability {
    /// Trace id.
    pub trace_id: Option<String>,
    /// Span id.
    pub span_id: Option<String>,
    /// Parent span id (`null` allowed).
    pub parent_span_id: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
}

/// A v1.0 document's `audit`: what the client claims about itself (strings of at most 256
/// characters). Claims only; the server records who really submitted the job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct Audit {
    /// Who submitted the job.
    pub submitted_by: Option<String>,
    /// Where it was submitted from.
    pub submitted_from: Option<String>,
    /// How the submitter says it was authorized.
    #[serde(default, deserialize_with = "document::object")]
    pub authorization: Option<Authorization>,
}

/// `audit.authorization`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct Authorization {
    /// Authorization method (for example `bearer`).
    pub method: Option<String>,
    /// Authorized subject.
    pub subject: Option<String>,
}

/// Parses a request body and validates it: [`parse_json`] then [`validate`].
///
/// A body that is not JSON is refused with field `body`. An HTTP layer that answers 400 for
/// malformed JSON and 422 for an invalid document calls the two steps itself.
pub fn parse(body: &[u8], ctx: &Context) -> Result<JobSpec, ValidationError> {
    validate(parse_json(body)?, ctx)
}
