//! Package databases: each reader turns a guest's database into [`Application`]s and warnings.

pub mod apk;
pub mod bdb;
pub mod dpkg;
pub mod pacman;
pub mod rpm;
pub mod sqlite;

use serde::Serialize;

/// One installed package, as libguestfs' `inspect_list_applications2` describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Application {
    pub name: String,
    /// 0 when the package has none.
    pub epoch: u32,
    /// Upstream version.
    pub version: String,
    /// Distribution release/revision; empty when there is none.
    pub release: String,
    pub arch: String,
    /// One-line description.
    pub summary: String,
    pub url: String,
    /// Windows only: the `DisplayName` (empty elsewhere; `name` is the Uninstall subkey).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Windows only: the publisher (empty elsewhere).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub publisher: String,
    /// Windows only: where it is installed (empty elsewhere).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub install_path: String,
}

/// What a database reader found.
#[derive(Debug, Default)]
pub struct Listing {
    pub applications: Vec<Application>,
    pub warnings: Vec<String>,
}

/// Splits `[epoch:]version[-release]` (dpkg and pacman), the release after the last `-`.
pub fn split_evr(evr: &str) -> (u32, String, String) {
    let (epoch, rest) = match evr.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(0), rest)
        }
        _ => (0, evr),
    };
    match rest.rsplit_once('-') {
        Some((v, r)) => (epoch, v.to_string(), r.to_string()),
        None => (epoch, rest.to_string(), String::new()),
    }
}

/// Text of a database field: lossy UTF-8, trimmed.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Most packages any one database may list: far above any real system, low enough that a
/// hostile database cannot exhaust the job's memory through the output.
pub const MAX_PACKAGES: usize = 200_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evr() {
        assert_eq!(split_evr("1:2.3-4"), (1, "2.3".into(), "4".into()));
        assert_eq!(
            split_evr("2.36-9+deb12u4"),
            (0, "2.36".into(), "9+deb12u4".into())
        );
        assert_eq!(split_evr("1.2"), (0, "1.2".into(), String::new()));
        assert_eq!(split_evr("1:2:3-a-b"), (1, "2:3-a".into(), "b".into()));
        assert_eq!(split_evr("x:1-2"), (0, "x:1".into(), "2".into()));
    }
}
