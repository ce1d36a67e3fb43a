//! Every format variant qemu-img writes, read through our stack, equals `qemu-img convert -O raw`.

mod common;

use guestkit_formats::{BlockSource, Compression, Format};

fn check(name: &str) -> guestkit_formats::Image {
    let dir = guestkit_fixtures::build("fmt-images");
    common::assert_matches_oracle(&dir.join(name), &dir.join(format!("{name}.raw")))
}

macro_rules! variants {
    ($($test:ident => $file:literal, $format:ident;)*) => {$(
        #[test]
        fn $test() {
            let img = check($file);
            assert_eq!(img.info().format, Format::$format);
        }
    )*};
}

variants! {
    qcow2_v2 => "qcow2-v2.qcow2", Qcow2;
    qcow2_v3 => "qcow2-v3.qcow2", Qcow2;
    qcow2_512_byte_clusters => "qcow2-v3-512.qcow2", Qcow2;
    qcow2_2m_clusters => "qcow2-v3-2m.qcow2", Qcow2;
    qcow2_zlib => "qcow2-zlib.qcow2", Qcow2;
    qcow2_zstd => "qcow2-zstd.qcow2", Qcow2;
    qcow2_extended_l2 => "qcow2-extl2.qcow2", Qcow2;
    qcow2_external_data_file => "qcow2-datafile.qcow2", Qcow2;
    qcow2_external_raw_data_file => "qcow2-datafile-raw.qcow2", Qcow2;
    vmdk_monolithic_sparse => "vmdk-sparse.vmdk", Vmdk;
    vmdk_monolithic_flat => "vmdk-mflat.vmdk", Vmdk;
    vmdk_two_gb_sparse => "vmdk-2gsparse.vmdk", Vmdk;
    vmdk_two_gb_flat => "vmdk-2gflat.vmdk", Vmdk;
    vmdk_stream_optimized => "vmdk-stream.vmdk", Vmdk;
    vdi_dynamic => "vdi-dynamic.vdi", Vdi;
    vdi_fixed => "vdi-fixed.vdi", Vdi;
    vhdx_dynamic => "vhdx-dynamic.vhdx", Vhdx;
    vhdx_fixed => "vhdx-fixed.vhdx", Vhdx;
    vhdx_1m_blocks => "vhdx-1m.vhdx", Vhdx;
    vpc_dynamic_chs_sized => "vpc-dynamic.vhd", Vhd;
    vpc_dynamic => "vpc-dynamic-force.vhd", Vhd;
    vpc_fixed => "vpc-fixed.vhd", Vhd;
}

#[test]
fn info_reports_cluster_and_compression() {
    let dir = guestkit_fixtures::build("fmt-images");
    let open = |n: &str| guestkit_formats::open(&dir.join(n), &Default::default()).unwrap();
    let zstd = open("qcow2-zstd.qcow2");
    assert_eq!(zstd.info().cluster_size, Some(65536));
    assert_eq!(zstd.info().compression, vec![Compression::Zstd]);
    assert_eq!(open("qcow2-v3-2m.qcow2").info().cluster_size, Some(2 << 20));
    assert_eq!(
        open("vmdk-stream.vmdk").info().compression,
        vec![Compression::Deflate]
    );
    let flat = open("vmdk-2gflat.vmdk");
    assert_eq!(flat.info().extent_files.len(), 1);
    assert!(flat.info().extent_files[0].ends_with("vmdk-2gflat-f001.vmdk"));
    assert!(open("vpc-fixed.vhd").info().backing_chain.is_empty());
    let external = open("qcow2-datafile.qcow2");
    assert_eq!(external.info().extent_files.len(), 1);
    assert!(external.info().extent_files[0].ends_with("qcow2-datafile.data"));
    // In memory there is no directory to find the data file in.
    let bytes = std::fs::read(dir.join("qcow2-datafile.qcow2")).unwrap();
    let detached = guestkit_formats::open_source(
        std::sync::Arc::new(guestkit_formats::MemSource(bytes)),
        None,
    );
    assert!(matches!(
        detached,
        Err(guestkit_formats::Error::Unsupported(_))
    ));
}

#[test]
fn concurrent_readers_agree() {
    let dir = guestkit_fixtures::build("fmt-images");
    let img = guestkit_formats::open(&dir.join("qcow2-zlib.qcow2"), &Default::default()).unwrap();
    let expected = std::fs::read(dir.join("qcow2-zlib.qcow2.raw")).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (img, expected) = (&img, &expected);
            s.spawn(move || {
                let mut rng = common::Rng(t + 1);
                let mut buf = vec![0u8; 70_000];
                for _ in 0..200 {
                    let off = rng.below(img.size() - buf.len() as u64);
                    img.read_at(off, &mut buf).unwrap();
                    assert_eq!(buf[..], expected[off as usize..off as usize + buf.len()]);
                }
            });
        }
    });
}
