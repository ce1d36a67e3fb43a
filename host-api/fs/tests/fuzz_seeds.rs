//! The checked-in fuzz seeds (`fuzz/seeds/make.sh`) open and read whole through this crate, so a
//! seed cannot rot into an input every reader rejects at its first bytes.

use guestkit_block::{BlockSource, FileSource};
use guestkit_fs::{FileKind, Filesystem, MAX_READ, open};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("seed entry").path())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Every path of the tree, after listing every directory whole and reading every file and link.
fn walk(fs: &dyn Filesystem, seed: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let mut stack = vec![String::from("/")];
    while let Some(dir) = stack.pop() {
        let listing = fs
            .read_dir(&dir, 10_000)
            .unwrap_or_else(|e| panic!("{}: read_dir {dir}: {e}", seed.display()));
        assert!(!listing.truncated, "{}: {dir} truncated", seed.display());
        for e in listing.entries {
            let path = if dir == "/" {
                format!("/{}", e.name)
            } else {
                format!("{dir}/{}", e.name)
            };
            let m = fs
                .lstat(&path)
                .unwrap_or_else(|err| panic!("{}: lstat {path}: {err}", seed.display()));
            assert_eq!(m.kind, e.kind, "{}: kind of {path}", seed.display());
            match e.kind {
                FileKind::Dir => stack.push(path.clone()),
                FileKind::File => {
                    let data = fs
                        .read_file(&path, 0, MAX_READ)
                        .unwrap_or_else(|err| panic!("{}: read {path}: {err}", seed.display()));
                    assert_eq!(
                        data.len() as u64,
                        m.size,
                        "{}: size of {path}",
                        seed.display()
                    );
                }
                FileKind::Symlink => {
                    fs.read_link(&path)
                        .unwrap_or_else(|err| panic!("{}: readlink {path}: {err}", seed.display()));
                    fs.stat(&path)
                        .unwrap_or_else(|err| panic!("{}: stat {path}: {err}", seed.display()));
                }
                _ => {}
            }
            seen.push(path);
        }
    }
    seen.sort();
    seen
}

/// Opens `seed`, checks its kind (named by the file: `ext4.img` is ext4) and walks it, then
/// checks the files `make.sh` wrote.
fn check(seed: &Path, links: bool) {
    let src: Arc<dyn BlockSource> = Arc::new(FileSource::open(seed).expect("seed image"));
    let fs = open(src).unwrap_or_else(|e| panic!("{}: open: {e}", seed.display()));
    let stem = seed.file_stem().unwrap().to_str().unwrap();
    let kind = format!("{:?}", fs.fs_type()).to_lowercase();
    assert_eq!(kind, stem, "{}", seed.display());
    let paths = walk(&*fs, seed);
    for want in [
        "/hello.txt",
        "/empty",
        "/big.bin",
        "/dir/file-6",
        "/dir/sub/deep.txt",
        "/docs/A long file name.txt",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{}: {want} missing from {paths:?}",
            seed.display()
        );
    }
    assert_eq!(
        fs.read_file("/hello.txt", 0, 100).unwrap(),
        b"hello, seed\n"
    );
    let big = fs.read_file("/big.bin", 0, MAX_READ).unwrap();
    assert_eq!(big.len(), 24576, "{}", seed.display());
    assert!(big[..12288].iter().all(|&b| b == b'x'));
    assert!(big[12288..16384].iter().all(|&b| b == 0));
    assert!(big[16384..].iter().all(|&b| b == b'y'));
    if links {
        assert_eq!(fs.read_link("/link").unwrap(), "dir/sub/deep.txt");
        assert_eq!(fs.read_file("/link", 0, 100).unwrap(), b"nested file\n");
        assert_eq!(fs.read_link("/dir/up").unwrap(), "../hello.txt");
    }
}

#[test]
fn ext4_seeds_read_whole() {
    for seed in seeds("ext4") {
        check(&seed, true);
    }
}

#[test]
fn fat_seeds_read_whole() {
    for seed in seeds("fat") {
        check(&seed, false);
    }
}
