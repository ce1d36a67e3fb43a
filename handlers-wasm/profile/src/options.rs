//! The payload: `{"profiles": [...], "min_severity": "...", "images": [...]}`, every field
//! optional. Anything else, or a value out of range, is refused with a message naming the field.

use crate::report::{Profile, Severity};
use serde_json::{Map, Value};

/// JSON Schema of the payload, as published by `describe`.
pub const PAYLOAD_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": ["object", "null"],
  "additionalProperties": false,
  "properties": {
    "profiles": {"type": "array", "minItems": 1, "items": {"enum": ["ssh", "accounts", "filesystem", "network", "mac", "services", "kernel"]}},
    "min_severity": {"enum": ["low", "medium", "high", "critical"]},
    "images": {"type": "array", "minItems": 1, "items": {"type": "string"}}
  }
}"#;

/// What the payload asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Profiles to run, in catalogue order, without repeats.
    pub profiles: Vec<Profile>,
    /// Findings below this severity are left out.
    pub min_severity: Severity,
    /// Images to profile, in the job's order.
    pub images: Vec<String>,
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|&x| name(x)).collect::<Vec<_>>().join(", ")
}

fn strings<'v>(value: &'v Value, field: &str) -> Result<Vec<&'v str>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("payload.{field}: expected an array of strings"))?;
    if items.is_empty() {
        return Err(format!("payload.{field}: must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .ok_or_else(|| format!("payload.{field}[{i}]: expected a string"))
        })
        .collect()
}

/// Parses the job's payload against the images the job grants.
pub fn parse(payload: &str, granted: &[String]) -> Result<Options, String> {
    let value: Value =
        serde_json::from_str(payload).map_err(|e| format!("payload: not valid JSON: {e}"))?;
    let empty = Map::new();
    let object = match &value {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => return Err("payload: expected an object or null".into()),
    };
    let mut options = Options {
        profiles: Profile::ALL.to_vec(),
        min_severity: Severity::Low,
        images: granted.to_vec(),
    };
    for (key, value) in object {
        match key.as_str() {
            "profiles" => {
                let mut wanted = Vec::new();
                for (i, name) in strings(value, "profiles")?.into_iter().enumerate() {
                    let profile = Profile::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .ok_or_else(|| {
                            format!(
                                "payload.profiles[{i}]: unknown profile {name:?}; expected one of {}",
                                names(&Profile::ALL, Profile::name)
                            )
                        })?;
                    wanted.push(profile);
                }
                options.profiles = Profile::ALL
                    .into_iter()
                    .filter(|p| wanted.contains(p))
                    .collect();
            }
            "min_severity" => {
                let bad = || {
                    format!(
                        "payload.min_severity: expected one of {}",
                        names(&Severity::ALL, Severity::name)
                    )
                };
                let name = value.as_str().ok_or_else(bad)?;
                options.min_severity = Severity::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .ok_or_else(bad)?;
            }
            "images" => {
                let names = strings(value, "images")?;
                for (i, name) in names.iter().enumerate() {
                    if !granted.iter().any(|g| g == name) {
                        return Err(format!(
                            "payload.images[{i}]: {name:?} is not an image this job grants"
                        ));
                    }
                }
                options.images = granted
                    .iter()
                    .filter(|g| names.contains(&g.as_str()))
                    .cloned()
                    .collect();
            }
            other => {
                return Err(format!(
                    "payload.{other}: unknown field; expected profiles, min_severity or images"
                ));
            }
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted() -> Vec<String> {
        vec!["a.img".into(), "b.qcow2".into()]
    }

    #[test]
    fn defaults_and_filters() {
        let all = parse("null", &granted()).unwrap();
        assert_eq!(all.profiles, Profile::ALL);
        assert_eq!(all.min_severity, Severity::Low);
        assert_eq!(all.images, granted());
        assert_eq!(parse("{}", &granted()).unwrap(), all);
        let some = parse(
            r#"{"profiles":["kernel","ssh","ssh"],"min_severity":"high","images":["b.qcow2"]}"#,
            &granted(),
        )
        .unwrap();
        assert_eq!(some.profiles, [Profile::Ssh, Profile::Kernel]);
        assert_eq!(some.min_severity, Severity::High);
        assert_eq!(some.images, ["b.qcow2"]);
    }

    #[test]
    fn errors_name_the_field() {
        for (payload, field) in [
            (r#"{"profile":["ssh"]}"#, "payload.profile:"),
            (r#"{"profiles":["ssh","nope"]}"#, "payload.profiles[1]:"),
            (r#"{"profiles":[]}"#, "payload.profiles:"),
            (r#"{"profiles":"ssh"}"#, "payload.profiles:"),
            (r#"{"min_severity":"extreme"}"#, "payload.min_severity:"),
            (r#"{"min_severity":3}"#, "payload.min_severity:"),
            (r#"{"images":["c.img"]}"#, "payload.images[0]:"),
            (r#"[1]"#, "payload:"),
            (r#"{"#, "payload:"),
        ] {
            let e = parse(payload, &granted()).unwrap_err();
            assert!(e.starts_with(field), "{payload}: {e}");
        }
    }
}
