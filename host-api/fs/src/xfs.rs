//! XFS through the `lamxfs` crate (v4 and v5, log replay, CRC-checked), which resolves paths,
//! lists directories and reads extents. It does not expose owners, link counts or times, so
//! those few fields are read here from the inode core it located for us by number.

use crate::resolve::{Raw, Tree, display};
use crate::threaded::Threaded;
use crate::{DirEntry, Error, FileKind, Filesystem, FsType, Metadata, ReadDir, Result};
use guestkit_block::BlockSource;
use lamxfs::{BlockRead, EntryKind, Path, Xfs};
use std::sync::Arc;

struct Reader(Arc<dyn BlockSource>);

impl BlockRead for Reader {
    type Error = guestkit_block::Error;
    fn read_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read_at(offset_bytes, buf)
    }
}

/// Where inodes live: enough superblock geometry to turn an inode number into a byte offset.
struct Geometry {
    block_size: u64,
    ag_blocks: u64,
    inode_size: u64,
    inopb_log: u32,
    agblk_log: u32,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

impl Geometry {
    fn read(src: &dyn BlockSource) -> Result<Self> {
        let mut sb = [0u8; 256];
        src.read_at(0, &mut sb)?;
        let g = Geometry {
            block_size: u64::from(be32(&sb, 4)),
            ag_blocks: u64::from(be32(&sb, 84)),
            inode_size: u64::from(be16(&sb, 104)),
            inopb_log: u32::from(sb[123]),
            agblk_log: u32::from(sb[124]),
        };
        // lamxfs validated the superblock already; these only guard our own arithmetic.
        if g.inopb_log > 16 || g.agblk_log > 32 || !(256..=2048).contains(&g.inode_size) {
            return Err(Error::corrupt(
                "XFS superblock",
                "inode geometry out of range",
            ));
        }
        Ok(g)
    }

    fn inode_offset(&self, ino: u64) -> Option<u64> {
        let ag = ino.checked_shr(self.agblk_log + self.inopb_log)?;
        let agbno = (ino >> self.inopb_log) & ((1u64 << self.agblk_log) - 1);
        let index = ino & ((1u64 << self.inopb_log) - 1);
        ag.checked_mul(self.ag_blocks)?
            .checked_add(agbno)?
            .checked_mul(self.block_size)?
            .checked_add(index * self.inode_size)
    }
}

/// Owner, group, link count and mtime from an inode core.
struct CoreFields {
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: i64,
}

fn core_fields(src: &dyn BlockSource, geo: &Geometry, ino: u64) -> Result<CoreFields> {
    let at = geo
        .inode_offset(ino)
        .ok_or_else(|| Error::corrupt("XFS inode number", format!("{ino} is out of range")))?;
    let mut core = [0u8; 128];
    src.read_at(at, &mut core)?;
    if &core[0..2] != b"IN" {
        return Err(Error::corrupt(
            "XFS inode",
            format!("inode {ino} has no IN magic"),
        ));
    }
    let version = core[4];
    const BIGTIME: u64 = 1 << 3;
    let mtime = if version >= 3 && be64(&core, 120) & BIGTIME != 0 {
        // Nanoseconds since the old 32-bit epoch's minimum, 2^31 s before 1970.
        (be64(&core, 40) / 1_000_000_000) as i64 - (1i64 << 31)
    } else {
        i64::from(be32(&core, 40) as i32)
    };
    let nlink = if version >= 2 {
        be32(&core, 16)
    } else {
        u32::from(be16(&core, 6))
    };
    Ok(CoreFields {
        uid: be32(&core, 8),
        gid: be32(&core, 12),
        nlink,
        mtime,
    })
}

struct X {
    xfs: Xfs<Reader>,
    src: Arc<dyn BlockSource>,
    geo: Geometry,
}

fn err(path: &[String], e: lamxfs::Error) -> Error {
    match e {
        lamxfs::Error::NotFound { .. } => Error::NotFound(display(path)),
        lamxfs::Error::NotARegularFile => Error::NotAFile(display(path)),
        lamxfs::Error::NotASymlink => Error::NotASymlink(display(path)),
        other => Error::corrupt("XFS", format!("{}: {other}", display(path))),
    }
}

fn kind(k: EntryKind) -> FileKind {
    match k {
        EntryKind::Regular => FileKind::File,
        EntryKind::Directory => FileKind::Dir,
        EntryKind::Symlink => FileKind::Symlink,
        EntryKind::Other => FileKind::Other,
    }
}

fn bytes(path: &[String]) -> Vec<u8> {
    display(path).into_bytes()
}

impl Raw for X {
    fn lstat(&mut self, path: &[String]) -> Result<Metadata> {
        let p = bytes(path);
        let inode = self.xfs.resolve(Path::new(&p)).map_err(|e| err(path, e))?;
        let m = self.xfs.metadata(&inode).map_err(|e| err(path, e))?;
        let core = core_fields(&*self.src, &self.geo, inode.ino)?;
        let kind = if m.is_file() {
            FileKind::File
        } else if m.is_dir() {
            FileKind::Dir
        } else if m.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        };
        Ok(Metadata {
            kind,
            size: m.size(),
            mode: m.mode() & 0o7777,
            uid: core.uid,
            gid: core.gid,
            mtime: core.mtime,
            nlink: core.nlink,
            inode: inode.ino,
        })
    }

    fn read_link(&mut self, path: &[String]) -> Result<String> {
        let p = bytes(path);
        let t = self
            .xfs
            .read_link(Path::new(&p))
            .map_err(|e| err(path, e))?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }

    fn read_dir(&mut self, path: &[String], limit: usize) -> Result<ReadDir> {
        let p = bytes(path);
        let all = self.xfs.read_dir(Path::new(&p)).map_err(|e| err(path, e))?;
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
            out.entries.push(DirEntry {
                name,
                kind: kind(e.kind),
                inode: e.inode_number,
            });
        }
        Ok(out)
    }

    fn read(&mut self, path: &[String], offset: u64, len: usize) -> Result<Vec<u8>> {
        let p = bytes(path);
        let inode = self.xfs.resolve(Path::new(&p)).map_err(|e| err(path, e))?;
        let mut buf = vec![0u8; len];
        let n = self
            .xfs
            .read_file_at(&inode, offset, &mut buf)
            .map_err(|e| err(path, e))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Opens XFS on `src`.
pub(crate) fn open(src: Arc<dyn BlockSource>) -> Result<Box<dyn Filesystem>> {
    let (raw, (label, uuid)) = Threaded::spawn(move || {
        let xfs = Xfs::open(Reader(src.clone()), src.size()).map_err(|e| err(&[], e))?;
        let geo = Geometry::read(&*src)?;
        let label = xfs.label().map(str::to_owned);
        let u = xfs.uuid();
        let uuid = Some(format!(
            "{}-{}-{}-{}-{}",
            hex(&u[0..4]),
            hex(&u[4..6]),
            hex(&u[6..8]),
            hex(&u[8..10]),
            hex(&u[10..16])
        ));
        Ok((X { xfs, src, geo }, (label, uuid)))
    })?;
    Ok(Box::new(Tree {
        raw,
        fs_type: FsType::Xfs,
        label,
        uuid,
    }))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
