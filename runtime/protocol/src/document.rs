//! The accepted shapes of the two document forms, as serde sees them.
//!
//! Every struct refuses unknown fields, and nested ones are read only from JSON objects
//! (see [`object`]). Fields are `Option`s (JSON `null` counts as absent), so that required
//! values and ranges are checked afterwards with messages that say what is wanted, rather
//! than serde's "missing field".

use crate::{Audit, Metadata, Observability};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;

/// A Job Protocol v1.0 document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a job document object")]
pub(crate) struct V1Document {
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    pub version: Option<String>,
    pub job_id: Option<String>,
    pub created_at: Option<String>,
    pub kind: Option<String>,
    pub operation: Option<String>,
    #[serde(default, deserialize_with = "object")]
    pub metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "object")]
    pub execution: Option<Execution>,
    #[serde(default, deserialize_with = "object")]
    pub constraints: Option<Constraints>,
    #[serde(default, deserialize_with = "object")]
    pub routing: Option<Routing>,
    #[serde(default, deserialize_with = "object")]
    pub payload: Option<Payload>,
    /// Entries are strings or objects; checked one by one so that each error has its index.
    pub images: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "object")]
    pub observability: Option<Observability>,
    #[serde(default, deserialize_with = "object")]
    pub audit: Option<Audit>,
}

/// A short-form document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a job document object")]
pub(crate) struct ShortDocument {
    pub operation: Option<String>,
    pub payload: Option<Value>,
    pub images: Option<Vec<Value>>,
    pub job_id: Option<String>,
    #[serde(default, deserialize_with = "object")]
    pub execution: Option<Execution>,
    #[serde(default, deserialize_with = "object")]
    pub metadata: Option<Metadata>,
}

/// `execution`. Integers are read as `u64` and range-checked afterwards.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub(crate) struct Execution {
    pub idempotency_key: Option<String>,
    pub attempt: Option<u64>,
    pub max_attempts: Option<u64>,
    pub timeout_seconds: Option<u64>,
    pub deadline: Option<String>,
    pub priority: Option<u64>,
    pub cancellable: Option<bool>,
}

/// `constraints` (v1.0).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub(crate) struct Constraints {
    pub required_capabilities: Option<Vec<String>>,
    pub required_features: Option<Vec<String>>,
    pub minimum_worker_version: Option<String>,
    pub maximum_disk_size_gb: Option<u64>,
    pub require_privileged: Option<bool>,
    pub allowed_worker_pools: Option<Vec<String>>,
}

/// `routing` (v1.0).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub(crate) struct Routing {
    pub worker_id: Option<String>,
    pub worker_pool: Option<String>,
    pub affinity: Option<Map<String, Value>>,
    pub anti_affinity: Option<Map<String, Value>>,
}

/// `payload` (v1.0): the handler input is `data`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "an object {type, data}")]
pub(crate) struct Payload {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub data: Option<Value>,
}

/// Reads `null` as the type's default, like an absent field.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads an optional struct only from a JSON object (or `null`). serde's derived structs also
/// accept an array of their fields in declaration order (`"execution": ["key", 1, 3]`), which
/// would let a document leave out the field names this protocol is checked by.
pub(crate) fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_unit<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
            // The map access is the caller's (path-tracking) one, so error paths go on.
            T::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }

    deserializer.deserialize_any(ObjectVisitor(PhantomData))
}
