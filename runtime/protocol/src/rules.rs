//! Rules for single values: ids, names, timestamps, versions.

use crate::error::{Result, fail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Whether `id` is an acceptable job id: 1-128 characters of `A-Z a-z 0-9 . _ -`, the first
/// a letter or digit. Such an id is never `.` or `..` and holds no path separator, so it is
/// safe in a path, a URL or a log line.
pub fn is_valid_job_id(id: &str) -> bool {
    id.len() <= 128
        && id.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `op` is an acceptable operation name: 1-64 characters of `a-z 0-9 . _ -`, the
/// first a letter or digit (the rule handlers' operation names follow).
pub fn is_valid_operation(op: &str) -> bool {
    let lower_or_digit = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    op.len() <= 64
        && op.as_bytes().first().is_some_and(lower_or_digit)
        && op
            .bytes()
            .all(|b| lower_or_digit(&b) || b"._-".contains(&b))
}

pub(crate) fn job_id(id: Option<String>) -> Result<Option<String>> {
    match id {
        Some(id) if !is_valid_job_id(&id) => fail(
            "job_id",
            "must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        ),
        id => Ok(id),
    }
}

pub(crate) fn operation(op: Option<String>) -> Result<String> {
    match op {
        None => fail("operation", "is required"),
        Some(op) if !is_valid_operation(&op) => fail(
            "operation",
            "must be 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit",
        ),
        Some(op) => Ok(op),
    }
}

/// Parses an RFC 3339 timestamp (`2026-01-30T10:00:00Z`, `2026-01-30T12:00:00.5+02:00`) into
/// unix milliseconds.
pub(crate) fn timestamp_ms(s: &str, field: &str) -> Result<i64> {
    let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) else {
        return fail(
            field,
            "must be an RFC 3339 timestamp such as 2026-01-30T10:00:00Z",
        );
    };
    // Years are 0000-9999 in RFC 3339, so the milliseconds fit an i64.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
        .or_else(|_| fail(field, "is out of range"))
}

/// Formats unix milliseconds as RFC 3339 in UTC (`None` only outside years 0000-9999).
pub(crate) fn format_ms(ms: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&Rfc3339).ok()
}

/// A `MAJOR.MINOR.PATCH` version.
pub(crate) type Version = (u64, u64, u64);

/// Parses exactly `MAJOR.MINOR.PATCH`. Written by hand: three integers compared as a tuple is
/// all the protocol asks for, and pre-releases are refused rather than ordered.
pub(crate) fn parse_version(s: &str) -> Option<Version> {
    let mut parts = s.split('.').map(|part| {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse::<u64>().ok()
    });
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// This worker's own version, ignoring a pre-release or build suffix (`0.2.0-dev` is 0.2.0).
pub(crate) fn worker_version(s: &str) -> Option<Version> {
    parse_version(s.split(['-', '+']).next().unwrap_or(s))
}

/// Label and annotation keys: 1-63 characters of `A-Z a-z 0-9 . _ / -`.
pub(crate) fn is_valid_label_key(key: &str) -> bool {
    (1..=63).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
}

/// Tracing ids: at most 128 characters of `A-Z a-z 0-9 . _ : -`.
pub(crate) fn is_valid_trace_token(s: &str) -> bool {
    s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Refuses a string of more than `max` characters.
pub(crate) fn max_chars(s: &str, max: usize, field: &str) -> Result<()> {
    if s.chars().count() > max {
        return fail(field, format!("must be at most {max} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        for ok in ["a", "job-550e8400.x_1", "0", &"a".repeat(128)] {
            assert!(is_valid_job_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "-a",
            "_a",
            "a b",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn operations() {
        for ok in ["echo", "inspect", "0x", "fs.list_dir-2", &"a".repeat(64)] {
            assert!(is_valid_operation(ok), "{ok}");
        }
        for bad in [
            "",
            "Echo",
            "eCho",
            ".x",
            "-x",
            "a b",
            "a/b",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_operation(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        let z = timestamp_ms("2026-01-30T10:00:00Z", "t").unwrap();
        assert_eq!(z, 1_769_767_200_000);
        assert_eq!(timestamp_ms("2026-01-30T12:00:00+02:00", "t").unwrap(), z);
        assert_eq!(
            timestamp_ms("2026-01-30T10:00:00.25Z", "t").unwrap(),
            z + 250
        );
        assert_eq!(timestamp_ms("1969-12-31T23:59:59.5Z", "t").unwrap(), -500);
        for bad in [
            "",
            "tomorrow",
            "2026-01-30T10:00:00",
            "2026-01-30",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(timestamp_ms(bad, "t").unwrap_err().field, "t", "{bad}");
        }
        assert_eq!(format_ms(z).as_deref(), Some("2026-01-30T10:00:00Z"));
        assert_eq!(
            format_ms(z + 250).as_deref(),
            Some("2026-01-30T10:00:00.25Z")
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("0.1.0"), Some((0, 1, 0)));
        assert_eq!(parse_version("10.20.30"), Some((10, 20, 30)));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "1..3",
            "+1.2.3",
            "1.2.3-rc1",
            " 1.2.3",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert_eq!(worker_version("0.2.0-dev+abc"), Some((0, 2, 0)));
    }
}
