//! The one error type, and the bridge from serde's errors to it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serde_path_to_error::Segment;

/// A refused document: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field (`execution.priority`, `images[1].path`,
    /// `metadata.labels.team`), or `body` for the document as a whole.
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl ValidationError {
    /// A refusal of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP API's error body:
    /// `{"error": {"code": "invalid_field", "field": ..., "message": ...}}`.
    pub fn to_response_body(&self) -> Value {
        json!({
            "error": {
                "code": "invalid_field",
                "field": self.field,
                "message": self.message,
            }
        })
    }
}

pub(crate) type Result<T> = std::result::Result<T, ValidationError>;

pub(crate) fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(ValidationError::new(field, message))
}

/// `prefix.key`, or `key` at the top level.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The field path of a serde error, under `prefix`.
pub(crate) fn field_path(prefix: &str, path: &serde_path_to_error::Path) -> String {
    let mut field = prefix.to_string();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => field = join(&field, key),
            Segment::Unknown => field = join(&field, "?"),
        }
    }
    if field.is_empty() {
        "body".to_string()
    } else {
        field
    }
}

/// Deserializes `value` as `T` (a `deny_unknown_fields` shape), naming the failing field by
/// its path under `prefix` (empty for the whole document).
pub(crate) fn deserialize_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T> {
    // Derived structs would also take an array of their fields in order; refuse that here.
    if !value.is_object() {
        let field = if prefix.is_empty() { "body" } else { prefix };
        return fail(field, "must be an object");
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        ValidationError::new(field_path(prefix, e.path()), tidy(&e.inner().to_string()))
    })
}

/// Rewords serde's messages for API clients: the unknown key is already in the field path,
/// and Rust integer type names mean nothing to them.
fn tidy(message: &str) -> String {
    if message.starts_with("unknown field") {
        return "unknown field".to_string();
    }
    let mut message = message.to_string();
    for rust_type in ["u8", "u16", "u32", "u64"] {
        let expected = format!("expected {rust_type}");
        if message.ends_with(&expected) {
            let keep = message.len() - rust_type.len();
            message.truncate(keep);
            message.push_str("a non-negative integer");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_rewords_serde_messages() {
        assert_eq!(
            tidy("unknown field `x`, expected `a` or `b`"),
            "unknown field"
        );
        assert_eq!(
            tidy("invalid type: string \"5\", expected u64"),
            "invalid type: string \"5\", expected a non-negative integer"
        );
        assert_eq!(
            tidy("invalid type: map, expected a string"),
            "invalid type: map, expected a string"
        );
    }

    #[test]
    fn response_body_shape() {
        let e = ValidationError::new("execution.priority", "must be an integer from 1 to 10");
        assert_eq!(
            e.to_response_body(),
            json!({"error": {"code": "invalid_field", "field": "execution.priority",
                             "message": "must be an integer from 1 to 10"}})
        );
        assert_eq!(
            e.to_string(),
            "execution.priority: must be an integer from 1 to 10"
        );
    }
}
