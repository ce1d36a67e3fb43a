//! Backing chains: data from every layer, confinement to the allowed roots, loops, depth.

mod common;

use std::path::{Path, PathBuf};

use guestkit_formats::{BlockSource, Error, Format, OpenOptions, open};

fn chain_dir() -> PathBuf {
    guestkit_fixtures::build("fmt-chain").join("chain")
}

fn opts_rooted(root: &Path) -> OpenOptions {
    OpenOptions {
        allowed_roots: vec![root.to_path_buf()],
        ..OpenOptions::default()
    }
}

fn check_with(image: &Path, opts: &OpenOptions) -> guestkit_formats::Image {
    let img = open(image, opts).unwrap_or_else(|e| panic!("opening {}: {e}", image.display()));
    let expected = std::fs::read(format!("{}.raw", image.display())).unwrap();
    assert_eq!(img.size(), expected.len() as u64);
    let mut got = vec![0u8; expected.len()];
    // Odd chunk size so reads straddle clusters and the backing file's end.
    for (i, chunk) in got.chunks_mut(123_457).enumerate() {
        img.read_at(i as u64 * 123_457, chunk).unwrap();
    }
    assert!(got == expected, "{} differs from qemu-img", image.display());
    img
}

#[test]
fn overlays_read_like_qemu() {
    let dir = chain_dir();
    for name in [
        "mid.qcow2",
        "v2-top.qcow2",
        "extl2-top.qcow2",
        "on-raw.qcow2",
        "probed.qcow2",
        "via-link.qcow2",
    ] {
        common::assert_matches_oracle(&dir.join(name), &dir.join(format!("{name}.raw")));
    }
}

#[test]
fn backing_chain_is_reported_canonically() {
    let dir = chain_dir();
    let img = check_with(&dir.join("sub/top.qcow2"), &opts_rooted(&dir));
    let canon = dir.canonicalize().unwrap();
    assert_eq!(
        img.info().backing_chain,
        vec![canon.join("mid.qcow2"), canon.join("base.qcow2")]
    );
    assert_eq!(img.info().format, Format::Qcow2);
    let linked = open(&dir.join("via-link.qcow2"), &OpenOptions::default()).unwrap();
    assert_eq!(linked.info().backing_chain, vec![canon.join("base.qcow2")]);
}

#[test]
fn default_root_is_the_image_directory() {
    // sub/top.qcow2 names ../mid.qcow2, outside sub/ — refused unless the parent is allowed.
    let dir = chain_dir();
    let err = open(&dir.join("sub/top.qcow2"), &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
}

#[test]
fn escapes_are_refused() {
    let dir = chain_dir();
    for name in [
        "escape-dotdot.qcow2",
        "escape-abs.qcow2",
        "escape-link.qcow2",
    ] {
        let err = open(&dir.join(name), &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Limit(_)), "{name}: {err}");
        assert!(
            err.to_string().contains("outside the allowed roots"),
            "{name}: {err}"
        );
    }
    // The same files open once their target's directory is an allowed root.
    let both = OpenOptions {
        allowed_roots: vec![dir.clone(), dir.join("../outside")],
        ..OpenOptions::default()
    };
    for name in ["escape-dotdot.qcow2", "escape-link.qcow2"] {
        open(&dir.join(name), &both).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn loops_are_refused() {
    let dir = chain_dir();
    for name in [
        "cycle-a.qcow2",
        "cycle-b.qcow2",
        "self.qcow2",
        "cycle-c.qcow2",
        "cycle-link.qcow2",
    ] {
        let err = open(&dir.join(name), &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Limit(_)), "{name}: {err}");
        assert!(err.to_string().contains("loop"), "{name}: {err}");
    }
}

#[test]
fn depth_is_limited() {
    let dir = chain_dir();
    open(&dir.join("deep8.qcow2"), &OpenOptions::default()).unwrap();
    let err = open(&dir.join("deep9.qcow2"), &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err}");
    let deeper = OpenOptions {
        max_backing_depth: 10,
        ..OpenOptions::default()
    };
    let img = open(&dir.join("deep10.qcow2"), &deeper).unwrap();
    assert_eq!(img.info().backing_chain.len(), 10);
    let shallow = OpenOptions {
        max_backing_depth: 0,
        ..OpenOptions::default()
    };
    assert!(open(&dir.join("mid.qcow2"), &shallow).is_err());
}

#[test]
fn missing_backing_file_is_an_io_error() {
    let err = open(
        &chain_dir().join("missing.qcow2.top"),
        &OpenOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn open_file_uses_the_given_handle() {
    let dir = chain_dir();
    let path = dir.join("mid.qcow2");
    let file = std::fs::File::open(&path).unwrap();
    let img = guestkit_formats::open_file(file, &path, &OpenOptions::default()).unwrap();
    assert_eq!(img.size(), 10 << 20);
    // A format override is honoured: read as raw, the container bytes come back.
    let raw = open(
        &path,
        &OpenOptions {
            format: Some(Format::Raw),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut magic = [0u8; 4];
    raw.read_at(0, &mut magic).unwrap();
    assert_eq!(&magic, b"QFI\xfb");
}
