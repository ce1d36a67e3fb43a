//! Fuzzes the btrfs readers: the subvolume listing (our own root-tree reader) and the generic
//! walk through lambutter.
//!
//! The input is the image from the superblock on: it is placed after 64 KiB of zeros, where a
//! Btrfs superblock lives, so the fuzzer's short inputs (4 KiB by default) reach the
//! superblock, the chunk map and the trees instead of stopping at the probe. The seeds in
//! `seeds/btrfs/` are such images, cut at 64 KiB; `btrfs_subvol`'s tests check they are
//! current and say how to write them again.
//!
//! The raw input is not walked unpadded: the other readers, whose superblocks sit in the first
//! 4 KiB, have targets and seeds of their own, and inputs kept here for reaching them would
//! crowd out the Btrfs ones.
#![no_main]

mod walk;

/// Where a Btrfs superblock starts.
const SUPER_OFFSET: usize = 0x10000;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut image = vec![0u8; SUPER_OFFSET + data.len()];
    image[SUPER_OFFSET..].copy_from_slice(data);
    let _ = guestkit_fs::list_btrfs_subvolumes(&guestkit_block::MemSource(image.clone()));
    walk::walk(&image)
});
