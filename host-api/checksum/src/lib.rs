//! Checksums of a whole virtual device, for verifying images against the `algo:hex` checksums of
//! job documents.
//!
//! [`checksum`] reads a [`BlockSource`] from start to end once and feeds every requested
//! algorithm from the same pass; [`verify`] compares one algorithm against an [`Expected`] value.
//! Because it reads through the disk stack, a qcow2 (or VMDK, VDI, …) image opened with
//! `guestkit_formats::open` is checksummed by its *virtual disk* contents, the bytes
//! `qemu-img convert -O raw` would write; a [`guestkit_block::FileSource`] gives the file's own
//! checksum.
//!
//! ```no_run
//! use guestkit_block::FileSource;
//! use guestkit_checksum::{Algorithm, Expected, Options, checksum, verify};
//!
//! let disk = FileSource::open("disk.raw".as_ref())?;
//! let sums = checksum(&disk, &[Algorithm::Sha256, Algorithm::Md5], &Options::default())?;
//! println!("sha256 {}", sums.get(Algorithm::Sha256).unwrap_or_default());
//!
//! let expected = Expected::parse("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")?;
//! assert!(verify(&disk, &expected, &Options::default())?.matches);
//! # Ok::<(), guestkit_checksum::Error>(())
//! ```

mod algorithm;
mod expected;
mod pass;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicBool;

pub use algorithm::Algorithm;
pub use expected::Expected;
pub use guestkit_block::BlockSource;

/// Errors of a checksum run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the device failed (I/O error, corrupt image, …).
    #[error("reading the device: {0}")]
    Block(#[from] guestkit_block::Error),
    /// [`Options::cancel`] was set; the digests are incomplete and were discarded.
    #[error("checksum cancelled")]
    Cancelled,
    /// An algorithm name that is not one of `sha256 sha512 sha1 md5 blake3`.
    #[error("unknown checksum algorithm {0:?}; use one of sha256, sha512, sha1, md5, blake3")]
    UnknownAlgorithm(String),
    /// An expected checksum string that is not a valid `algo:hex`.
    #[error("invalid checksum {input:?}: {reason}")]
    InvalidExpected {
        /// The string, cut to a bounded length.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`checksum`] was asked for no algorithm at all.
    #[error("no checksum algorithm requested")]
    NoAlgorithms,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default read size: large enough that per-read costs vanish, small enough that a buffer is still
/// in cache when the hasher reads it (measured with `benches/sha256.rs`).
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Smallest read size used; smaller requests are raised to it.
pub const MIN_CHUNK_SIZE: usize = 4 << 10;
/// Largest read size used; larger requests are lowered to it.
pub const MAX_CHUNK_SIZE: usize = 64 << 20;

/// How to run a checksum.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Bytes per read, clamped to [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`]. A few buffers of this
    /// size are allocated once per run and reused.
    pub chunk_size: usize,
    /// Called on the calling thread after each chunk is read, with `(bytes done, total bytes)`.
    /// `done` never decreases and the last call has `done == total` (one `(0, 0)` call for an
    /// empty device).
    pub progress: Option<&'a dyn Fn(u64, u64)>,
    /// Checked between chunks; once it is `true` the run stops with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            chunk_size: DEFAULT_CHUNK_SIZE,
            progress: None,
            cancel: None,
        }
    }
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("chunk_size", &self.chunk_size)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

/// The digests of one pass over a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Lowercase hex digest of each requested algorithm.
    pub hex: BTreeMap<Algorithm, String>,
    /// Bytes read and hashed: the device size.
    pub bytes_read: u64,
}

impl Digests {
    /// The hex digest of `algorithm`, if it was requested.
    pub fn get(&self, algorithm: Algorithm) -> Option<&str> {
        self.hex.get(&algorithm).map(String::as_str)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// The expected digest, lowercase hex.
    pub expected: String,
    /// The digest of the device, lowercase hex.
    pub actual: String,
    /// Whether they are equal.
    pub matches: bool,
}

/// Reads all of `source` once and returns the digest of every algorithm in `algorithms`
/// (duplicates are computed once). Reading and hashing overlap: the calling thread reads while one
/// thread per algorithm hashes.
pub fn checksum(
    source: &dyn BlockSource,
    algorithms: &[Algorithm],
    opts: &Options,
) -> Result<Digests> {
    let mut unique = algorithms.to_vec();
    unique.sort();
    unique.dedup();
    if unique.is_empty() {
        return Err(Error::NoAlgorithms);
    }
    let hex = pass::run(source, &unique, opts)?;
    Ok(Digests {
        hex: unique.into_iter().zip(hex).collect(),
        bytes_read: source.size(),
    })
}

/// Checksums `source` with the algorithm of `expected` and compares the digests.
pub fn verify(
    source: &dyn BlockSource,
    expected: &Expected,
    opts: &Options,
) -> Result<Verification> {
    let digests = checksum(source, &[expected.algorithm], opts)?;
    let actual = digests
        .hex
        .into_values()
        .next()
        .ok_or(Error::NoAlgorithms)?;
    Ok(Verification {
        algorithm: expected.algorithm,
        matches: actual == expected.hex,
        expected: expected.hex.clone(),
        actual,
    })
}

/// Cuts untrusted input quoted in an error to a bounded length.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestkit_block::MemSource;
    use std::cell::RefCell;
    use std::sync::atomic::Ordering;

    /// Bytes that differ at every offset, so a misplaced or repeated chunk changes the digest.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// The digest of `data` hashed in one call, independent of the chunking under test.
    fn one_shot(algorithm: Algorithm, data: &[u8]) -> String {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finalize_hex()
    }

    fn opts(chunk_size: usize) -> Options<'static> {
        Options {
            chunk_size,
            ..Options::default()
        }
    }

    #[test]
    fn sizes_around_chunk_boundaries() {
        let chunk = MIN_CHUNK_SIZE;
        for len in [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7, 8 * chunk] {
            let data = pattern(len);
            let src = MemSource(data.clone());
            let sums = checksum(&src, &Algorithm::ALL, &opts(chunk)).unwrap();
            assert_eq!(sums.bytes_read, len as u64);
            for a in Algorithm::ALL {
                assert_eq!(
                    sums.get(a),
                    Some(one_shot(a, &data).as_str()),
                    "{a} len {len}"
                );
            }
        }
    }

    #[test]
    fn duplicates_are_hashed_once_and_none_is_an_error() {
        let src = MemSource(pattern(3 * MIN_CHUNK_SIZE));
        let sums = checksum(
            &src,
            &[Algorithm::Md5, Algorithm::Md5, Algorithm::Sha1],
            &opts(MIN_CHUNK_SIZE),
        )
        .unwrap();
        assert_eq!(
            sums.hex.keys().copied().collect::<Vec<_>>(),
            [Algorithm::Sha1, Algorithm::Md5]
        );
        assert!(matches!(
            checksum(&src, &[], &Options::default()),
            Err(Error::NoAlgorithms)
        ));
    }

    #[test]
    fn chunk_size_is_clamped() {
        let data = pattern(10_000);
        let src = MemSource(data.clone());
        for chunk_size in [0, 1, usize::MAX] {
            let sums = checksum(&src, &[Algorithm::Sha256], &opts(chunk_size)).unwrap();
            assert_eq!(
                sums.get(Algorithm::Sha256).unwrap(),
                one_shot(Algorithm::Sha256, &data)
            );
        }
    }

    #[test]
    fn progress_is_monotonic_and_ends_at_total() {
        for len in [0, 100, 5 * MIN_CHUNK_SIZE + 3] {
            let src = MemSource(pattern(len));
            let calls = RefCell::new(Vec::new());
            let progress = |done, total| calls.borrow_mut().push((done, total));
            let o = Options {
                chunk_size: MIN_CHUNK_SIZE,
                progress: Some(&progress),
                cancel: None,
            };
            checksum(&src, &[Algorithm::Sha256, Algorithm::Blake3], &o).unwrap();
            let calls = calls.into_inner();
            let total = len as u64;
            assert_eq!(calls.last(), Some(&(total, total)), "len {len}");
            assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "{calls:?}");
            assert!(calls.iter().all(|&(d, t)| t == total && d <= t));
            if len > MIN_CHUNK_SIZE {
                assert_eq!(calls.len(), len.div_ceil(MIN_CHUNK_SIZE));
            }
        }
    }

    #[test]
    fn cancel_stops_between_chunks() {
        let src = MemSource(pattern(64 * MIN_CHUNK_SIZE));
        // Already cancelled: nothing is read.
        let cancel = AtomicBool::new(true);
        let o = Options {
            chunk_size: MIN_CHUNK_SIZE,
            progress: None,
            cancel: Some(&cancel),
        };
        assert!(matches!(
            checksum(&src, &[Algorithm::Sha256], &o),
            Err(Error::Cancelled)
        ));
        // Cancelled after the third chunk: the run stops there.
        let cancel = AtomicBool::new(false);
        let last = RefCell::new(0);
        let progress = |done, _| {
            *last.borrow_mut() = done;
            if done >= 3 * MIN_CHUNK_SIZE as u64 {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        let o = Options {
            chunk_size: MIN_CHUNK_SIZE,
            progress: Some(&progress),
            cancel: Some(&cancel),
        };
        let err = checksum(&src, &[Algorithm::Sha256, Algorithm::Md5], &o).unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert_eq!(*last.borrow(), 3 * MIN_CHUNK_SIZE as u64);
    }

    /// A device whose reads fail past a given offset.
    struct Failing {
        size: u64,
        fail_at: u64,
    }

    impl BlockSource for Failing {
        fn size(&self) -> u64 {
            self.size
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> guestkit_block::Result<()> {
            if offset + buf.len() as u64 > self.fail_at {
                return Err(guestkit_block::Error::corrupt("test device", "bad sector"));
            }
            buf.fill(1);
            Ok(())
        }
    }

    #[test]
    fn read_errors_are_returned() {
        for fail_at in [0, 10 * MIN_CHUNK_SIZE as u64] {
            let src = Failing {
                size: 40 * MIN_CHUNK_SIZE as u64,
                fail_at,
            };
            let err = checksum(&src, &Algorithm::ALL, &opts(MIN_CHUNK_SIZE)).unwrap_err();
            assert!(
                matches!(err, Error::Block(guestkit_block::Error::Corrupt { .. })),
                "{err}"
            );
        }
    }

    #[test]
    fn verify_reports_match_and_mismatch() {
        let src = MemSource(b"abc".to_vec());
        let good = Expected::parse(
            "SHA256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
                .replacen("SHA256", "sha256", 1)
                .as_str(),
        )
        .unwrap();
        let v = verify(&src, &good, &Options::default()).unwrap();
        assert!(v.matches);
        assert_eq!(v.actual, v.expected);
        assert_eq!(v.algorithm, Algorithm::Sha256);

        let bad = Expected::parse(&format!("md5:{}", "0".repeat(32))).unwrap();
        let v = verify(&src, &bad, &Options::default()).unwrap();
        assert!(!v.matches);
        assert_eq!(v.actual, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(v.expected, "0".repeat(32));
    }

    #[test]
    fn clip_bounds_quoted_input() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(500);
        assert_eq!(clip(&long).chars().count(), 81);
    }
}
