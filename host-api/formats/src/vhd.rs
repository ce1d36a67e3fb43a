//! VHD (Virtual PC / Hyper-V v1, qemu's `vpc`): fixed and dynamic disks. Differencing disks are
//! refused with [`Error::Unsupported`].

use std::sync::Arc;

use guestkit_block::{BlockSource, Error, Result, check_range};

use crate::ImageInfo;
use crate::util::{be16, be32, be64, check_virtual_size, read_container, read_table};

const WHAT: &str = "vhd image";
const TYPE_FIXED: u32 = 2;
const TYPE_DYNAMIC: u32 = 3;
const TYPE_DIFFERENCING: u32 = 4;
const UNALLOCATED: u32 = 0xffff_ffff;
/// CHS geometry at which the geometry can no longer express the size (65535 x 16 x 255).
const MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;

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
}

impl Vhd {
    /// Parses the footer (and dynamic header) and loads the block allocation table.
    pub fn open(file: Arc<dyn BlockSource>, info: &mut ImageInfo) -> Result<Self> {
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
            TYPE_DYNAMIC => {
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
                Ok(Vhd {
                    file,
                    size,
                    dynamic: Some(Dynamic {
                        block_size,
                        bitmap_bytes,
                        bat,
                    }),
                })
            }
            TYPE_DIFFERENCING => Err(Error::Unsupported("differencing vhd image".into())),
            other => Err(Error::corrupt(WHAT, format!("disk type {other}"))),
        }
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
            match dy.bat.get(block as usize).copied() {
                None | Some(UNALLOCATED) => out.fill(0),
                Some(sector) => {
                    let host = u64::from(sector) * 512 + dy.bitmap_bytes + pos % dy.block_size;
                    read_container(&*self.file, host, out, "vhd data block")?;
                }
            }
            pos = run_end;
        }
        Ok(())
    }
}
