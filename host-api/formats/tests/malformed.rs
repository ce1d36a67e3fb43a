//! Malformed images give an error, never a panic, a hang or a huge allocation.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use guestkit_formats::{BlockSource, Error, Format, Image, MemSource, open_source};

fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guestkit_fixtures::build("fmt-images").join(name)).unwrap()
}

fn open_mem(bytes: Vec<u8>, format: Format) -> Result<Image, Error> {
    open_source(Arc::new(MemSource(bytes)), Some(format))
}

/// Opens and reads the whole disk; returns the first error. Must finish quickly.
fn open_and_read_all(bytes: Vec<u8>, format: Format) -> Result<(), Error> {
    let img = open_mem(bytes, format)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < img.size() {
        let n = (buf.len() as u64).min(img.size() - pos) as usize;
        img.read_at(pos, &mut buf[..n])?;
        pos += n as u64;
    }
    Ok(())
}

const VARIANTS: &[(&str, Format)] = &[
    ("qcow2-v2.qcow2", Format::Qcow2),
    ("qcow2-v3.qcow2", Format::Qcow2),
    ("qcow2-zlib.qcow2", Format::Qcow2),
    ("qcow2-zstd.qcow2", Format::Qcow2),
    ("qcow2-extl2.qcow2", Format::Qcow2),
    ("vmdk-sparse.vmdk", Format::Vmdk),
    ("vmdk-stream.vmdk", Format::Vmdk),
    ("vdi-dynamic.vdi", Format::Vdi),
    ("vdi-fixed.vdi", Format::Vdi),
    ("vhdx-dynamic.vhdx", Format::Vhdx),
    ("vhdx-fixed.vhdx", Format::Vhdx),
    ("vpc-dynamic.vhd", Format::Vhd),
    ("vpc-fixed.vhd", Format::Vhd),
];

#[test]
fn in_memory_images_match_the_files() {
    // The fuzz targets and these tests use MemSource; make sure it sees the same disk.
    let dir = guestkit_fixtures::build("fmt-images");
    for (name, format) in VARIANTS {
        let img = open_mem(image_bytes(name), *format).unwrap();
        let expected = std::fs::read(dir.join(format!("{name}.raw"))).unwrap();
        let mut got = vec![0u8; expected.len()];
        img.read_at(0, &mut got).unwrap();
        assert!(got == expected, "{name}");
    }
}

#[test]
fn truncated_images_fail() {
    for (name, format) in VARIANTS {
        let full = image_bytes(name);
        for keep in [0, 7, 511, 4096, 65536 + 100, full.len() / 2] {
            let result = open_and_read_all(full[..keep].to_vec(), *format);
            assert!(
                result.is_err(),
                "{name} truncated to {keep} bytes read without error"
            );
        }
    }
}

/// A shared image with a few bytes replaced: corrupting a copy-free view keeps the many
/// attempts below cheap even for the 90 MiB fixed VHDX.
struct Patched {
    base: Arc<Vec<u8>>,
    patches: Vec<(usize, u8)>,
}

impl BlockSource for Patched {
    fn size(&self) -> u64 {
        self.base.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.base[start..start + buf.len()]);
        for &(at, byte) in &self.patches {
            if (start..start + buf.len()).contains(&at) {
                buf[at - start] = byte;
            }
        }
        Ok(())
    }
}

fn check_range(offset: u64, len: usize, size: u64) -> Result<(), Error> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange {
            offset,
            len: len as u64,
            size,
        }),
    }
}

#[test]
fn corrupted_headers_never_panic_or_hang() {
    // Flip random bytes in the metadata area of every format; any result but a panic is fine,
    // and each attempt must be quick (no unbounded loops or allocations).
    // FORMATS_CORRUPT_ROUNDS raises the attempts per image for a longer soak.
    let rounds: u32 = std::env::var("FORMATS_CORRUPT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut rng = common::Rng(42);
    for (name, format) in VARIANTS {
        let pristine = Arc::new(image_bytes(name));
        // VHD keeps its footer at the end; corrupt there too.
        let tail = pristine.len() - 512;
        for _ in 0..rounds {
            let mut patches = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let at = if rng.below(4) == 0 {
                    tail + rng.below(512) as usize
                } else {
                    rng.below(pristine.len().min(320 * 1024) as u64) as usize
                };
                patches.push((at, rng.next() as u8));
            }
            let source = Patched {
                base: Arc::clone(&pristine),
                patches,
            };
            let started = Instant::now();
            if let Ok(img) = open_source(Arc::new(source), Some(*format)) {
                // Sample reads across the disk rather than all of it, to keep the test fast.
                let mut buf = vec![0u8; 300_000];
                for _ in 0..8 {
                    let len = (buf.len() as u64).min(img.size());
                    let off = rng.below(img.size() - len + 1);
                    let _ = img.read_at(off, &mut buf[..len as usize]);
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name} took too long"
            );
        }
    }
}

fn set_be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn set_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn corrupt_or_limit(r: Result<impl Sized, Error>) -> Error {
    match r {
        Ok(_) => panic!("malformed image accepted"),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::Corrupt { .. } | Error::Limit(_) | Error::Unsupported(_)
                ),
                "unexpected error kind: {e}"
            );
            e
        }
    }
}

#[test]
fn qcow2_pointers_past_eof_are_corrupt() {
    let good = image_bytes("qcow2-v3.qcow2");
    let l1_offset = be64(&good, 40) as usize;
    let far = 1u64 << 40;

    let mut bad_l1 = good.clone();
    set_be64(&mut bad_l1, l1_offset, far | (1 << 63));
    let e = corrupt_or_limit(open_and_read_all(bad_l1, Format::Qcow2));
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");

    let mut bad_l2 = good.clone();
    let l2_offset = (be64(&good, l1_offset) & 0x00ff_ffff_ffff_fe00) as usize;
    set_be64(&mut bad_l2, l2_offset, far | (1 << 63));
    let e = corrupt_or_limit(open_and_read_all(bad_l2, Format::Qcow2));
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");

    let mut unaligned = good;
    set_be64(&mut unaligned, l2_offset, 0x10200 | (1 << 63));
    corrupt_or_limit(open_and_read_all(unaligned, Format::Qcow2));
}

#[test]
fn qcow2_absurd_headers_are_refused() {
    let good = image_bytes("qcow2-v3.qcow2");
    type Patch = fn(&mut Vec<u8>);
    let cases: [(&str, Patch); 7] = [
        ("huge virtual size", |b| set_be64(b, 24, 1 << 62)),
        ("cluster bits 40", |b| set_be32(b, 20, 40)),
        ("cluster bits 0", |b| set_be32(b, 20, 0)),
        ("L1 too small", |b| set_be32(b, 36, 0)),
        ("L1 of 4G entries", |b| {
            set_be64(b, 24, 60 << 40);
            set_be32(b, 36, u32::MAX)
        }),
        ("encrypted", |b| set_be32(b, 32, 1)),
        ("unknown incompatible feature", |b| set_be64(b, 72, 1 << 40)),
    ];
    for (what, patch) in cases {
        let mut bytes = good.clone();
        patch(&mut bytes);
        let e = corrupt_or_limit(open_mem(bytes, Format::Qcow2));
        eprintln!("{what}: {e}");
    }
    let mut data_file = good;
    let incompat = be64(&data_file, 72);
    set_be64(&mut data_file, 72, incompat | 4);
    // The data-file bit without the extension naming the file.
    let e = corrupt_or_limit(open_mem(data_file, Format::Qcow2));
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

#[test]
fn backing_files_need_a_directory() {
    let chain = guestkit_fixtures::build("fmt-chain").join("chain/mid.qcow2");
    let bytes = std::fs::read(chain).unwrap();
    assert!(matches!(
        open_mem(bytes, Format::Qcow2),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn other_formats_absurd_headers_are_refused() {
    // VDI: block count and size far beyond the file.
    let mut vdi = image_bytes("vdi-dynamic.vdi");
    vdi[0x170..0x178].copy_from_slice(&(1u64 << 60).to_le_bytes());
    corrupt_or_limit(open_mem(vdi.clone(), Format::Vdi));
    vdi[0x170..0x178].copy_from_slice(&(40u64 << 40).to_le_bytes());
    vdi[0x180..0x184].copy_from_slice(&u32::MAX.to_le_bytes());
    corrupt_or_limit(open_mem(vdi, Format::Vdi));

    // VHDX: both headers' checksums broken.
    let mut vhdx = image_bytes("vhdx-dynamic.vhdx");
    vhdx[64 * 1024 + 8] ^= 1;
    vhdx[128 * 1024 + 8] ^= 1;
    corrupt_or_limit(open_mem(vhdx, Format::Vhdx));

    // VMDK: grain directory far past the end; absurd capacity.
    let mut vmdk = image_bytes("vmdk-sparse.vmdk");
    vmdk[56..64].copy_from_slice(&(1u64 << 50).to_le_bytes());
    corrupt_or_limit(open_mem(vmdk, Format::Vmdk));
    let mut vmdk = image_bytes("vmdk-sparse.vmdk");
    vmdk[12..20].copy_from_slice(&(1u64 << 60).to_le_bytes());
    corrupt_or_limit(open_mem(vmdk, Format::Vmdk));

    // VHD: dynamic header pointing past the end.
    let mut vhd = image_bytes("vpc-dynamic.vhd");
    let footer = vhd.len() - 512;
    vhd[footer + 16..footer + 24].copy_from_slice(&(1u64 << 40).to_be_bytes());
    vhd[16..24].copy_from_slice(&(1u64 << 40).to_be_bytes());
    corrupt_or_limit(open_mem(vhd, Format::Vhd));

    // Every format refuses a blank file when told what it is.
    for format in [
        Format::Qcow2,
        Format::Vmdk,
        Format::Vdi,
        Format::Vhdx,
        Format::Vhd,
    ] {
        corrupt_or_limit(open_mem(vec![0u8; 1 << 20], format));
    }
}
