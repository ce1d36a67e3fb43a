//! VHDX (Hyper-V v2): dynamic and fixed disks. Differencing disks and images whose log still
//! needs replaying are refused with [`Error::Unsupported`].

use std::sync::Arc;

use guestkit_block::{BlockSource, Error, Result, check_range};

use crate::ImageInfo;
use crate::crc32c::crc32c;
use crate::util::{check_virtual_size, le16, le32, le64, read_container, read_table};

const WHAT: &str = "vhdx image";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

// GUIDs as stored on disk (first three fields little-endian).
const BAT_REGION: [u8; 16] = [
    0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08,
];
const METADATA_REGION: [u8; 16] = [
    0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e,
];
const FILE_PARAMETERS: [u8; 16] = [
    0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b,
];
const VIRTUAL_DISK_SIZE: [u8; 16] = [
    0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8,
];
const LOGICAL_SECTOR_SIZE: [u8; 16] = [
    0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f,
];
const PHYSICAL_SECTOR_SIZE: [u8; 16] = [
    0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56,
];
const PAGE83_DATA: [u8; 16] = [
    0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46,
];
const PARENT_LOCATOR: [u8; 16] = [
    0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c,
];

const STATE_MASK: u64 = 7;
const FULLY_PRESENT: u64 = 6;

/// An open VHDX image.
pub struct Vhdx {
    file: Arc<dyn BlockSource>,
    size: u64,
    block_size: u64,
    /// Payload blocks per sector-bitmap entry in the BAT.
    chunk_ratio: u64,
    bat: Vec<u64>,
}

impl Vhdx {
    /// Parses the headers, region table and metadata and loads the BAT.
    pub fn open(file: Arc<dyn BlockSource>, info: &mut ImageInfo) -> Result<Self> {
        let mut ident = [0u8; 8];
        read_container(&*file, 0, &mut ident, WHAT)?;
        if &ident != b"vhdxfile" {
            return Err(Error::corrupt(WHAT, "bad file identifier"));
        }
        let header = current_header(&*file)?;
        if header[48..64].iter().any(|&b| b != 0) {
            return Err(Error::Unsupported("vhdx log needs replaying".into()));
        }
        if le16(&header, 66) != 1 {
            return Err(Error::Unsupported(format!(
                "vhdx version {}",
                le16(&header, 66)
            )));
        }

        let regions = read_checked(&*file, 192 * KIB, 64 * KIB, b"regi", "vhdx region table")
            .or_else(|_| read_checked(&*file, 256 * KIB, 64 * KIB, b"regi", "vhdx region table"))?;
        let count = le32(&regions, 8) as usize;
        if count > 2047 {
            return Err(Error::corrupt(
                "vhdx region table",
                format!("{count} entries"),
            ));
        }
        let (mut bat_region, mut meta_region) = (None, None);
        for e in regions[16..16 + count * 32].chunks_exact(32) {
            let (offset, len, required) = (le64(e, 16), u64::from(le32(e, 24)), le32(e, 28) & 1);
            if e[..16] == BAT_REGION {
                bat_region = Some((offset, len));
            } else if e[..16] == METADATA_REGION {
                meta_region = Some((offset, len));
            } else if required != 0 {
                return Err(Error::Unsupported("unknown required vhdx region".into()));
            }
        }
        let (Some((bat_offset, bat_len)), Some((meta_offset, meta_len))) =
            (bat_region, meta_region)
        else {
            return Err(Error::corrupt(
                "vhdx region table",
                "missing BAT or metadata region",
            ));
        };
        if meta_len > MIB {
            return Err(Error::corrupt(
                "vhdx metadata",
                format!("region of {meta_len} bytes"),
            ));
        }

        let meta = read_table(&*file, meta_offset, meta_len, "vhdx metadata")?;
        if meta.len() < 32 || &meta[..8] != b"metadata" {
            return Err(Error::corrupt("vhdx metadata", "bad signature"));
        }
        let count = usize::from(le16(&meta, 10));
        if count > 2047 || 32 + count * 32 > meta.len() {
            return Err(Error::corrupt("vhdx metadata", format!("{count} entries")));
        }
        let item = |id: &[u8; 16], len: usize| -> Result<Option<&[u8]>> {
            for e in meta[32..32 + count * 32].chunks_exact(32) {
                if e[..16] == id[..] {
                    let (off, item_len) = (le32(e, 16) as usize, le32(e, 20) as usize);
                    if item_len < len || off.checked_add(len).is_none_or(|end| end > meta.len()) {
                        return Err(Error::corrupt("vhdx metadata", "item outside the region"));
                    }
                    return Ok(Some(&meta[off..off + len]));
                }
            }
            Ok(None)
        };
        for e in meta[32..32 + count * 32].chunks_exact(32) {
            let known = [
                FILE_PARAMETERS,
                VIRTUAL_DISK_SIZE,
                LOGICAL_SECTOR_SIZE,
                PHYSICAL_SECTOR_SIZE,
                PAGE83_DATA,
                PARENT_LOCATOR,
            ];
            let required = le32(e, 24) & 4 != 0;
            if required && !known.iter().any(|k| e[..16] == k[..]) {
                return Err(Error::Unsupported(
                    "unknown required vhdx metadata item".into(),
                ));
            }
        }
        let missing = || Error::corrupt("vhdx metadata", "missing a required item");
        let params = item(&FILE_PARAMETERS, 8)?.ok_or_else(missing)?;
        let block_size = u64::from(le32(params, 0));
        if le32(params, 4) & 2 != 0 {
            return Err(Error::Unsupported("differencing vhdx image".into()));
        }
        let size = le64(item(&VIRTUAL_DISK_SIZE, 8)?.ok_or_else(missing)?, 0);
        let size = check_virtual_size(size, WHAT)?;
        let sector = u64::from(le32(item(&LOGICAL_SECTOR_SIZE, 4)?.ok_or_else(missing)?, 0));
        if !(MIB..=256 * MIB).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(Error::corrupt(
                "vhdx metadata",
                format!("block size {block_size}"),
            ));
        }
        if sector != 512 && sector != 4096 {
            return Err(Error::corrupt(
                "vhdx metadata",
                format!("logical sector size {sector}"),
            ));
        }
        let chunk_ratio = (1u64 << 23) * sector / block_size;
        let blocks = size.div_ceil(block_size);
        // Payload entries interleaved with one sector-bitmap entry per chunk.
        let entries = if blocks == 0 {
            0
        } else {
            blocks + (blocks - 1) / chunk_ratio
        };
        if entries * 8 > bat_len {
            return Err(Error::corrupt(
                "vhdx BAT",
                "region too small for the disk size",
            ));
        }
        let raw = read_table(&*file, bat_offset, entries * 8, "vhdx BAT")?;
        let bat = raw.chunks_exact(8).map(|c| le64(c, 0)).collect();
        info.virtual_size = size;
        info.cluster_size = Some(block_size);
        Ok(Vhdx {
            file,
            size,
            block_size,
            chunk_ratio,
            bat,
        })
    }

    /// The BAT entry of payload block `block`.
    fn entry(&self, block: u64) -> u64 {
        let index = block + block / self.chunk_ratio;
        self.bat.get(index as usize).copied().unwrap_or(0)
    }
}

/// The valid header with the highest sequence number.
fn current_header(file: &dyn BlockSource) -> Result<Vec<u8>> {
    let a = read_checked(file, 64 * KIB, 4 * KIB, b"head", "vhdx header");
    let b = read_checked(file, 128 * KIB, 4 * KIB, b"head", "vhdx header");
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(if le64(&b, 8) > le64(&a, 8) { b } else { a }),
        (Ok(h), Err(_)) | (Err(_), Ok(h)) => Ok(h),
        (Err(e), Err(_)) => Err(e),
    }
}

/// Reads a structure whose CRC-32C is at byte 4 (computed with that field zeroed).
fn read_checked(
    file: &dyn BlockSource,
    offset: u64,
    len: u64,
    signature: &[u8; 4],
    what: &'static str,
) -> Result<Vec<u8>> {
    let mut buf = read_table(file, offset, len, what)?;
    if &buf[..4] != signature {
        return Err(Error::corrupt(what, "bad signature"));
    }
    let stored = le32(&buf, 4);
    buf[4..8].fill(0);
    if crc32c(&buf) != stored {
        return Err(Error::corrupt(what, "checksum mismatch"));
    }
    buf[4..8].copy_from_slice(&stored.to_le_bytes());
    Ok(buf)
}

impl BlockSource for Vhdx {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let block = pos / self.block_size;
            let entry = self.entry(block);
            let state = entry & STATE_MASK;
            // Saturate rather than wrap: an absurd offset must fail the read, not alias data.
            let host = (entry & !0xf_ffff).saturating_add(pos % self.block_size);
            let mut run_end = end.min((block + 1) * self.block_size);
            while run_end < end {
                let next = self.entry(run_end / self.block_size);
                let continues = if state == FULLY_PRESENT {
                    next & STATE_MASK == FULLY_PRESENT
                        && Some(next & !0xf_ffff) == host.checked_add(run_end - pos)
                } else {
                    next & STATE_MASK == state
                };
                if !continues {
                    break;
                }
                run_end = end.min(run_end + self.block_size);
            }
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            match state {
                // Not present, undefined, zero, unmapped: zeros in a disk without a parent.
                0..=3 => out.fill(0),
                FULLY_PRESENT => read_container(&*self.file, host, out, "vhdx payload block")?,
                other => {
                    return Err(Error::corrupt(
                        "vhdx BAT",
                        format!("payload block state {other} in a disk without a parent"),
                    ));
                }
            }
            pos = run_end;
        }
        Ok(())
    }
}
