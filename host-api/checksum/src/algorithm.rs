//! The supported algorithms and one running hash state per algorithm.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::Error;

/// A checksum algorithm. Its name (`Display`/`FromStr`) is the one used in job documents'
/// `algo:hex` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// SHA-256 (FIPS 180-4), `sha256`.
    Sha256,
    /// SHA-512 (FIPS 180-4), `sha512`.
    Sha512,
    /// SHA-1, `sha1`. Broken for collision resistance; accepted for matching published sums.
    Sha1,
    /// MD5 (RFC 1321), `md5`. Broken for collision resistance; accepted for matching published
    /// sums.
    Md5,
    /// BLAKE3 with its default 32-byte output, `blake3`.
    Blake3,
}

impl Algorithm {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Sha256,
        Algorithm::Sha512,
        Algorithm::Sha1,
        Algorithm::Md5,
        Algorithm::Blake3,
    ];

    /// The lowercase name: `sha256`, `sha512`, `sha1`, `md5` or `blake3`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Sha1 => "sha1",
            Algorithm::Md5 => "md5",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// Length of the digest in bytes (its hex form is twice as long).
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
            Algorithm::Sha1 => 20,
            Algorithm::Md5 => 16,
            Algorithm::Blake3 => 32,
        }
    }

    /// A fresh hash state for this algorithm.
    pub(crate) fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            Algorithm::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    /// Parses an exact lowercase name, as written in job documents.
    fn from_str(s: &str) -> Result<Self, Error> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::UnknownAlgorithm(crate::clip(s)))
    }
}

/// A running hash of one algorithm. Static dispatch over the five crates keeps the per-chunk
/// call free of allocation and indirection.
pub(crate) enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    // Boxed: its state (~1.9 KiB) dwarfs the others.
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// Feeds `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// The digest as lowercase hex.
    pub(crate) fn finalize_hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(algorithm: Algorithm, data: &[u8]) -> String {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finalize_hex()
    }

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.to_string().parse::<Algorithm>().unwrap(), a);
            assert_eq!(hash(a, b"").len(), a.digest_len() * 2, "{a}");
        }
        assert!(matches!(
            "SHA256".parse::<Algorithm>(),
            Err(Error::UnknownAlgorithm(_))
        ));
        assert!("sha-256".parse::<Algorithm>().is_err());
        assert!("".parse::<Algorithm>().is_err());
    }

    /// Published vectors: FIPS 180 examples for "abc", RFC 1321 for MD5, and the BLAKE3
    /// specification's test vectors (empty input, and "abc").
    #[test]
    fn known_vectors() {
        let cases = [
            (
                Algorithm::Sha256,
                &b"abc"[..],
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                Algorithm::Sha512,
                b"abc",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (
                Algorithm::Sha1,
                b"abc",
                "a9993e364706816aba3e25717850c26c9cd0d89d",
            ),
            (Algorithm::Md5, b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (Algorithm::Md5, b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (
                Algorithm::Blake3,
                b"",
                "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            ),
            (
                Algorithm::Blake3,
                b"abc",
                "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
            ),
        ];
        for (algorithm, input, want) in cases {
            assert_eq!(hash(algorithm, input), want, "{algorithm}({input:?})");
        }
    }
}
