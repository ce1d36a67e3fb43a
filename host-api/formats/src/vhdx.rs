//! VHDX (Hyper-V v2): dynamic, fixed and differencing disks. Images whose log still needs
//! replaying are refused with [`Error::Unsupported`].
//!
//! A differencing disk names its parent in the parent locator metadata item ([MS-VHDX] 2.6.2.6):
//! `relative_path`, `volume_path` and `absolute_win32_path`, tried in that order, and
//! `parent_linkage`, the DataWriteGuid the parent must have. Blocks not present in the child,
//! and sectors of partially present blocks whose sector bitmap bit is clear, come from the
//! parent. (qemu's vhdx driver refuses differencing images.)

use std::path::Path;
use std::sync::Arc;

use guestkit_block::{BlockSource, Error, Result, check_range};

use crate::chain::{Chain, utf16, windows_path_candidates};
use crate::crc32c::crc32c;
use crate::util::{check_virtual_size, le16, le32, le64, read_container, read_lower, read_table};
use crate::{Format, ImageInfo};

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

/// LocatorType of a parent locator naming a VHDX parent.
const VHDX_LOCATOR: [u8; 16] = [
    0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a, 0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13,
];

const STATE_MASK: u64 = 7;
const NOT_PRESENT: u64 = 0;
const UNDEFINED: u64 = 1;
const FULLY_PRESENT: u64 = 6;
const PARTIALLY_PRESENT: u64 = 7;
/// State of a sector bitmap BAT entry whose bitmap block exists.
const SB_BLOCK_PRESENT: u64 = 6;
/// Offset bits of a BAT entry (its file offset in MiB, shifted into place).
const OFFSET_MASK: u64 = !0xf_ffff;

/// An open VHDX image.
pub struct Vhdx {
    file: Arc<dyn BlockSource>,
    size: u64,
    block_size: u64,
    /// Payload blocks per sector-bitmap entry in the BAT.
    chunk_ratio: u64,
    bat: Vec<u64>,
    /// Logical sector size: the unit of the sector bitmaps.
    sector: u64,
    /// The parent of a differencing disk.
    parent: Option<Arc<dyn BlockSource>>,
}

impl Vhdx {
    /// Parses the headers, region table and metadata, loads the BAT and, for a differencing
    /// disk, opens its parent through `chain`.
    pub fn open(
        file: Arc<dyn BlockSource>,
        path: Option<&Path>,
        chain: &mut Chain,
        info: &mut ImageInfo,
    ) -> Result<Self> {
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
        // An item's first `len` bytes, or all of it with `len == 0`.
        let item = |id: &[u8; 16], len: usize| -> Result<Option<&[u8]>> {
            for e in meta[32..32 + count * 32].chunks_exact(32) {
                if e[..16] == id[..] {
                    let (off, item_len) = (le32(e, 16) as usize, le32(e, 20) as usize);
                    let len = if len == 0 { item_len } else { len };
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
        let has_parent = le32(params, 4) & 2 != 0;
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
        // Payload entries interleaved with one sector-bitmap entry per chunk; a differencing
        // disk needs the bitmap entry of its last, partial chunk too.
        let entries = if blocks == 0 {
            0
        } else if has_parent {
            blocks.div_ceil(chunk_ratio) * (chunk_ratio + 1)
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
        let parent = if has_parent {
            let locator = item(&PARENT_LOCATOR, 0)?.ok_or_else(missing)?;
            let locator = ParentLocator::parse(locator)?;
            let matches = |parent: &dyn BlockSource| locator.check(parent);
            let candidates = locator.candidates();
            Some(chain.open_parent(path, &candidates, Format::Vhdx, &matches)?)
        } else {
            None
        };
        Ok(Vhdx {
            file,
            size,
            block_size,
            chunk_ratio,
            bat,
            sector,
            parent,
        })
    }

    /// Reads `out` at `pos` from partially present payload block `block` (data at host offset
    /// `host`): sectors whose bit in the chunk's sector bitmap is set come from the child, the
    /// others from `parent`.
    fn read_partial(
        &self,
        parent: &dyn BlockSource,
        block: u64,
        host: u64,
        pos: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let chunk = block / self.chunk_ratio;
        let sb_entry = self.entry_at(chunk * (self.chunk_ratio + 1) + self.chunk_ratio);
        if sb_entry & STATE_MASK != SB_BLOCK_PRESENT {
            return Err(Error::corrupt(
                "vhdx BAT",
                "partially present block without a sector bitmap",
            ));
        }
        // Bit index of a disk offset inside its chunk's bitmap: sectors count from the chunk.
        let chunk_start = chunk * self.chunk_ratio * self.block_size;
        let first = (pos - chunk_start) / self.sector;
        let last = (pos + out.len() as u64 - 1 - chunk_start) / self.sector;
        // Only the bitmap bytes of the sectors read, so the buffer is bounded by `out`.
        let mut bits = vec![0u8; (last / 8 - first / 8 + 1) as usize];
        let bitmap_at = (sb_entry & OFFSET_MASK).saturating_add(first / 8);
        read_container(&*self.file, bitmap_at, &mut bits, "vhdx sector bitmap")?;
        let present = |s: u64| bits[(s / 8 - first / 8) as usize] & (1 << (s % 8)) != 0;
        let mut done = 0usize;
        while done < out.len() {
            let at = pos + done as u64;
            let state = present((at - chunk_start) / self.sector);
            let mut next = (at - chunk_start) / self.sector + 1;
            while next <= last && present(next) == state {
                next += 1;
            }
            let end = ((chunk_start + next * self.sector - pos) as usize).min(out.len());
            let part = &mut out[done..end];
            if state {
                let from = host.saturating_add(done as u64);
                read_container(&*self.file, from, part, "vhdx payload block")?;
            } else {
                read_lower(Some(parent), at, part)?;
            }
            done = end;
        }
        Ok(())
    }

    /// The BAT entry at `index` (zero, not present, past the table).
    fn entry_at(&self, index: u64) -> u64 {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.bat.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The BAT entry of payload block `block`.
    fn entry(&self, block: u64) -> u64 {
        let index = block + block / self.chunk_ratio;
        self.bat.get(index as usize).copied().unwrap_or(0)
    }
}

/// What a differencing disk's parent locator says about its parent.
struct ParentLocator {
    /// DataWriteGuids the parent may have (`parent_linkage`, and `parent_linkage2` if given).
    linkage: Vec<[u8; 16]>,
    relative_path: Option<String>,
    volume_path: Option<String>,
    absolute_win32_path: Option<String>,
}

impl ParentLocator {
    /// Parses the parent locator metadata item: a header (LocatorType, reserved, count) and
    /// key/value entries pointing at UTF-16LE strings inside the item.
    fn parse(item: &[u8]) -> Result<Self> {
        const WHAT: &str = "vhdx parent locator";
        if item.len() < 20 {
            return Err(Error::corrupt(WHAT, "shorter than its header"));
        }
        if item[..16] != VHDX_LOCATOR {
            return Err(Error::Unsupported("vhdx parent locator type".into()));
        }
        let count = usize::from(le16(item, 18));
        if 20 + count * 12 > item.len() {
            return Err(Error::corrupt(WHAT, format!("{count} entries")));
        }
        let text = |off: u32, len: u16| -> Result<String> {
            let (off, len) = (off as usize, usize::from(len));
            match off.checked_add(len) {
                Some(end) if end <= item.len() && len % 2 == 0 => Ok(utf16(&item[off..end], false)),
                _ => Err(Error::corrupt(WHAT, "key or value outside the item")),
            }
        };
        let mut locator = ParentLocator {
            linkage: Vec::new(),
            relative_path: None,
            volume_path: None,
            absolute_win32_path: None,
        };
        for e in item[20..20 + count * 12].chunks_exact(12) {
            let key = text(le32(e, 0), le16(e, 8))?;
            let value = text(le32(e, 4), le16(e, 10))?;
            match key.as_str() {
                "parent_linkage" | "parent_linkage2" => {
                    let guid = parse_guid(&value).ok_or_else(|| {
                        Error::corrupt(WHAT, format!("{key} {value:?} is not a GUID"))
                    })?;
                    if key == "parent_linkage" {
                        locator.linkage.insert(0, guid);
                    } else {
                        locator.linkage.push(guid);
                    }
                }
                "relative_path" => locator.relative_path = Some(value),
                "volume_path" => locator.volume_path = Some(value),
                "absolute_win32_path" => locator.absolute_win32_path = Some(value),
                _ => {}
            }
        }
        if locator.linkage.is_empty() {
            return Err(Error::corrupt(WHAT, "no parent_linkage"));
        }
        Ok(locator)
    }

    /// Names to try for the parent, in the order [MS-VHDX] gives.
    fn candidates(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for path in [
            &self.relative_path,
            &self.volume_path,
            &self.absolute_win32_path,
        ]
        .into_iter()
        .flatten()
        {
            for name in windows_path_candidates(path) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Checks that the VHDX in `parent` has the DataWriteGuid the locator links to.
    fn check(&self, parent: &dyn BlockSource) -> Result<()> {
        let mut ident = [0u8; 8];
        read_container(parent, 0, &mut ident, WHAT)?;
        if &ident != b"vhdxfile" {
            return Err(Error::corrupt(
                "differencing vhdx image",
                "its parent is not a VHDX",
            ));
        }
        let header = current_header(parent)?;
        if !self.linkage.iter().any(|g| header[32..48] == g[..]) {
            return Err(Error::corrupt(
                "differencing vhdx image",
                "its parent's DataWriteGuid does not match its parent_linkage",
            ));
        }
        Ok(())
    }
}

/// Parses a GUID written as text (`{01234567-89ab-cdef-0123-456789abcdef}`, braces optional)
/// into its on-disk form (first three fields little-endian).
fn parse_guid(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let parts: Vec<&str> = text.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if parts.len() != 5 || parts.iter().zip(lens).any(|(p, n)| p.len() != n) {
        return None;
    }
    let hex: String = parts.concat();
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    raw[0..4].reverse();
    raw[4..6].reverse();
    raw[6..8].reverse();
    Some(raw)
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
            let host = (entry & OFFSET_MASK).saturating_add(pos % self.block_size);
            let mut run_end = end.min((block + 1) * self.block_size);
            while run_end < end {
                let next = self.entry(run_end / self.block_size);
                let continues = if state == FULLY_PRESENT {
                    next & STATE_MASK == FULLY_PRESENT
                        && Some(next & OFFSET_MASK) == host.checked_add(run_end - pos)
                } else if state == PARTIALLY_PRESENT {
                    false
                } else {
                    next & STATE_MASK == state
                };
                if !continues {
                    break;
                }
                run_end = end.min(run_end + self.block_size);
            }
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            match (state, self.parent.as_deref()) {
                // Not present or undefined: the parent's data (zeros without a parent).
                (NOT_PRESENT | UNDEFINED, parent) => read_lower(parent, pos, out)?,
                // Zero and unmapped (trimmed): zeros, whatever the parent holds.
                (2 | 3, _) => out.fill(0),
                (FULLY_PRESENT, _) => {
                    read_container(&*self.file, host, out, "vhdx payload block")?;
                }
                (PARTIALLY_PRESENT, Some(parent)) => {
                    self.read_partial(parent, block, host, pos, out)?;
                }
                (other, _) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn locator(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut item = VHDX_LOCATOR.to_vec();
        item.extend(0u16.to_le_bytes());
        item.extend((pairs.len() as u16).to_le_bytes());
        let mut strings: Vec<u8> = Vec::new();
        let base = 20 + 12 * pairs.len();
        for (k, v) in pairs {
            let (k, v) = (utf16le(k), utf16le(v));
            let ko = base + strings.len();
            strings.extend(&k);
            let vo = base + strings.len();
            strings.extend(&v);
            item.extend((ko as u32).to_le_bytes());
            item.extend((vo as u32).to_le_bytes());
            item.extend((k.len() as u16).to_le_bytes());
            item.extend((v.len() as u16).to_le_bytes());
        }
        item.extend(strings);
        item
    }

    #[test]
    fn guids_parse_in_on_disk_order() {
        let guid = parse_guid("{A8D35F2D-B30B-454D-ABF7-D3D84834AB0C}").unwrap();
        assert_eq!(guid, PARENT_LOCATOR);
        assert_eq!(
            parse_guid("a8d35f2d-b30b-454d-abf7-d3d84834ab0c"),
            Some(guid)
        );
        for bad in [
            "",
            "{}",
            "{A8D35F2D-B30B-454D-ABF7-D3D84834AB0}",
            "{A8D35F2D-B30B-454D-ABF7-D3D84834AB0CX}",
            "{A8D35F2D+B30B-454D-ABF7-D3D84834AB0C}",
            "{A8D35F2D-B30B-454D-ABF7-D3D84834ABéé}",
        ] {
            assert_eq!(parse_guid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn locator_keys_give_candidates_in_spec_order() {
        let item = locator(&[
            ("absolute_win32_path", "C:\\VMs\\base.vhdx"),
            ("parent_linkage", "{A8D35F2D-B30B-454D-ABF7-D3D84834AB0C}"),
            ("relative_path", "..\\disks\\base.vhdx"),
            ("volume_path", "\\\\?\\Volume{0-1-2}\\VMs\\base.vhdx"),
            ("parent_linkage2", "{2DC27766-F623-4200-9D64-115E9BFD4A08}"),
        ]);
        let loc = ParentLocator::parse(&item).unwrap();
        assert_eq!(loc.linkage, vec![PARENT_LOCATOR, BAT_REGION]);
        assert_eq!(
            loc.candidates(),
            vec![b"../disks/base.vhdx".to_vec(), b"base.vhdx".to_vec()]
        );
    }

    #[test]
    fn malformed_locators_are_errors() {
        let good = locator(&[("parent_linkage", "{A8D35F2D-B30B-454D-ABF7-D3D84834AB0C}")]);
        assert!(ParentLocator::parse(&good).is_ok());
        // Every truncation, and every single-byte corruption, fails cleanly or parses.
        for len in 0..good.len() {
            let _ = ParentLocator::parse(&good[..len]);
        }
        for i in 0..good.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = byte;
                let _ = ParentLocator::parse(&bad);
            }
        }
        // No linkage, wrong type, entries past the item, odd lengths.
        assert!(ParentLocator::parse(&locator(&[("relative_path", "a.vhdx")])).is_err());
        let mut wrong_type = good.clone();
        wrong_type[0] ^= 1;
        assert!(matches!(
            ParentLocator::parse(&wrong_type),
            Err(Error::Unsupported(_))
        ));
        let mut many = good.clone();
        many[18..20].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(ParentLocator::parse(&many).is_err());
        let mut far = good.clone();
        far[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ParentLocator::parse(&far).is_err());
        let mut odd = good;
        odd[28] = 3;
        assert!(ParentLocator::parse(&odd).is_err());
    }
}
