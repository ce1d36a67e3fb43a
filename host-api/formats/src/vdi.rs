//! VirtualBox VDI 1.1, dynamic and fixed. Differencing and undo images are refused.

use std::sync::Arc;

use guestkit_block::{BlockSource, Error, Result, check_range};

use crate::ImageInfo;
use crate::util::{check_virtual_size, le32, le64, read_container, read_table};

/// The signature at offset 0x40.
pub const SIGNATURE: u32 = 0xbeda_107f;
const WHAT: &str = "vdi image";
const VERSION_1_1: u32 = 0x0001_0001;
const TYPE_DYNAMIC: u32 = 1;
const TYPE_FIXED: u32 = 2;
/// Block-map values meaning "never written" and "discarded"; both read as zeros.
const UNALLOCATED: u32 = 0xffff_ffff;
const DISCARDED: u32 = 0xffff_fffe;

/// An open VDI image.
pub struct Vdi {
    file: Arc<dyn BlockSource>,
    size: u64,
    block_size: u64,
    data_offset: u64,
    bmap: Vec<u32>,
}

impl Vdi {
    /// Parses the header and loads the block map.
    pub fn open(file: Arc<dyn BlockSource>, info: &mut ImageInfo) -> Result<Self> {
        let mut hdr = [0u8; 0x188];
        read_container(&*file, 0, &mut hdr, WHAT)?;
        if le32(&hdr, 0x40) != SIGNATURE {
            return Err(Error::corrupt(WHAT, "bad signature"));
        }
        let version = le32(&hdr, 0x44);
        if version != VERSION_1_1 {
            return Err(Error::Unsupported(format!("vdi version {version:#x}")));
        }
        let kind = le32(&hdr, 0x4c);
        if kind != TYPE_DYNAMIC && kind != TYPE_FIXED {
            return Err(Error::Unsupported(format!("vdi image type {kind}")));
        }
        let bmap_offset = u64::from(le32(&hdr, 0x154));
        let data_offset = u64::from(le32(&hdr, 0x158));
        let size = check_virtual_size(le64(&hdr, 0x170), WHAT)?;
        let block_size = u64::from(le32(&hdr, 0x178));
        let block_extra = le32(&hdr, 0x17c);
        let blocks = u64::from(le32(&hdr, 0x180));
        if block_size == 0 || !block_size.is_power_of_two() || block_size < 512 {
            return Err(Error::corrupt(WHAT, format!("block size {block_size}")));
        }
        if block_extra != 0 {
            return Err(Error::Unsupported("vdi blocks with extra data".into()));
        }
        if blocks * block_size < size {
            return Err(Error::corrupt(
                WHAT,
                "block map too small for the disk size",
            ));
        }
        let raw = read_table(
            &*file,
            bmap_offset,
            blocks.min(size.div_ceil(block_size)) * 4,
            "vdi block map",
        )?;
        let bmap = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        info.virtual_size = size;
        info.cluster_size = Some(block_size);
        Ok(Vdi {
            file,
            size,
            block_size,
            data_offset,
            bmap,
        })
    }
}

impl BlockSource for Vdi {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let block = pos / self.block_size;
            let entry = self
                .bmap
                .get(block as usize)
                .copied()
                .unwrap_or(UNALLOCATED);
            let host_of = |entry: u32, at: u64| {
                self.data_offset + u64::from(entry) * self.block_size + at % self.block_size
            };
            let mut run_end = end.min((block + 1) * self.block_size);
            // Merge following blocks that continue the run (fixed images are one long run).
            while run_end < end {
                let next = run_end / self.block_size;
                let n = self.bmap.get(next as usize).copied().unwrap_or(UNALLOCATED);
                let same = match (entry, n) {
                    (UNALLOCATED | DISCARDED, UNALLOCATED | DISCARDED) => true,
                    (UNALLOCATED | DISCARDED, _) | (_, UNALLOCATED | DISCARDED) => false,
                    (e, n) => u64::from(n) == u64::from(e) + (next - block),
                };
                if !same {
                    break;
                }
                run_end = end.min((next + 1) * self.block_size);
            }
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            if entry == UNALLOCATED || entry == DISCARDED {
                out.fill(0);
            } else {
                read_container(&*self.file, host_of(entry, pos), out, "vdi data block")?;
            }
            pos = run_end;
        }
        Ok(())
    }
}
