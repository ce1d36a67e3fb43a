//! Superblock magic: what a device holds, without opening it.

use crate::{FsType, Result};
use guestkit_block::BlockSource;

/// Reads `len` bytes at `offset`, or `None` if the device is too small to hold them.
fn bytes(src: &dyn BlockSource, offset: u64, len: usize) -> Result<Option<Vec<u8>>> {
    if offset
        .checked_add(len as u64)
        .is_none_or(|end| end > src.size())
    {
        return Ok(None);
    }
    let mut buf = vec![0u8; len];
    src.read_at(offset, &mut buf)?;
    Ok(Some(buf))
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Names the filesystem (or swap, or LVM2 PV) on `src` from its magic numbers, the way `blkid`
/// tells them apart; `None` if nothing known is there. Only I/O errors are errors.
pub fn probe(src: &dyn BlockSource) -> Result<Option<FsType>> {
    if let Some(sb) = bytes(src, 1024, 1024)?
        && le16(&sb, 0x38) == 0xEF53
    {
        return Ok(Some(ext_kind(&sb)));
    }
    if let Some(b) = bytes(src, 0, 4)?
        && b == b"XFSB"
    {
        return Ok(Some(FsType::Xfs));
    }
    if let Some(b) = bytes(src, 0x10040, 8)?
        && b == b"_BHRfS_M"
    {
        return Ok(Some(FsType::Btrfs));
    }
    if let Some(boot) = bytes(src, 0, 512)? {
        if &boot[3..11] == b"NTFS    " {
            return Ok(Some(FsType::Ntfs));
        }
        if let Some(fat) = fat_kind(&boot) {
            return Ok(Some(fat));
        }
    }
    // LVM2 puts its label in one of the first four sectors.
    for sector in 0..4u64 {
        if let Some(b) = bytes(src, sector * 512, 32)?
            && &b[0..8] == b"LABELONE"
            && &b[24..32] == b"LVM2 001"
        {
            return Ok(Some(FsType::LvmPv));
        }
    }
    // Swap's signature ends its first page; try the common page sizes.
    for page in [4096u64, 8192, 16384, 65536] {
        if let Some(b) = bytes(src, page - 10, 10)?
            && (b == b"SWAPSPACE2" || b == b"SWAP-SPACE")
        {
            return Ok(Some(FsType::Swap));
        }
    }
    Ok(None)
}

/// ext2/3/4 by feature flags, with the rule blkid uses: anything beyond what ext3 knows makes it
/// ext4; a journal without such features makes it ext3.
fn ext_kind(sb: &[u8]) -> FsType {
    const COMPAT_HAS_JOURNAL: u32 = 0x4;
    // filetype, recover, meta_bg
    const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x10;
    // sparse_super, large_file, btree_dir
    const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;
    let compat = le32(sb, 0x5C);
    let incompat = le32(sb, 0x60);
    let ro_compat = le32(sb, 0x64);
    if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        FsType::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        FsType::Ext3
    } else {
        FsType::Ext2
    }
}

/// FAT from a plausible BPB; the width comes from the cluster count, as the spec says.
fn fat_kind(boot: &[u8]) -> Option<FsType> {
    if boot[510] != 0x55 || boot[511] != 0xAA {
        return None;
    }
    let bytes_per_sector = u64::from(le16(boot, 11));
    let per_cluster = u64::from(boot[13]);
    let reserved = u64::from(le16(boot, 14));
    let fats = u64::from(boot[16]);
    let root_entries = u64::from(le16(boot, 17));
    let total16 = u64::from(le16(boot, 19));
    let fat16_size = u64::from(le16(boot, 22));
    let total32 = u64::from(le32(boot, 32));
    let fat32_size = u64::from(le32(boot, 36));
    let sane = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && per_cluster.is_power_of_two()
        && per_cluster <= 128
        && reserved > 0
        && (1..=2).contains(&fats);
    let named = &boot[54..57] == b"FAT" || &boot[82..87] == b"FAT32";
    if !sane || !named {
        return None;
    }
    let total = if total16 != 0 { total16 } else { total32 };
    let fat_size = if fat16_size != 0 {
        fat16_size
    } else {
        fat32_size
    };
    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    let data = total.checked_sub(reserved + fats * fat_size + root_sectors)?;
    let clusters = data / per_cluster;
    Some(if clusters < 4085 {
        FsType::Fat12
    } else if clusters < 65525 {
        FsType::Fat16
    } else {
        FsType::Fat32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestkit_block::MemSource;

    fn ext_with(compat: u32, incompat: u32, ro: u32) -> Option<FsType> {
        let mut img = vec![0u8; 4096];
        img[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        img[1024 + 0x5C..1024 + 0x60].copy_from_slice(&compat.to_le_bytes());
        img[1024 + 0x60..1024 + 0x64].copy_from_slice(&incompat.to_le_bytes());
        img[1024 + 0x64..1024 + 0x68].copy_from_slice(&ro.to_le_bytes());
        probe(&MemSource(img)).unwrap()
    }

    #[test]
    fn ext_generations_follow_feature_flags() {
        assert_eq!(ext_with(0, 0x2, 0x3), Some(FsType::Ext2));
        assert_eq!(ext_with(0x4, 0x2, 0x3), Some(FsType::Ext3));
        assert_eq!(ext_with(0x4, 0x2 | 0x40, 0x3), Some(FsType::Ext4));
        assert_eq!(ext_with(0, 0x2, 0x400), Some(FsType::Ext4));
    }

    #[test]
    fn tiny_and_garbage_devices_are_nothing() {
        assert_eq!(probe(&MemSource(vec![0xFF; 100])).unwrap(), None);
        let mut boot = vec![0u8; 512];
        boot[510] = 0x55;
        boot[511] = 0xAA;
        boot[54..57].copy_from_slice(b"FAT");
        // Zero bytes per sector: not a plausible BPB.
        assert_eq!(probe(&MemSource(boot)).unwrap(), None);
    }
}
