//! Fuzzes the btrfs reader: seed the corpus with small btrfs images (e.g. from the fs-images and
//! fs-btrfs-subvol fixtures); `open` probes, so mutations that change the magic land in other
//! readers too, which is fine. The subvolume listing reads the root tree on its own, so it is
//! fuzzed here too.
#![no_main]

mod walk;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = guestkit_fs::list_btrfs_subvolumes(&guestkit_block::MemSource(data.to_vec()));
    walk::walk(data)
});
