//! Differencing VHD and VHDX disks: data from every layer, parent locators, identity checks,
//! confinement, loops and depth. The expected disks are checked against libvhdi by the recipe.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use guestkit_formats::{BlockSource, Error, Format, MemSource, OpenOptions, open, open_source};

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

/// Overwrites single bytes of a child's locators, tables and bitmaps (in place, next to a copy
/// of its parent) and opens and reads it each time: every outcome but a panic is fine.
#[test]
fn crafted_children_fail_cleanly() {
    use std::os::unix::fs::FileExt;
    let dir = diff_dir();
    let tmp = std::env::temp_dir().join(format!("guestkit-diff-crafted-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (ext, format) in EXTS {
        std::fs::copy(
            dir.join(format!("base.{ext}")),
            tmp.join(format!("base.{ext}")),
        )
        .unwrap();
        let bytes = std::fs::read(dir.join(format!("child.{ext}"))).unwrap();
        let child = tmp.join(format!("child.{ext}"));
        std::fs::write(&child, &bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&child)
            .unwrap();
        let mut spots: Vec<usize> = Vec::new();
        if format == Format::Vhd {
            // Dynamic header (parent id, name, locators), BAT, the first block's bitmap.
            spots.extend(512 + 8..512 + 768);
            spots.extend(1536..1536 + 32);
            let first = (1536..1536 + 32)
                .step_by(4)
                .map(|at| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()))
                .find(|&e| e != u32::MAX)
                .unwrap() as usize
                * 512;
            spots.extend(first..first + 16);
        } else {
            // Parent locator item, file parameters, BAT entries and the sector bitmap.
            let locator = bytes
                .windows(16)
                .position(|w| {
                    w == [
                        0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a, 0xb7, 0x89, 0x25, 0xb8,
                        0xe9, 0x44, 0x59, 0x13,
                    ]
                })
                .unwrap();
            spots.extend(locator..locator + 200);
            spots.extend((2 << 20) + 32..(2 << 20) + 32 + 6 * 32);
            spots.extend((3 << 20)..(3 << 20) + 128);
            let sb = (3 << 20) + 4096 * 8;
            spots.extend(sb..sb + 8);
            let bitmap =
                (u64::from_le_bytes(bytes[sb..sb + 8].try_into().unwrap()) & !0xf_ffff) as usize;
            spots.extend(bitmap + 1280..bitmap + 1300);
        }
        let opts = rooted(&tmp);
        let mut buf = vec![0u8; 256 << 10];
        for &at in &spots {
            for value in [0x00, 0xff, 0x80, bytes[at] ^ 0x01] {
                file.write_all_at(&[value], at as u64).unwrap();
                if let Ok(img) = open(&child, &opts) {
                    for off in [
                        0u64,
                        4 << 20,
                        5 << 20,
                        (7 << 20) - 4096,
                        img.size().saturating_sub(256 << 10),
                    ] {
                        let len = buf.len().min(img.size().saturating_sub(off) as usize);
                        let _ = img.read_at(off, &mut buf[..len]);
                    }
                }
            }
            file.write_all_at(&bytes[at..at + 1], at as u64).unwrap();
        }
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
