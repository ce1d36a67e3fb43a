//! Every filesystem image built by `tests/fixtures/recipes/fs-images.sh` read through this crate
//! and compared with the manifest the recipe wrote from the source tree, and with blkid.

use guestkit_block::{BlockSource, FileSource, MemSource, Window};
use guestkit_fs::{Error, FileKind, Filesystem, FsType, MAX_READ, open, probe};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    guestkit_fixtures::build("fs-images")
}

/// One manifest line: path kind size mode uid gid nlink mtime sha256|target.
#[derive(Debug, Clone)]
struct Entry {
    kind: String,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    extra: String,
}

fn manifest(dir: &Path, name: &str) -> BTreeMap<String, Entry> {
    let text = std::fs::read_to_string(dir.join(name)).expect("manifest");
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 9, "manifest line {l:?}");
            (
                f[0].to_owned(),
                Entry {
                    kind: f[1].to_owned(),
                    size: f[2].parse().unwrap(),
                    mode: u32::from_str_radix(f[3], 8).unwrap(),
                    uid: f[4].parse().unwrap(),
                    gid: f[5].parse().unwrap(),
                    mtime: f[7].parse().unwrap(),
                    extra: f[8].to_owned(),
                },
            )
        })
        .collect()
}

fn blkid(image: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("{}.blkid", image.display())).expect("blkid output");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

fn open_file(image: &Path) -> Box<dyn Filesystem> {
    let src: Arc<dyn BlockSource> = Arc::new(FileSource::open(image).expect("image"));
    open(src).expect("open fs")
}

/// What each fs keeps of the tree.
struct Caps {
    links: bool,
    owners: bool,
    /// Granularity of stored mtimes in seconds; 0 when the recipe cannot set them.
    mtime: i64,
}

/// Reads a whole file in pieces of `chunk` bytes through `read_file`.
fn read_all(fs: &dyn Filesystem, path: &str, size: u64, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = 0u64;
    loop {
        let piece = fs.read_file(path, off, chunk).expect("read_file");
        if piece.is_empty() {
            break;
        }
        off += piece.len() as u64;
        out.extend_from_slice(&piece);
        assert!(off <= size, "{path}: read past its size");
    }
    out
}

/// Every directory of the manifest lists exactly its children, and every entry has its kind,
/// size, content, link target and (as `caps` allow) owner, mode and mtime.
fn check_entries(fs: &dyn Filesystem, want: &BTreeMap<String, Entry>, caps: &Caps) {
    // Listings: every directory of the manifest lists exactly its children.
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    children.insert("/".into(), BTreeSet::new());
    for (path, e) in want {
        let (parent, name) = path.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() { "/" } else { parent };
        children
            .entry(parent.to_owned())
            .or_default()
            .insert(name.to_owned());
        if e.kind == "dir" {
            children.entry(path.clone()).or_default();
        }
    }
    for (d, names) in &children {
        let listing = fs.read_dir(d, 10_000).expect("read_dir");
        assert!(!listing.truncated);
        let got: BTreeSet<String> = listing.entries.iter().map(|e| e.name.clone()).collect();
        let got: BTreeSet<String> = got
            .into_iter()
            .filter(|n| !(d == "/" && (n == "lost+found" || n.starts_with('$'))))
            .collect();
        assert_eq!(&got, names, "listing of {d}");
        for entry in &listing.entries {
            let path = if d == "/" {
                format!("/{}", entry.name)
            } else {
                format!("{d}/{}", entry.name)
            };
            if let Some(w) = want.get(&path) {
                let kind = match w.kind.as_str() {
                    "dir" => FileKind::Dir,
                    "symlink" => FileKind::Symlink,
                    _ => FileKind::File,
                };
                assert_eq!(entry.kind, kind, "kind of {path} in listing");
            }
        }
    }

    // Every entry: metadata, content, link targets.
    for (path, w) in want {
        let m = fs
            .lstat(path)
            .unwrap_or_else(|e| panic!("lstat {path}: {e}"));
        match w.kind.as_str() {
            "symlink" => {
                assert!(caps.links);
                assert_eq!(m.kind, FileKind::Symlink, "{path}");
                assert_eq!(fs.read_link(path).expect("read_link"), w.extra, "{path}");
            }
            "dir" => assert_eq!(m.kind, FileKind::Dir, "{path}"),
            _ => {
                assert_eq!(m.kind, FileKind::File, "{path}");
                assert_eq!(m.size, w.size, "size of {path}");
                let whole = fs.read_file(path, 0, MAX_READ).expect("read_file");
                assert_eq!(sha256(&whole), w.extra, "content of {path}");
                if w.size > 100_000 {
                    // Odd-sized ranges cross every block boundary.
                    assert_eq!(read_all(fs, path, w.size, 65_537), whole, "ranged {path}");
                    let mid = fs.read_file(path, 1_000_003, 77_777).expect("range");
                    assert_eq!(mid, whole[1_000_003..1_000_003 + 77_777], "range of {path}");
                }
                let past = fs.read_file(path, w.size + 10, 10).expect("read past end");
                assert!(past.is_empty());
            }
        }
        if w.kind != "symlink" {
            if caps.owners {
                assert_eq!(
                    (m.mode, m.uid, m.gid),
                    (w.mode, w.uid, w.gid),
                    "owner/mode of {path}"
                );
            }
            if caps.mtime > 0 {
                assert_eq!(m.mtime, w.mtime - w.mtime % caps.mtime, "mtime of {path}");
            }
        }
    }
}

fn check_tree(image: &str, want_type: FsType, manifest_name: &str, caps: Caps) {
    let dir = fixtures();
    let image = dir.join(image);
    let want = manifest(&dir, manifest_name);
    let fs = open_file(&image);
    assert_eq!(fs.fs_type(), want_type);
    let ids = blkid(&image);
    assert_eq!(
        ids.get("TYPE").map(String::as_str),
        Some(want_type.blkid_name())
    );
    assert_eq!(fs.label(), ids.get("LABEL").cloned(), "label");
    assert_eq!(fs.uuid(), ids.get("UUID").cloned(), "uuid");
    check_entries(&*fs, &want, &caps);

    if caps.links {
        // Symlinks are followed in the middle and at the end of paths, relative and absolute.
        assert_eq!(
            fs.read_file("/link-rel", 0, 100).unwrap(),
            b"hello, world\n"
        );
        assert_eq!(
            fs.read_file("/etc/link-up", 0, 100).unwrap(),
            b"hello, world\n"
        );
        assert_eq!(
            fs.read_file("/link-abs", 0, 100).unwrap(),
            b"guest-under-test\n"
        );
        assert_eq!(
            fs.read_file("/link-dir/d/e/f/g/h/deep.txt", 0, 100)
                .unwrap(),
            b"deep file\n"
        );
        assert_eq!(
            fs.read_file("/link-dir-abs/e/../e/f/g/h/deep.txt", 0, 100)
                .unwrap(),
            b"deep file\n"
        );
        assert_eq!(fs.stat("/link-dir").unwrap().kind, FileKind::Dir);
        assert!(matches!(fs.stat("/loop1"), Err(Error::TooManySymlinks(_))));
        assert_eq!(
            fs.read_file("/etc/hardlink.txt", 0, 100).unwrap(),
            b"hello, world\n"
        );
    }
    // `..` is lexical and stops at the root.
    assert_eq!(
        fs.read_file("/../../etc/../hello.txt", 0, 100).unwrap(),
        b"hello, world\n"
    );
    assert!(matches!(fs.stat("/nope"), Err(Error::NotFound(_))));
    assert!(matches!(
        fs.read_dir("/hello.txt", 10),
        Err(Error::NotADirectory(_))
    ));
    assert!(matches!(
        fs.read_file("/etc", 0, 10),
        Err(Error::NotAFile(_))
    ));
    assert!(matches!(
        fs.read_file("/hello.txt", 0, MAX_READ + 1),
        Err(Error::Limit(_))
    ));
    assert!(fs.stat("relative").is_err());
    let cut = fs.read_dir("/many", 10).unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.entries.len(), 10);
}

const ALL: Caps = Caps {
    links: true,
    owners: true,
    mtime: 1,
};
const FAT: Caps = Caps {
    links: false,
    owners: false,
    mtime: 2,
};

#[test]
fn ext2_tree() {
    check_tree("ext2.img", FsType::Ext2, "tree.manifest", ALL);
}
#[test]
fn ext3_tree() {
    check_tree("ext3.img", FsType::Ext3, "tree.manifest", ALL);
}
#[test]
fn ext4_tree() {
    check_tree("ext4.img", FsType::Ext4, "tree.manifest", ALL);
}
#[test]
fn fat12_tree() {
    check_tree("fat12.img", FsType::Fat12, "tree-fat.manifest", FAT);
}
#[test]
fn fat16_tree() {
    check_tree("fat16.img", FsType::Fat16, "tree-fat.manifest", FAT);
}
#[test]
fn fat32_tree() {
    check_tree("fat32.img", FsType::Fat32, "tree-fat.manifest", FAT);
}
/// Four allocation groups, so inode numbers and extents in AGs other than 0 are exercised.
#[test]
fn xfs_tree_multi_ag() {
    // mkfs.xfs -p stamps every inode with the time of mkfs, not the tree's mtimes.
    let caps = Caps {
        links: true,
        owners: true,
        mtime: 0,
    };
    check_tree("xfs.img", FsType::Xfs, "tree.manifest", caps);
    let image = fixtures().join("xfs.img");
    let sb = std::fs::read(&image).unwrap();
    let (inopblog, agblklog) = (u32::from(sb[123]), u32::from(sb[124]));
    let fs = open_file(&image);
    let mut ags = BTreeSet::new();
    for d in [
        "/", "/a", "/a/b/c/d", "/etc", "/home", "/many", "/unicode", "/usr/bin",
    ] {
        for e in fs.read_dir(d, 1000).unwrap().entries {
            ags.insert(e.inode >> (agblklog + inopblog));
        }
    }
    assert!(ags.len() > 1, "all inodes in one AG: {ags:?}");
    // The protofile cannot set times: mkfs stamped "now", which is after the tree was made.
    let mtime = fs.stat("/hello.txt").unwrap().mtime;
    let made = std::fs::metadata(&image).unwrap().modified().unwrap();
    let made = made
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (made - 600..=made + 1).contains(&mtime),
        "mtime {mtime}, image written {made}"
    );
}

const BTRFS_CAPS: Caps = Caps {
    // lambutter does not expose inode times.
    links: true,
    owners: true,
    mtime: 0,
};

/// `subvolumes.expected` of the `fs-btrfs-subvol` fixture, which the recipe parsed from
/// `btrfs inspect-internal dump-tree`.
fn expected_subvolumes(dir: &Path) -> Vec<guestkit_fs::BtrfsSubvolume> {
    let text = std::fs::read_to_string(dir.join("subvolumes.expected")).expect("oracle");
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "oracle line {l:?}");
            guestkit_fs::BtrfsSubvolume {
                id: f[0].parse().unwrap(),
                path: f[1].to_owned(),
                parent_id: f[2].parse().unwrap(),
                is_default: f[3] == "1",
                read_only: f[4] == "1",
            }
        })
        .collect()
}

fn subvol_manifest(dir: &Path, path: &str) -> BTreeMap<String, Entry> {
    manifest(dir, &format!("{}.manifest", path.replace('/', "_")))
}

#[test]
fn btrfs_subvolume_list() {
    let dir = guestkit_fixtures::build("fs-btrfs-subvol");
    let src = FileSource::open(&dir.join("btrfs-subvol.img")).unwrap();
    let got = guestkit_fs::list_btrfs_subvolumes(&src).expect("list");
    assert_eq!(got, expected_subvolumes(&dir));
    // A filesystem without subvolumes lists none; another filesystem is refused.
    let plain = FileSource::open(&fixtures().join("btrfs.img")).unwrap();
    assert_eq!(guestkit_fs::list_btrfs_subvolumes(&plain).unwrap(), vec![]);
    let ext4 = FileSource::open(&fixtures().join("ext4.img")).unwrap();
    assert!(matches!(
        guestkit_fs::list_btrfs_subvolumes(&ext4),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn btrfs_subvolumes_by_path() {
    let dir = guestkit_fixtures::build("fs-btrfs-subvol");
    let src: Arc<dyn BlockSource> =
        Arc::new(FileSource::open(&dir.join("btrfs-subvol.img")).unwrap());
    let subvolumes = expected_subvolumes(&dir);
    assert!(subvolumes.len() >= 5);
    for sv in &subvolumes {
        let fs = guestkit_fs::open_btrfs_subvolume(src.clone(), &format!("/{}", sv.path))
            .unwrap_or_else(|e| panic!("opening {}: {e}", sv.path));
        check_entries(&*fs, &subvol_manifest(&dir, &sv.path), &BTRFS_CAPS);
    }
    // `/` is the top level, whatever the default is.
    let top = guestkit_fs::open_btrfs_subvolume(src.clone(), "/").unwrap();
    check_entries(&*top, &manifest(&dir, "top.manifest"), &BTRFS_CAPS);
    // A plain directory, a path inside a subvolume and a missing path are no subvolumes.
    for bad in ["/srv", "/@/etc", "/nope"] {
        assert!(
            guestkit_fs::open_btrfs_subvolume(src.clone(), bad).is_err(),
            "{bad}"
        );
    }
    let ext4: Arc<dyn BlockSource> =
        Arc::new(FileSource::open(&fixtures().join("ext4.img")).unwrap());
    assert!(matches!(
        guestkit_fs::open_btrfs_subvolume(ext4, "/"),
        Err(Error::Unsupported(_))
    ));
}

/// The image with one byte changed: a damaged tree node, as an untrusted image may hold.
struct Damaged<'a> {
    inner: &'a FileSource,
    at: u64,
    xor: u8,
}

impl BlockSource for Damaged<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> guestkit_block::Result<()> {
        self.inner.read_at(offset, buf)?;
        if let Some(i) = self.at.checked_sub(offset)
            && (i as usize) < buf.len()
        {
            buf[i as usize] ^= self.xor;
        }
        Ok(())
    }
}

/// Damage in any tree node (found by the filesystem's UUID in their headers) makes the listing
/// an error or a different list, never a panic or a hang.
#[test]
fn btrfs_subvolume_list_of_damaged_nodes() {
    let dir = guestkit_fixtures::build("fs-btrfs-subvol");
    let src = FileSource::open(&dir.join("btrfs-subvol.img")).unwrap();
    let mut sb = [0u8; 0x100];
    src.read_at(0x10000, &mut sb).unwrap();
    let fsid = &sb[0x20..0x30];
    let nodesize = u32::from_le_bytes(sb[0x94..0x98].try_into().unwrap()) as u64;
    let mut nodes = Vec::new();
    let mut header = [0u8; 0x30];
    let mut at = 0;
    while at + nodesize <= src.size() {
        src.read_at(at, &mut header).unwrap();
        if &header[0x20..0x30] == fsid && at != 0x10000 {
            nodes.push(at);
        }
        at += nodesize;
    }
    assert!(nodes.len() >= 8, "{} tree nodes found", nodes.len());
    // Header fields (bytenr, nritems, level), the first item headers and keys, and bytes
    // spread over the rest, each with a few bit patterns.
    let mut offsets: Vec<u64> = vec![0x30, 0x60, 0x61, 0x63, 0x64];
    offsets.extend((0x65..0x65 + 25 * 4).step_by(3));
    offsets.extend((0..nodesize).step_by(997));
    for &node in &nodes {
        for &off in &offsets {
            for xor in [0x01, 0x80, 0xff] {
                let damaged = Damaged {
                    inner: &src,
                    at: node + off,
                    xor,
                };
                let _ = guestkit_fs::list_btrfs_subvolumes(&damaged);
            }
        }
    }
}

/// `open` gives the default subvolume, which is not the top level here.
#[test]
fn btrfs_default_subvolume() {
    let dir = guestkit_fixtures::build("fs-btrfs-subvol");
    let image = dir.join("btrfs-subvol.img");
    let default: Vec<_> = expected_subvolumes(&dir)
        .into_iter()
        .filter(|s| s.is_default)
        .collect();
    assert_eq!(default.len(), 1);
    let fs = open_file(&image);
    assert_eq!(fs.fs_type(), FsType::Btrfs);
    let ids = blkid(&image);
    assert_eq!(fs.uuid(), ids.get("UUID").cloned(), "uuid");
    assert_eq!(fs.label(), ids.get("LABEL").cloned(), "label");
    check_entries(&*fs, &subvol_manifest(&dir, &default[0].path), &BTRFS_CAPS);
}

#[test]
fn btrfs_tree() {
    check_tree("btrfs.img", FsType::Btrfs, "tree.manifest", BTRFS_CAPS);
}

#[test]
fn ntfs_tree() {
    check_tree(
        "ntfs.img",
        FsType::Ntfs,
        "tree.manifest",
        Caps {
            links: true,
            owners: false,
            mtime: 0,
        },
    );
}

#[test]
fn probe_names_every_image() {
    let dir = fixtures();
    for (img, t) in [
        ("ext2.img", FsType::Ext2),
        ("ext3.img", FsType::Ext3),
        ("ext4.img", FsType::Ext4),
        ("xfs.img", FsType::Xfs),
        ("btrfs.img", FsType::Btrfs),
        ("fat12.img", FsType::Fat12),
        ("fat16.img", FsType::Fat16),
        ("fat32.img", FsType::Fat32),
        ("ntfs.img", FsType::Ntfs),
    ] {
        let src = FileSource::open(&dir.join(img)).unwrap();
        assert_eq!(probe(&src).unwrap(), Some(t), "{img}");
        assert_eq!(
            blkid(&dir.join(img)).get("TYPE").map(String::as_str),
            Some(t.blkid_name())
        );
    }
    assert_eq!(probe(&MemSource(vec![0; 1 << 20])).unwrap(), None);
    assert_eq!(probe(&MemSource(vec![])).unwrap(), None);
}

#[test]
fn swap_and_lvm_are_recognised_not_opened() {
    let mut swap = vec![0u8; 64 * 1024];
    swap[4096 - 10..4096].copy_from_slice(b"SWAPSPACE2");
    assert_eq!(probe(&MemSource(swap.clone())).unwrap(), Some(FsType::Swap));
    assert!(matches!(
        open(Arc::new(MemSource(swap))),
        Err(Error::Unsupported(_))
    ));
    let mut pv = vec![0u8; 64 * 1024];
    pv[512..520].copy_from_slice(b"LABELONE");
    pv[512 + 24..512 + 32].copy_from_slice(b"LVM2 001");
    assert_eq!(probe(&MemSource(pv.clone())).unwrap(), Some(FsType::LvmPv));
    assert!(matches!(
        open(Arc::new(MemSource(pv))),
        Err(Error::Unsupported(_))
    ));
}

/// Each filesystem inside a "partition": a window at a nonzero offset of a bigger device.
#[test]
fn opens_inside_a_window() {
    let dir = fixtures();
    for img in ["ext4.img", "fat16.img", "ntfs.img", "xfs.img", "btrfs.img"] {
        let bytes = std::fs::read(dir.join(img)).unwrap();
        let start = 1024 * 1024;
        let mut disk = vec![0xA5u8; start];
        disk.extend_from_slice(&bytes);
        disk.extend_from_slice(&[0x5A; 4096]);
        let win = Window::new(MemSource(disk), start as u64, bytes.len() as u64).unwrap();
        let fs = open(Arc::new(win)).unwrap_or_else(|e| panic!("{img}: {e}"));
        assert_eq!(
            fs.read_file("/hello.txt", 0, 100).unwrap(),
            b"hello, world\n",
            "{img}"
        );
    }
}

/// Damaged images give errors (or, where the damage misses what is read, data), never a panic,
/// hang or huge allocation.
#[test]
fn corrupt_images_fail_cleanly() {
    let dir = fixtures();
    for img in [
        "ext2.img",
        "ext4.img",
        "fat12.img",
        "fat32.img",
        "ntfs.img",
        "xfs.img",
        "btrfs.img",
    ] {
        let bytes = std::fs::read(dir.join(img)).unwrap();
        // Truncated to a quarter.
        let _ = walk(MemSource(bytes[..bytes.len() / 4].to_vec()));
        // Random bytes over the first 256 KiB of metadata, several seeds.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..6 {
            let mut b = bytes.clone();
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % (256 * 1024);
                b[at] = (seed >> 32) as u8;
            }
            let _ = walk(MemSource(b));
            // Zeroed superblock region.
            let mut z = bytes.clone();
            let (from, to) = [
                (1024, 2048),
                (0, 512),
                (0x10000, 0x20000),
                (0, 8192),
                (4096, 65536),
                (1024, 1100),
            ][round];
            z[from..to].fill(0);
            let _ = walk(MemSource(z));
        }
    }
}

/// Opens and walks a whole tree, bounded, returning the first error.
fn walk(src: MemSource) -> Result<usize, Error> {
    let started = std::time::Instant::now();
    let r = walk_inner(src);
    eprintln!(
        "walk: {:?} in {:?}",
        r.as_ref().map_err(ToString::to_string),
        started.elapsed()
    );
    r
}

fn walk_inner(src: MemSource) -> Result<usize, Error> {
    let fs = open(Arc::new(src))?;
    let mut stack = vec!["/".to_owned()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        if seen > 5000 {
            break;
        }
        for e in fs.read_dir(&d, 1000)?.entries {
            seen += 1;
            let p = if d == "/" {
                format!("/{}", e.name)
            } else {
                format!("{d}/{}", e.name)
            };
            match e.kind {
                // Corruption can make a directory its own descendant: the tree is 9 deep.
                FileKind::Dir if p.matches('/').count() < 12 => stack.push(p),
                FileKind::Dir => {}
                FileKind::File => {
                    let _ = fs.read_file(&p, 0, 1 << 20);
                }
                FileKind::Symlink => {
                    let _ = fs.read_link(&p);
                    let _ = fs.stat(&p);
                }
                FileKind::Other => {}
            }
        }
    }
    Ok(seen)
}

/// Counts the bytes read from the source below a filesystem.
struct Counting {
    inner: FileSource,
    bytes: std::sync::atomic::AtomicU64,
}

impl BlockSource for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> guestkit_block::Result<()> {
        self.bytes
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_at(offset, buf)
    }
}

/// Reading a file costs reads in proportion to its size: with one-sector clusters, following
/// the cluster chain in the FAT between data clusters must not re-read a whole buffer of the
/// FAT and one of the data each time (below a compressed image, each is a decompression).
#[test]
fn files_are_read_without_rereading_the_same_blocks() {
    let dir = fixtures();
    for (image, path) in [("fat32.img", "/big.bin"), ("ntfs.img", "/big.bin")] {
        let src = Arc::new(Counting {
            inner: FileSource::open(&dir.join(image)).unwrap(),
            bytes: Default::default(),
        });
        let fs = open(src.clone()).unwrap();
        let size = fs.stat(path).unwrap().size;
        let before = src.bytes.load(std::sync::atomic::Ordering::Relaxed);
        let data = read_all(&*fs, path, size, 1 << 20);
        assert_eq!(data.len() as u64, size);
        let read = src.bytes.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(
            read < 2 * size + (1 << 20),
            "{image}: reading {size} bytes of {path} read {read} bytes of the image"
        );
    }
}
