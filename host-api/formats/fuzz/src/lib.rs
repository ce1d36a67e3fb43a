//! Shared body of the fuzz targets: open in-memory bytes as one format and read from it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use guestkit_formats::{BlockSource, Format, Image, MemSource, OpenOptions, open, open_source};

/// Opens `data` as `format` (or probes it) and reads a few ranges chosen from the data itself.
/// Any `Err` is fine; a panic, hang or huge allocation is a bug.
pub fn open_and_read(data: &[u8], format: Option<Format>) {
    if let Ok(img) = open_source(Arc::new(MemSource(data.to_vec())), format) {
        read_some(&img, data);
    }
    // An in-memory image has no directory, so a differencing VHD/VHDX stops at its parent
    // locator. Opened as a file next to the parents below, its reads reach the parent too.
    if matches!(format, Some(Format::Vhd | Format::Vhdx)) {
        let _ = open_as_child(data, format);
    }
}

fn read_some(img: &Image, data: &[u8]) {
    let size = img.size();
    if size == 0 {
        return;
    }
    let _ = img.info();
    let mut buf = vec![0u8; 1 << 20];
    // Start of the disk, end of the disk, and offsets taken from the input's last bytes.
    let mut offsets = vec![0, size.saturating_sub(buf.len() as u64)];
    for chunk in data.rchunks(8).take(4) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        offsets.push(u64::from_le_bytes(word) % size);
    }
    for off in offsets {
        let len = (buf.len() as u64).min(size - off) as usize;
        let _ = img.read_at(off, &mut buf[..len]);
    }
}

/// Unique id of the VHD parent `p.vhd` (footer) and DataWriteGuid of the VHDX parent `p.vhdx`.
pub const PARENT_VHD_ID: [u8; 16] = [0x11; 16];
pub const PARENT_VHDX_GUID: [u8; 16] = [0x22; 16];

/// Writes `data` as `child.vhd`/`child.vhdx` into a per-process directory holding the parents
/// `p.vhd` and `p.vhdx` (4 MiB, empty), opens it from there and reads from it.
fn open_as_child(data: &[u8], format: Option<Format>) -> Option<Image> {
    let dir = parents_dir();
    let ext = if format == Some(Format::Vhd) {
        "vhd"
    } else {
        "vhdx"
    };
    let child = dir.join(format!("child.{ext}"));
    std::fs::write(&child, data).ok()?;
    let opts = OpenOptions {
        format,
        allowed_roots: vec![dir.to_path_buf()],
        max_backing_depth: 2,
    };
    let img = open(&child, &opts).ok()?;
    read_some(&img, data);
    Some(img)
}

fn parents_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("guestkit-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the fuzz directory");
        std::fs::write(dir.join("p.vhd"), vhd_parent()).expect("writing p.vhd");
        std::fs::write(dir.join("p.vhdx"), vhdx_parent()).expect("writing p.vhdx");
        dir
    })
}

const MIB: usize = 1 << 20;
const PARENT_SIZE: u64 = 4 << 20;

/// An empty dynamic VHD of 4 MiB (2 MiB blocks, none allocated).
fn vhd_parent() -> Vec<u8> {
    let mut footer = [0u8; 512];
    footer[..8].copy_from_slice(b"conectix");
    footer[8..12].copy_from_slice(&2u32.to_be_bytes());
    footer[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    footer[16..24].copy_from_slice(&512u64.to_be_bytes());
    footer[28..32].copy_from_slice(b"fuzz");
    footer[40..48].copy_from_slice(&PARENT_SIZE.to_be_bytes());
    footer[48..56].copy_from_slice(&PARENT_SIZE.to_be_bytes());
    footer[60..64].copy_from_slice(&3u32.to_be_bytes());
    footer[68..84].copy_from_slice(&PARENT_VHD_ID);
    let mut dynamic = [0u8; 1024];
    dynamic[..8].copy_from_slice(b"cxsparse");
    dynamic[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    dynamic[16..24].copy_from_slice(&1536u64.to_be_bytes());
    dynamic[28..32].copy_from_slice(&2u32.to_be_bytes());
    dynamic[32..36].copy_from_slice(&(2u32 << 20).to_be_bytes());
    let mut out = footer.to_vec();
    out.extend(dynamic);
    out.extend([0xff; 512]);
    out.extend(footer);
    out
}

/// An empty dynamic VHDX of 4 MiB (1 MiB blocks, none present).
fn vhdx_parent() -> Vec<u8> {
    const BAT: [u8; 16] = [
        0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a,
        0x08,
    ];
    const METADATA: [u8; 16] = [
        0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88,
        0x6e,
    ];
    const FILE_PARAMETERS: [u8; 16] = [
        0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7,
        0x6b,
    ];
    const VIRTUAL_DISK_SIZE: [u8; 16] = [
        0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4,
        0xb8,
    ];
    const LOGICAL_SECTOR_SIZE: [u8; 16] = [
        0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab,
        0x5f,
    ];
    const KIB: usize = 1024;
    let (bat_at, meta_at) = (320 * KIB, 384 * KIB);
    let mut out = vec![0u8; 448 * KIB];
    out[..8].copy_from_slice(b"vhdxfile");
    let mut header = vec![0u8; 4 * KIB];
    header[..4].copy_from_slice(b"head");
    header[8..16].copy_from_slice(&1u64.to_le_bytes());
    header[32..48].copy_from_slice(&PARENT_VHDX_GUID);
    header[66..68].copy_from_slice(&1u16.to_le_bytes());
    let crc = crc32c(&header);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    out[64 * KIB..68 * KIB].copy_from_slice(&header);
    out[128 * KIB..132 * KIB].copy_from_slice(&header);
    let mut regions = vec![0u8; 64 * KIB];
    regions[..4].copy_from_slice(b"regi");
    regions[8..12].copy_from_slice(&2u32.to_le_bytes());
    for (i, (id, at)) in [(BAT, bat_at), (METADATA, meta_at)].into_iter().enumerate() {
        let e = &mut regions[16 + 32 * i..48 + 32 * i];
        e[..16].copy_from_slice(&id);
        e[16..24].copy_from_slice(&(at as u64).to_le_bytes());
        e[24..28].copy_from_slice(&(64 * KIB as u32).to_le_bytes());
        e[28..32].copy_from_slice(&1u32.to_le_bytes());
    }
    let crc = crc32c(&regions);
    regions[4..8].copy_from_slice(&crc.to_le_bytes());
    out[192 * KIB..256 * KIB].copy_from_slice(&regions);
    let meta = &mut out[meta_at..meta_at + 64 * KIB];
    meta[..8].copy_from_slice(b"metadata");
    meta[10..12].copy_from_slice(&3u16.to_le_bytes());
    let items: [([u8; 16], Vec<u8>); 3] = [
        (
            FILE_PARAMETERS,
            [(MIB as u32).to_le_bytes(), [0; 4]].concat(),
        ),
        (VIRTUAL_DISK_SIZE, PARENT_SIZE.to_le_bytes().to_vec()),
        (LOGICAL_SECTOR_SIZE, 512u32.to_le_bytes().to_vec()),
    ];
    for (i, (id, value)) in items.iter().enumerate() {
        let at = 4 * KIB + 64 * i;
        let e = &mut meta[32 + 32 * i..64 + 32 * i];
        e[..16].copy_from_slice(id);
        e[16..20].copy_from_slice(&(at as u32).to_le_bytes());
        e[20..24].copy_from_slice(&(value.len() as u32).to_le_bytes());
        e[24..28].copy_from_slice(&4u32.to_le_bytes());
        meta[at..at + value.len()].copy_from_slice(value);
    }
    out
}

/// CRC-32C (Castagnoli), bit by bit: only used to build the parents once.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_child_reads_through_its_parent() {
        let seed = include_bytes!("../seeds/vhd/diff.vhd");
        let img = open_as_child(seed, Some(Format::Vhd)).expect("the seed opens over p.vhd");
        let mut head = [0u8; 4096];
        img.read_at(0, &mut head).unwrap();
        // Bitmap 0b1011_0001: sectors 0, 2, 3 and 7 from the child, the others from the parent.
        for (sector, data) in head.chunks(512).enumerate() {
            let want = if [0, 2, 3, 7].contains(&sector) {
                0x5a
            } else {
                0
            };
            assert!(data.iter().all(|&b| b == want), "sector {sector}");
        }
        assert!(open_as_child(&vhdx_parent(), Some(Format::Vhdx)).is_some());
        let seed = include_bytes!("../seeds/vhdx/diff.vhdx");
        let img = open_as_child(seed, Some(Format::Vhdx)).expect("the seed opens over p.vhdx");
        assert_eq!(img.info().backing_chain.len(), 1);
    }
}
