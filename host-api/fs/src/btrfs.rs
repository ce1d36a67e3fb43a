//! Btrfs through the `lambutter` crate (single device; zlib and zstd extents), default
//! subvolume or one chosen by path. lambutter does not expose inode times, so `mtime` is 0;
//! label and UUID are read here from the primary superblock.

use crate::btrfs_subvol::{MAGIC, SUPER_OFFSET, SYS_CHUNK_ARRAY_MAX};
use crate::resolve::{Raw, Tree, display};
use crate::threaded::Threaded;
use crate::{DirEntry, Error, FileKind, Filesystem, FsType, Metadata, ReadDir, Result};
use guestkit_block::BlockSource;
use lambutter::{BlockRead, Btrfs, Path};
use std::sync::Arc;

struct Reader(Arc<dyn BlockSource>);

impl BlockRead for Reader {
    type Error = guestkit_block::Error;
    fn read_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read_at(offset_bytes, buf)
    }
}

struct B(Btrfs<Reader>);

fn err(path: &[String], e: lambutter::Error) -> Error {
    match e {
        lambutter::Error::NotFound => Error::NotFound(display(path)),
        other => Error::corrupt("btrfs", format!("{}: {other}", display(path))),
    }
}

fn bytes(path: &[String]) -> Vec<u8> {
    display(path).into_bytes()
}

/// Runs `f` with `path` as a lambutter path (always absolute, so never rejected).
fn with_path<T>(path: &[String], f: impl FnOnce(Path<'_>) -> Result<T>) -> Result<T> {
    let b = bytes(path);
    let p = Path::new(&b).ok_or_else(|| Error::InvalidPath(display(path)))?;
    f(p)
}

fn kind_of_mode(mode: u32) -> FileKind {
    match mode & 0o170000 {
        0o100000 => FileKind::File,
        0o040000 => FileKind::Dir,
        0o120000 => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

impl Raw for B {
    fn lstat(&mut self, path: &[String]) -> Result<Metadata> {
        let fs = &mut self.0;
        let inode = with_path(path, |p| fs.resolve(p).map_err(|e| err(path, e)))?;
        let m = fs.metadata(&inode).map_err(|e| err(path, e))?;
        Ok(Metadata {
            kind: kind_of_mode(m.mode),
            size: m.size,
            mode: m.mode & 0o7777,
            uid: m.uid,
            gid: m.gid,
            mtime: 0,
            nlink: m.nlink,
            inode: inode.objectid(),
        })
    }

    fn read_link(&mut self, path: &[String]) -> Result<String> {
        let fs = &mut self.0;
        let t = with_path(path, |p| fs.read_link(p).map_err(|e| err(path, e)))?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }

    fn read_dir(&mut self, path: &[String], limit: usize) -> Result<ReadDir> {
        let fs = &mut self.0;
        let all = with_path(path, |p| fs.read_dir(p).map_err(|e| err(path, e)))?;
        let mut out = ReadDir::default();
        for e in all {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            if name == "." || name == ".." {
                continue;
            }
            if out.entries.len() == limit {
                out.truncated = true;
                break;
            }
            // Directory item types: 1 file, 2 dir, 7 symlink.
            let kind = match e.kind_byte {
                1 => FileKind::File,
                2 => FileKind::Dir,
                7 => FileKind::Symlink,
                _ => FileKind::Other,
            };
            out.entries.push(DirEntry {
                name,
                kind,
                inode: e.inode_number,
            });
        }
        Ok(out)
    }

    fn read(&mut self, path: &[String], offset: u64, len: usize) -> Result<Vec<u8>> {
        let fs = &mut self.0;
        let inode = with_path(path, |p| fs.resolve(p).map_err(|e| err(path, e)))?;
        let mut buf = vec![0u8; len];
        let n = fs
            .read_file_at(&inode, offset, &mut buf)
            .map_err(|e| err(path, e))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Label and UUID from the primary superblock (fsid at 0x20, label at 0x12b).
fn ids(src: &dyn BlockSource) -> Result<(Option<String>, Option<String>)> {
    let mut sb = vec![0u8; 0x22b];
    src.read_at(SUPER_OFFSET, &mut sb)?;
    let u = &sb[0x20..0x30];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex(&u[0..4]),
        hex(&u[4..6]),
        hex(&u[6..8]),
        hex(&u[8..10]),
        hex(&u[10..16])
    );
    let raw = &sb[0x12b..0x22b];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let label = Some(String::from_utf8_lossy(&raw[..end]).into_owned()).filter(|l| !l.is_empty());
    Ok((label, Some(uuid)))
}

/// Where superblock copies live: the primary, and the mirrors at 64 MiB and 256 GiB.
const SUPER_COPIES: [u64; 3] = [SUPER_OFFSET, 0x400_0000, 0x40_0000_0000];

/// Rejects a superblock copy whose system chunk array claims more than the 2048 bytes it has:
/// lambutter 0.5 takes the claimed size as is and reads past the array, which panics.
fn check_sys_chunk_arrays(src: &dyn BlockSource) -> Result<()> {
    for at in SUPER_COPIES {
        let mut b = [0u8; 0xa4];
        if at.saturating_add(0x1000) > src.size() || src.read_at(at, &mut b).is_err() {
            continue;
        }
        if &b[0x40..0x48] != MAGIC {
            continue;
        }
        let size = u32::from_le_bytes([b[0xa0], b[0xa1], b[0xa2], b[0xa3]]);
        if size as usize > SYS_CHUNK_ARRAY_MAX {
            return Err(Error::corrupt(
                "btrfs",
                format!("superblock at {at}: a system chunk array of {size} bytes"),
            ));
        }
    }
    Ok(())
}

/// Opens the default subvolume, or with `subvolume` the subvolume at that path from the
/// top-level tree (e.g. `/@home`).
pub(crate) fn open(
    src: Arc<dyn BlockSource>,
    subvolume: Option<String>,
) -> Result<Box<dyn Filesystem>> {
    let (raw, (label, uuid)) = Threaded::spawn(move || {
        let size = src.size();
        check_sys_chunk_arrays(&*src)?;
        let reader = Reader(src.clone());
        let fs = match &subvolume {
            None => Btrfs::open(reader, size).map_err(|e| err(&[], e))?,
            Some(p) => {
                let p = Path::new(p.as_bytes()).ok_or_else(|| Error::InvalidPath(p.clone()))?;
                Btrfs::open_subvol_path(reader, size, p).map_err(|e| err(&[], e))?
            }
        };
        Ok((B(fs), ids(&*src)?))
    })?;
    Ok(Box::new(Tree {
        raw,
        fs_type: FsType::Btrfs,
        label,
        uuid,
    }))
}
