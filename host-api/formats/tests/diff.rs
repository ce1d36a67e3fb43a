//! Differencing VHD and VHDX disks: data from every layer, parent locators, identity checks,
//! confinement, loops and depth. The expected disks are checked against libvhdi by the recipe.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use guestkit_formats::{Error, Format, MemSource, OpenOptions, open, open_source};

fn diff_dir() -> PathBuf {
    guestkit_fixtures::build("fmt-diff").join("diff")
}

fn rooted(root: &Path) -> OpenOptions {
    OpenOptions {
        allowed_roots: vec![root.to_path_buf()],
        ..OpenOptions::default()
    }
}

const EXTS: [(&str, Format); 2] = [("vhd", Format::Vhd), ("vhdx", Format::Vhdx)];

#[test]
fn children_read_like_their_chains() {
    let dir = diff_dir();
    for (ext, format) in EXTS {
        for name in ["child", "mid", "abs-only", "sub/top"] {
            let image = dir.join(format!("{name}.{ext}"));
            let oracle = dir.join(format!("{name}.{ext}.raw"));
            let img = common::assert_matches_oracle_with(&image, &oracle, &rooted(&dir));
            assert_eq!(img.info().format, format);
        }
    }
}

#[test]
fn parents_are_reported_canonically() {
    let dir = diff_dir();
    let canon = dir.canonicalize().unwrap();
    for (ext, _) in EXTS {
        let base = canon.join(format!("base.{ext}"));
        let mid = canon.join(format!("mid.{ext}"));
        for name in ["child", "abs-only"] {
            let img = open(&dir.join(format!("{name}.{ext}")), &OpenOptions::default()).unwrap();
            assert_eq!(img.info().backing_chain, vec![base.clone()], "{name}.{ext}");
        }
        let top = open(&dir.join(format!("sub/top.{ext}")), &rooted(&dir)).unwrap();
        assert_eq!(top.info().backing_chain, vec![mid, base]);
    }
}

#[test]
fn parent_outside_the_image_directory_needs_a_root() {
    // sub/top names ..\mid, outside sub/ — refused unless the parent directory is allowed.
    let dir = diff_dir();
    for (ext, _) in EXTS {
        let err = open(&dir.join(format!("sub/top.{ext}")), &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Limit(_)), "{ext}: {err}");
    }
}

#[test]
fn missing_parent_is_a_clear_io_error() {
    let dir = diff_dir();
    for (ext, _) in EXTS {
        let err = open(&dir.join(format!("missing.{ext}")), &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{ext}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("parent") && text.contains("gone"),
            "{ext}: {text}"
        );
    }
}

#[test]
fn mismatched_parent_is_refused() {
    let dir = diff_dir();
    for (ext, _) in EXTS {
        let err = open(
            &dir.join(format!("mismatch.{ext}")),
            &OpenOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{ext}: {err}");
        assert!(err.to_string().contains("does not match"), "{ext}: {err}");
    }
}

#[test]
fn escapes_are_refused() {
    let dir = diff_dir();
    for (ext, _) in EXTS {
        for name in ["escape", "escape-abs"] {
            let err =
                open(&dir.join(format!("{name}.{ext}")), &OpenOptions::default()).unwrap_err();
            assert!(matches!(err, Error::Limit(_)), "{name}.{ext}: {err}");
            assert!(
                err.to_string().contains("outside the allowed roots"),
                "{name}.{ext}: {err}"
            );
        }
        // The escaping parent is a good one: allowing its directory makes the chain open.
        let both = OpenOptions {
            allowed_roots: vec![dir.clone(), dir.join("../outside")],
            ..OpenOptions::default()
        };
        open(&dir.join(format!("escape.{ext}")), &both).unwrap_or_else(|e| panic!("{ext}: {e}"));
    }
}

#[test]
fn loops_are_refused() {
    let dir = diff_dir();
    for (ext, _) in EXTS {
        for name in ["loop-a", "loop-b", "self"] {
            let err =
                open(&dir.join(format!("{name}.{ext}")), &OpenOptions::default()).unwrap_err();
            assert!(matches!(err, Error::Limit(_)), "{name}.{ext}: {err}");
            assert!(err.to_string().contains("loop"), "{name}.{ext}: {err}");
        }
    }
}

#[test]
fn depth_is_limited() {
    let dir = diff_dir();
    for (ext, _) in EXTS {
        let shallow = OpenOptions {
            max_backing_depth: 1,
            ..rooted(&dir)
        };
        let err = open(&dir.join(format!("sub/top.{ext}")), &shallow).unwrap_err();
        assert!(matches!(err, Error::Limit(_)), "{ext}: {err}");
        open(&dir.join(format!("child.{ext}")), &shallow).unwrap();
    }
}

#[test]
fn children_without_a_directory_are_unsupported() {
    let dir = diff_dir();
    for (ext, format) in EXTS {
        let bytes = std::fs::read(dir.join(format!("child.{ext}"))).unwrap();
        let err = open_source(Arc::new(MemSource(bytes)), Some(format)).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{ext}: {err}");
    }
}
