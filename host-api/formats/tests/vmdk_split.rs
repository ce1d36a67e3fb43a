//! VMDKs split into several extent files, and a VMDK delta disk over its parent.

mod common;

use guestkit_formats::{BlockSource, OpenOptions};

#[test]
fn two_gb_extents_sparse_and_flat() {
    let dir = guestkit_fixtures::build("fmt-split");
    for name in ["twoGbMaxExtentSparse.vmdk", "twoGbMaxExtentFlat.vmdk"] {
        let img =
            common::assert_matches_big_oracle(&dir.join(name), &dir.join(format!("{name}.raw")));
        assert_eq!(img.info().extent_files.len(), 2, "{name}");
        // A read straddling the extent boundary.
        let mut buf = vec![0u8; 200_000];
        img.read_at((2 << 30) - 100_000, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0xa5));
    }
}

#[test]
fn delta_disk_reads_through_its_parent() {
    let dir = guestkit_fixtures::build("fmt-split");
    let img = common::assert_matches_oracle(&dir.join("delta.vmdk"), &dir.join("delta.vmdk.raw"));
    assert_eq!(img.info().backing_chain.len(), 1);
    assert!(img.info().backing_chain[0].ends_with("parent.vmdk"));
    let mut buf = [0u8; 2];
    img.read_at(4 << 20, &mut buf).unwrap();
    assert_eq!(buf, [0x33, 0x33]);
    let detached = OpenOptions {
        max_backing_depth: 0,
        ..OpenOptions::default()
    };
    assert!(guestkit_formats::open(&dir.join("delta.vmdk"), &detached).is_err());
}
