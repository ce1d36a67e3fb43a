//! End-to-end: digests of real files and images against the system's tools (coreutils
//! `sha256sum sha512sum sha1sum md5sum`, `qemu-img`) and the BLAKE3 specification's test vectors.

use std::fs;
use std::path::Path;
use std::process::Command;

use guestkit_block::{FileSource, MemSource};
use guestkit_checksum::{Algorithm, Expected, MIN_CHUNK_SIZE, Options, checksum, verify};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// `len` pseudo-random bytes, the same on every run.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// The digest a coreutils `*sum` tool prints for `path`.
fn tool_sum(tool: &str, path: &Path) -> String {
    let out = Command::new(tool)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(out.status.success(), "{tool} failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("tool output is UTF-8");
    text.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{tool} printed nothing"))
        .to_string()
}

fn coreutils_tool(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::Sha256 => Some("sha256sum"),
        Algorithm::Sha512 => Some("sha512sum"),
        Algorithm::Sha1 => Some("sha1sum"),
        Algorithm::Md5 => Some("md5sum"),
        // b2sum is BLAKE2b, not BLAKE3, and Python's hashlib has no BLAKE3 either.
        Algorithm::Blake3 => None,
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
}

#[test]
fn every_algorithm_matches_the_system_tools_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.raw");
    // A few MiB, not a multiple of any chunk size used below.
    let data = random_bytes(1, (5 << 20) + 12_345);
    fs::write(&path, &data).unwrap();
    let source = FileSource::open(&path).unwrap();

    for chunk_size in [MIN_CHUNK_SIZE, 300_000, 1 << 20, 64 << 20] {
        let opts = Options {
            chunk_size,
            ..Options::default()
        };
        let sums = checksum(&source, &Algorithm::ALL, &opts).unwrap();
        assert_eq!(sums.bytes_read, data.len() as u64);
        for algorithm in Algorithm::ALL {
            let ours = sums.get(algorithm).unwrap();
            let want = match coreutils_tool(algorithm) {
                Some(tool) => tool_sum(tool, &path),
                None => blake3::hash(&data).to_hex().to_string(),
            };
            assert_eq!(ours, want, "{algorithm} with chunk {chunk_size}");
        }
    }
}

/// First 32 bytes of the `hash` outputs of the BLAKE3 team's `test_vectors.json`, whose input of
/// length n is the bytes 0, 1, …, 250, 0, 1, … .
const BLAKE3_VECTORS: [(usize, &str); 6] = [
    (
        0,
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    ),
    (
        1,
        "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    ),
    (
        1025,
        "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    ),
    (
        8193,
        "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b",
    ),
    (
        31744,
        "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47",
    ),
    (
        102400,
        "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085",
    ),
];

#[test]
fn blake3_matches_the_specification_vectors() {
    for (len, want) in BLAKE3_VECTORS {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        // The smallest chunk, so the longer inputs cross many chunk boundaries.
        let opts = Options {
            chunk_size: MIN_CHUNK_SIZE,
            ..Options::default()
        };
        let sums = checksum(&MemSource(data), &[Algorithm::Blake3], &opts).unwrap();
        assert_eq!(sums.get(Algorithm::Blake3), Some(want), "length {len}");
    }
    let abc = checksum(
        &MemSource(b"abc".to_vec()),
        &[Algorithm::Blake3],
        &Options::default(),
    );
    assert_eq!(
        abc.unwrap().get(Algorithm::Blake3),
        Some("6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")
    );
}

#[test]
fn empty_device_matches_the_tools_on_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty");
    fs::write(&path, b"").unwrap();
    let source = FileSource::open(&path).unwrap();
    let sums = checksum(&source, &Algorithm::ALL, &Options::default()).unwrap();
    assert_eq!(sums.bytes_read, 0);
    for algorithm in Algorithm::ALL {
        let want = match coreutils_tool(algorithm) {
            Some(tool) => tool_sum(tool, &path),
            None => BLAKE3_VECTORS[0].1.to_string(),
        };
        assert_eq!(sums.get(algorithm), Some(want.as_str()), "{algorithm}");
    }
}

/// A qcow2 image is checksummed by its virtual disk: the same bytes as qemu-img's raw export.
#[test]
fn qcow2_virtual_disk_matches_qemu_img_raw_export() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    // Data, a zero run qemu-img leaves unallocated, and data again; 8 MiB + 3 sectors.
    let mut data = random_bytes(2, (8 << 20) + 3 * 512);
    data[(2 << 20)..(5 << 20)].fill(0);
    fs::write(&raw, &data).unwrap();

    for (name, extra) in [("plain.qcow2", &[][..]), ("zlib.qcow2", &["-c"][..])] {
        let image = dir.path().join(name);
        run(Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .args(extra)
            .arg(&raw)
            .arg(&image));
        let exported = dir.path().join(format!("{name}.raw"));
        run(Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(&image)
            .arg(&exported));

        let disk = guestkit_formats::open(&image, &Default::default()).unwrap();
        let opts = Options {
            chunk_size: 1 << 20,
            ..Options::default()
        };
        let sums = checksum(&disk, &[Algorithm::Sha256, Algorithm::Md5], &opts).unwrap();
        assert_eq!(sums.bytes_read, data.len() as u64, "{name}");
        assert_eq!(
            sums.get(Algorithm::Sha256).unwrap(),
            tool_sum("sha256sum", &exported),
            "{name}"
        );
        assert_eq!(
            sums.get(Algorithm::Md5).unwrap(),
            tool_sum("md5sum", &exported),
            "{name}"
        );

        // The container file itself has a different checksum from its virtual disk.
        let file = FileSource::open(&image).unwrap();
        let container = Expected::parse(&format!("sha256:{}", tool_sum("sha256sum", &image)));
        let container = container.unwrap();
        assert!(verify(&file, &container, &opts).unwrap().matches, "{name}");
        let v = verify(&disk, &container, &opts).unwrap();
        assert!(!v.matches, "{name}");
        assert_eq!(v.actual, tool_sum("sha256sum", &exported));
    }
}

#[test]
fn verify_a_file_against_sha256sum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.raw");
    fs::write(&path, random_bytes(3, (3 << 20) + 1)).unwrap();
    let source = FileSource::open(&path).unwrap();
    let sum = tool_sum("sha256sum", &path);

    let upper = Expected::parse(&format!("sha256:{}", sum.to_uppercase())).unwrap();
    let v = verify(&source, &upper, &Options::default()).unwrap();
    assert!(v.matches);
    assert_eq!(v.actual, sum);

    // One flipped digit is a mismatch that reports both digests.
    let mut wrong = sum.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let v = verify(
        &source,
        &Expected::parse(&wrong).unwrap(),
        &Options::default(),
    )
    .unwrap();
    assert!(!v.matches);
    assert_eq!(
        (v.expected.as_str(), v.actual.as_str()),
        (wrong.as_str(), sum.as_str())
    );
}
