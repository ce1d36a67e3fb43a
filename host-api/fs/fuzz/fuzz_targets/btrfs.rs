//! Fuzzes the btrfs readers: the subvolume listing (our own root-tree reader) and the generic
//! walk through lambutter.
//!
//! The input is the image from the superblock on: it is placed after 64 KiB of zeros, where a
//! Btrfs superblock lives, so the fuzzer's short inputs (4 KiB by default) reach the
//! superblock, the chunk map and the trees instead of stopping at the probe. The seeds in
//! `seeds/btrfs/` are such images, cut at 64 KiB; `btrfs_subvol`'s tests check they are
//! current and say how to write them again.
//!
//! lambutter checks the CRC32C of the superblock and of every tree node, which mutations would
//! almost never keep right; so the target writes them afresh before reading: the
//! superblock's, and that of every node-sized block after it, which is where the seeds keep
//! their nodes. Our own lister does not verify checksums, so this hides nothing from it.
//!
//! The raw input is not walked unpadded: the other readers, whose superblocks sit in the first
//! 4 KiB, have targets and seeds of their own, and inputs kept here for reaching them would
//! crowd out the Btrfs ones.
#![no_main]

mod walk;

/// Where a Btrfs superblock starts.
const SUPER_OFFSET: usize = 0x10000;

/// The superblock's size, which its checksum covers from byte 32 on, as a node's does.
const SUPER_LEN: usize = 4096;
const CSUM_LEN: usize = 32;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Writes the CRC32C of `block[32..]` into its first 4 bytes (a short last block gets one
/// too, harmlessly).
fn checksum(block: &mut [u8]) {
    if block.len() > CSUM_LEN {
        let sum = CRC32C.checksum(&block[CSUM_LEN..]);
        block[..4].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Checksums the superblock at the start of `image` and every node-sized block after it.
fn checksum_all(image: &mut [u8]) {
    let nodesize = image
        .get(0x94..0x98)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if (4096..=65536).contains(&nodesize) && nodesize.is_power_of_two() {
        image
            .get_mut(SUPER_LEN..)
            .into_iter()
            .flat_map(|nodes| nodes.chunks_mut(nodesize))
            .for_each(checksum);
    }
    if let Some(superblock) = image.get_mut(..SUPER_LEN) {
        checksum(superblock);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut image = vec![0u8; SUPER_OFFSET + data.len()];
    image[SUPER_OFFSET..].copy_from_slice(data);
    checksum_all(&mut image[SUPER_OFFSET..]);
    let _ = guestkit_fs::list_btrfs_subvolumes(&guestkit_block::MemSource(image.clone()));
    walk::walk(&image)
});
