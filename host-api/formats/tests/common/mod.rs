//! Shared checks: an image read through our stack must equal qemu-img's raw conversion.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use guestkit_formats::{BlockSource, Image, OpenOptions, open};
use sha2::{Digest, Sha256};

/// A tiny deterministic generator (xorshift64*) so failures are reproducible without a crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Opens `image` and compares it with `oracle` (qemu-img convert -O raw of the same image):
/// sha256 over the whole disk read in odd-sized chunks, then random ranges byte for byte.
pub fn assert_matches_oracle(image: &Path, oracle: &Path) -> Image {
    assert_matches_oracle_with(image, oracle, &OpenOptions::default())
}

/// [`assert_matches_oracle`] with the image opened under `opts`.
pub fn assert_matches_oracle_with(image: &Path, oracle: &Path, opts: &OpenOptions) -> Image {
    let img = open(image, opts).unwrap_or_else(|e| panic!("opening {}: {e}", image.display()));
    let expected = fs::read(oracle).unwrap_or_else(|e| panic!("reading {}: {e}", oracle.display()));
    assert_eq!(
        img.size(),
        expected.len() as u64,
        "virtual size of {}",
        image.display()
    );

    // Whole disk, chunk sizes cycling through odd values so runs start and end mid-cluster.
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let chunks = [1_048_573usize, 65_537, 4_095, 777_777, 131_071, 1];
    let mut pos = 0u64;
    let mut i = 0;
    while pos < img.size() {
        let n = (chunks[i % chunks.len()] as u64).min(img.size() - pos) as usize;
        img.read_at(pos, &mut buf[..n])
            .unwrap_or_else(|e| panic!("reading {n} bytes at {pos} of {}: {e}", image.display()));
        hasher.update(&buf[..n]);
        pos += n as u64;
        i += 1;
    }
    assert_eq!(
        hex(&hasher.finalize()),
        hex(&Sha256::digest(&expected)),
        "sha256 of {} read through the stack",
        image.display()
    );

    // Random ranges: unaligned, tiny, cluster-crossing and multi-cluster.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let size = img.size();
    for round in 0..300 {
        let len = match round % 4 {
            0 => rng.below(16) + 1,
            1 => rng.below(4096) + 1,
            2 => rng.below(200_000) + 1,
            _ => rng.below(3 << 20) + 1,
        }
        .min(size);
        let off = rng.below(size - len + 1);
        let mut got = vec![0u8; len as usize];
        img.read_at(off, &mut got)
            .unwrap_or_else(|e| panic!("reading {len} at {off} of {}: {e}", image.display()));
        let want = &expected[off as usize..(off + len) as usize];
        if got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{}: range {off}+{len} differs from qemu-img first at byte {}",
                image.display(),
                off + first as u64
            );
        }
    }
    // Reads past the end fail cleanly.
    assert!(img.read_at(size, &mut [0u8; 1]).is_err());
    assert!(img.read_at(u64::MAX, &mut [0u8; 1]).is_err());
    img
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Like [`assert_matches_oracle`] for disks too big to hold in memory: compares the whole disk
/// chunk by chunk and random ranges, reading the oracle file with pread.
pub fn assert_matches_big_oracle(image: &Path, oracle: &Path) -> Image {
    use std::os::unix::fs::FileExt;
    let img = open(image, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("opening {}: {e}", image.display()));
    let expected = fs::File::open(oracle).unwrap();
    let size = expected.metadata().unwrap().len();
    assert_eq!(img.size(), size, "virtual size of {}", image.display());
    let compare = |off: u64, got: &mut [u8], want: &mut [u8]| {
        img.read_at(off, got)
            .unwrap_or_else(|e| panic!("reading {} at {off}: {e}", got.len()));
        expected.read_exact_at(want, off).unwrap();
        assert!(
            got == want,
            "{}: range {off}+{} differs",
            image.display(),
            got.len()
        );
    };
    let (mut got, mut want) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    let mut pos = 0u64;
    let mut step = (8u64 << 20) - 4097; // odd, so chunks drift across grain and extent ends
    while pos < size {
        let n = step.min(size - pos) as usize;
        compare(pos, &mut got[..n], &mut want[..n]);
        pos += n as u64;
        step = if step == 1 { (8 << 20) - 4097 } else { 1 };
    }
    let mut rng = Rng(7);
    for _ in 0..200 {
        let len = (rng.below(1 << 20) + 1).min(size);
        let off = rng.below(size - len + 1);
        compare(off, &mut got[..len as usize], &mut want[..len as usize]);
    }
    img
}
