//! Request bodies to JSON values, refusing duplicate keys.
//!
//! `serde_json::from_slice::<Value>` keeps the last of two equal keys. A proxy or client
//! library that keeps the first would then read a different document than the worker runs
//! (`{"priority": 1, "priority": 10}`), so a body with duplicate keys is refused instead.
//! serde_json has no switch for that, hence this small visitor.

use crate::error::{Result, ValidationError, field_path};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses a request body as one JSON value, refusing duplicate object keys.
///
/// A body that is not JSON (or has trailing data) is refused with field `body`; a duplicate
/// key with the key's path (`execution.priority`). Both are malformed requests (HTTP 400),
/// unlike the refusals of [`validate`](crate::validate) (HTTP 422).
pub fn parse_json(body: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let Strict(value) = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.classify() == Category::Data {
            // Our own refusal (a duplicate key); serde_json appends the position.
            let message = inner.to_string();
            let message = match message.rfind(" at line ") {
                Some(at) if inner.line() > 0 => message[..at].to_string(),
                _ => message,
            };
            ValidationError::new(field_path("", e.path()), message)
        } else {
            not_json(inner)
        }
    })?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

fn not_json(e: &serde_json::Error) -> ValidationError {
    ValidationError::new("body", format!("not valid JSON: {e}"))
}

/// A JSON value whose objects have no duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this is always a number.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                // Fail while reading the value, so that the error's path ends in the key.
                map.next_value_seed(Duplicate)?;
                return Err(de::Error::custom("duplicate key"));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Refuses the value of a key seen before.
struct Duplicate;

impl<'de> DeserializeSeed<'de> for Duplicate {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> std::result::Result<(), D::Error> {
        Err(de::Error::custom("duplicate key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json() {
        let body = br#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        assert_eq!(
            parse_json(body).unwrap(),
            serde_json::from_slice::<Value>(body).unwrap()
        );
    }

    #[test]
    fn refuses_duplicate_keys_by_path() {
        let e = parse_json(br#"{"execution": {"priority": 1, "priority": 10}}"#).unwrap_err();
        assert_eq!(e.field, "execution.priority");
        assert_eq!(e.message, "duplicate key");
        let e = parse_json(br#"{"a": 1, "a": 1}"#).unwrap_err();
        assert_eq!(e.field, "a");
        let e = parse_json(br#"{"images": [{"path": "a", "path": "b"}]}"#).unwrap_err();
        assert_eq!(e.field, "images[0].path");
    }

    #[test]
    fn refuses_non_json_as_body() {
        for body in [&b""[..], b"{", b"nope", b"{} {}", b"{\"a\": 1,}", b"\xff"] {
            let e = parse_json(body).unwrap_err();
            assert_eq!(e.field, "body", "{body:?}");
            assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let body = "[".repeat(100_000);
        assert_eq!(parse_json(body.as_bytes()).unwrap_err().field, "body");
    }
}
