//! VHD (Virtual PC / Hyper-V v1, qemu's `vpc`): fixed, dynamic and differencing disks.
//!
//! A differencing disk names its parent in the dynamic header (a Unicode file name and up to
//! eight platform locators); the parent must carry the unique id the child records. Sectors the
//! child does not hold (no block, or a clear bit in the block's sector bitmap) come from the
//! parent. qemu's vpc driver reads such disks as if they had no parent; this reader follows the
//! specification instead.

use std::path::Path;
use std::sync::Arc;

use guestkit_block::{BlockSource, Error, Result, check_range};

use crate::chain::{Chain, utf16, windows_path_candidates};
use crate::util::{be16, be32, be64, check_virtual_size, read_container, read_lower, read_table};
use crate::{Format, ImageInfo};

const WHAT: &str = "vhd image";
const TYPE_FIXED: u32 = 2;
const TYPE_DYNAMIC: u32 = 3;
const TYPE_DIFFERENCING: u32 = 4;
const UNALLOCATED: u32 = 0xffff_ffff;
/// CHS geometry at which the geometry can no longer express the size (65535 x 16 x 255).
const MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;
/// Platform codes of the parent locators used to find a parent: Windows relative and absolute
/// paths in UTF-16LE. The deprecated Wi2r/Wi2k (ANSI) and Mac codes are ignored.
const W2RU: u32 = u32::from_be_bytes(*b"W2ru");
const W2KU: u32 = u32::from_be_bytes(*b"W2ku");
/// Longest locator path read (Windows paths are at most 32767 UTF-16 units).
const MAX_LOCATOR_BYTES: u32 = 65536;

/// An open VHD image.
pub struct Vhd {
    file: Arc<dyn BlockSource>,
    size: u64,
    /// `None` for fixed disks (data is the start of the file).
    dynamic: Option<Dynamic>,
}

struct Dynamic {
    block_size: u64,
    /// Bytes of the per-block sector bitmap that precedes each block's data.
    bitmap_bytes: u64,
    bat: Vec<u32>,
    /// The parent of a differencing disk.
    parent: Option<Arc<dyn BlockSource>>,
}

impl Vhd {
    /// Parses the footer (and dynamic header), loads the block allocation table and, for a
    /// differencing disk, opens its parent through `chain`.
    pub fn open(
        file: Arc<dyn BlockSource>,
        path: Option<&Path>,
        chain: &mut Chain,
        info: &mut ImageInfo,
    ) -> Result<Self> {
        let file_size = file.size();
        if file_size < 512 {
            return Err(Error::corrupt(WHAT, "file shorter than a footer"));
        }
        let mut footer = [0u8; 512];
        read_container(&*file, file_size - 512, &mut footer, WHAT)?;
        if &footer[..8] != b"conectix" {
            // Dynamic disks keep a copy of the footer at the start; use it if the end is damaged.
            read_container(&*file, 0, &mut footer, WHAT)?;
            if &footer[..8] != b"conectix" {
                return Err(Error::corrupt(WHAT, "no footer cookie"));
            }
        }
        let data_offset = be64(&footer, 16);
        let creator = &footer[28..32];
        let current_size = be64(&footer, 48);
        let chs = u64::from(be16(&footer, 56)) * u64::from(footer[58]) * u64::from(footer[59]);
        let kind = be32(&footer, 60);
        // Virtual PC and old qemu size the disk by its CHS geometry, everything else by
        // current_size (the same table qemu's vpc driver uses, so sizes agree with qemu-img).
        let by_chs = matches!(creator, b"vpc " | b"qemu") && chs != MAX_CHS_SECTORS;
        let size = check_virtual_size(if by_chs { chs * 512 } else { current_size }, WHAT)?;
        info.virtual_size = size;
        match kind {
            TYPE_FIXED => {
                if size > file_size - 512 {
                    return Err(Error::corrupt(WHAT, "fixed disk larger than its file"));
                }
                Ok(Vhd {
                    file,
                    size,
                    dynamic: None,
                })
            }
            TYPE_DYNAMIC | TYPE_DIFFERENCING => {
                let mut dh = [0u8; 1024];
                read_container(&*file, data_offset, &mut dh, "vhd dynamic header")?;
                if &dh[..8] != b"cxsparse" {
                    return Err(Error::corrupt("vhd dynamic header", "bad cookie"));
                }
                let bat_offset = be64(&dh, 16);
                let entries = u64::from(be32(&dh, 28));
                let block_size = u64::from(be32(&dh, 32));
                if !block_size.is_power_of_two() || block_size < 512 {
                    return Err(Error::corrupt(WHAT, format!("block size {block_size}")));
                }
                // Entries past the disk size are never read, so only load the ones that matter.
                let used = entries.min(size.div_ceil(block_size));
                let raw = read_table(&*file, bat_offset, used * 4, "vhd block allocation table")?;
                let bat = raw.chunks_exact(4).map(|c| be32(c, 0)).collect();
                let bitmap_bytes = (block_size / 512).div_ceil(8).div_ceil(512) * 512;
                info.cluster_size = Some(block_size);
                let parent = if kind == TYPE_DIFFERENCING {
                    let candidates = parent_candidates(&*file, &dh)?;
                    let mut id = [0u8; 16];
                    id.copy_from_slice(&dh[40..56]);
                    let matches = |parent: &dyn BlockSource| parent_has_id(parent, &id);
                    Some(chain.open_parent(path, &candidates, Format::Vhd, &matches)?)
                } else {
                    None
                };
                Ok(Vhd {
                    file,
                    size,
                    dynamic: Some(Dynamic {
                        block_size,
                        bitmap_bytes,
                        bat,
                        parent,
                    }),
                })
            }
            other => Err(Error::corrupt(WHAT, format!("disk type {other}"))),
        }
    }
}

/// The names a differencing disk's dynamic header `dh` gives for its parent, in the order they
/// are tried: relative locators, absolute locators, then the parent's Unicode file name (all
/// looked for relative to the child).
fn parent_candidates(file: &dyn BlockSource, dh: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut relative = Vec::new();
    let mut absolute = Vec::new();
    for entry in dh[576..768].chunks_exact(24) {
        let code = be32(entry, 0);
        if code != W2RU && code != W2KU {
            continue;
        }
        let len = be32(entry, 8);
        if len == 0 || len > MAX_LOCATOR_BYTES {
            return Err(Error::corrupt(
                "vhd parent locator",
                format!("{len}-byte path"),
            ));
        }
        let mut raw = vec![0u8; len as usize];
        read_container(file, be64(entry, 16), &mut raw, "vhd parent locator")?;
        let names = windows_path_candidates(&utf16(&raw, false));
        if code == W2RU {
            relative.extend(names);
        } else {
            absolute.extend(names);
        }
    }
    let mut candidates = relative;
    candidates.extend(absolute);
    candidates.extend(windows_path_candidates(&utf16(&dh[64..576], true)));
    let mut unique = Vec::new();
    for name in candidates {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    Ok(unique)
}

/// Checks that the VHD in `parent` has the unique id `id` its child records.
fn parent_has_id(parent: &dyn BlockSource, id: &[u8; 16]) -> Result<()> {
    let size = parent.size();
    let mut footer = [0u8; 512];
    if size >= 512 {
        read_container(parent, size - 512, &mut footer, WHAT)?;
        if &footer[..8] != b"conectix" {
            read_container(parent, 0, &mut footer, WHAT)?;
        }
    }
    if &footer[..8] != b"conectix" {
        return Err(Error::corrupt(
            "differencing vhd image",
            "its parent is not a VHD",
        ));
    }
    if footer[68..84] != id[..] {
        return Err(Error::corrupt(
            "differencing vhd image",
            "its parent's unique id does not match the one it was made from",
        ));
    }
    Ok(())
}

impl Dynamic {
    /// Reads `out` at `pos` from a block at host `sector` of a differencing disk: sectors whose
    /// bitmap bit is set from the child, the others from the parent.
    fn read_with_bitmap(
        &self,
        file: &dyn BlockSource,
        parent: &dyn BlockSource,
        sector: u32,
        pos: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let bitmap_at = u64::from(sector) * 512;
        let in_block = pos % self.block_size;
        let first = in_block / 512;
        let last = (in_block + out.len() as u64 - 1) / 512;
        // Only the bitmap bytes of the sectors read, so the buffer is bounded by `out`.
        let mut bits = vec![0u8; (last / 8 - first / 8 + 1) as usize];
        read_container(file, bitmap_at + first / 8, &mut bits, "vhd sector bitmap")?;
        let present = |s: u64| bits[(s / 8 - first / 8) as usize] & (0x80 >> (s % 8)) != 0;
        let mut done = 0usize;
        while done < out.len() {
            let at = in_block + done as u64;
            let state = present(at / 512);
            let mut next = at / 512 + 1;
            while next <= last && present(next) == state {
                next += 1;
            }
            let end = ((next * 512 - in_block) as usize).min(out.len());
            let part = &mut out[done..end];
            if state {
                let host = bitmap_at + self.bitmap_bytes + at;
                read_container(file, host, part, "vhd data block")?;
            } else {
                read_lower(Some(parent), pos + done as u64, part)?;
            }
            done = end;
        }
        Ok(())
    }
}

impl BlockSource for Vhd {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let Some(dy) = &self.dynamic else {
            return read_container(&*self.file, offset, buf, "vhd fixed data");
        };
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let block = pos / dy.block_size;
            let run_end = end.min((block + 1) * dy.block_size);
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            // Blocks beyond the table read as zeros, as in qemu (CHS sizing can exceed it).
            match (dy.bat.get(block as usize).copied(), dy.parent.as_deref()) {
                (None | Some(UNALLOCATED), parent) => read_lower(parent, pos, out)?,
                (Some(sector), Some(parent)) => {
                    dy.read_with_bitmap(&*self.file, parent, sector, pos, out)?;
                }
                // Without a parent the sector bitmap is not consulted, as in qemu.
                (Some(sector), None) => {
                    let host = u64::from(sector) * 512 + dy.bitmap_bytes + pos % dy.block_size;
                    read_container(&*self.file, host, out, "vhd data block")?;
                }
            }
            pos = run_end;
        }
        Ok(())
    }
}
