//! An expected checksum as written in a job document: `algo:hex`.

use std::fmt;
use std::str::FromStr;

use crate::{Algorithm, Error};

/// A checksum an image must have: an algorithm and its digest as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Expected {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The digest, lowercase hex of exactly `2 * algorithm.digest_len()` digits.
    pub hex: String,
}

impl Expected {
    /// Parses `algo:hex` (e.g. `sha256:9f86…`). Bare hex with no `algo:` prefix is a sha256, as
    /// in the job protocol. The hex must have the algorithm's exact length; it is lowercased.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidExpected {
            input: crate::clip(s),
            reason,
        };
        let (name, hex) = s.split_once(':').unwrap_or(("sha256", s));
        let algorithm: Algorithm = name.parse().map_err(|e: Error| invalid(e.to_string()))?;
        let want = algorithm.digest_len() * 2;
        if hex.len() != want {
            return Err(invalid(format!(
                "a {algorithm} digest is {want} hex digits, got {}",
                hex.len()
            )));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("the digest is not hexadecimal".to_string()));
        }
        Ok(Expected {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    }
}

impl FromStr for Expected {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Expected::parse(s)
    }
}

impl fmt::Display for Expected {
    /// The canonical `algo:hex` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        let e = Expected::parse(&format!("sha256:{}", "AB".repeat(32))).unwrap();
        assert_eq!(e.algorithm, Algorithm::Sha256);
        assert_eq!(e.hex, "ab".repeat(32));
        assert_eq!(e.to_string(), format!("sha256:{}", "ab".repeat(32)));
        for a in Algorithm::ALL {
            let s = format!("{a}:{}", "0f".repeat(a.digest_len()));
            assert_eq!(s.parse::<Expected>().unwrap().algorithm, a);
        }
        let bare = Expected::parse(&"cd".repeat(32)).unwrap();
        assert_eq!(bare.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn rejects_bad_strings() {
        let bad = [
            String::new(),
            "sha256:".to_string(),
            "sha256:abc".to_string(),
            "md5:".to_string(),
            format!("sha256:{}", "g".repeat(64)),
            format!("sha256:{}", "a".repeat(128)),
            format!("sha512:{}", "a".repeat(64)),
            format!("crc32:{}", "a".repeat(8)),
            format!("SHA256:{}", "a".repeat(64)),
            format!("sha256:{}é", "a".repeat(62)),
            format!("sha256:{}", "a".repeat(10_000)),
        ];
        for bad in &bad {
            let err = Expected::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidExpected { .. }), "{bad}: {err}");
            // The message never echoes an unbounded input.
            assert!(err.to_string().len() < 300, "{err}");
        }
    }
}
