//! ext2/3/4 through the `ext4-view` crate (pure Rust, no `unsafe`, fuzzed upstream).
//!
//! ext4-view does not expose inode numbers or link counts; `Metadata::inode` and `nlink` are 0.

use crate::resolve::{Raw, Tree};
use crate::threaded::Threaded;
use crate::{DirEntry, Error, FileKind, Filesystem, FsType, Metadata, ReadDir, Result};
use ext4_view::{Ext4, Ext4Error, Ext4Read};
use guestkit_block::BlockSource;
use std::sync::Arc;

struct Reader(Arc<dyn BlockSource>);

impl Ext4Read for Reader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.0.read_at(start_byte, dst)?)
    }
}

struct Ext(Ext4);

fn to_path(path: &[String]) -> String {
    crate::resolve::display(path)
}

fn err(path: &[String], e: Ext4Error) -> Error {
    match e {
        Ext4Error::NotFound => Error::NotFound(to_path(path)),
        Ext4Error::NotADirectory => Error::NotADirectory(to_path(path)),
        Ext4Error::IsADirectory | Ext4Error::IsASpecialFile => Error::NotAFile(to_path(path)),
        Ext4Error::NotASymlink => Error::NotASymlink(to_path(path)),
        Ext4Error::Io(e) => Error::corrupt("ext4 device", format!("{}: {e}", to_path(path))),
        other => Error::corrupt("ext4", format!("{}: {other}", to_path(path))),
    }
}

fn kind(t: ext4_view::FileType) -> FileKind {
    if t.is_regular_file() {
        FileKind::File
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}

impl Raw for Ext {
    fn lstat(&mut self, path: &[String]) -> Result<Metadata> {
        let m = self
            .0
            .symlink_metadata(to_path(path).as_str())
            .map_err(|e| err(path, e))?;
        Ok(Metadata {
            kind: kind(m.file_type()),
            size: m.len(),
            mode: u32::from(m.mode() & 0o7777),
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.modified().seconds(),
            nlink: 0,
            inode: 0,
        })
    }

    fn read_link(&mut self, path: &[String]) -> Result<String> {
        let t = self
            .0
            .read_link(to_path(path).as_str())
            .map_err(|e| err(path, e))?;
        Ok(String::from_utf8_lossy(t.as_ref()).into_owned())
    }

    fn read_dir(&mut self, path: &[String], limit: usize) -> Result<ReadDir> {
        let mut out = ReadDir::default();
        for entry in self
            .0
            .read_dir(to_path(path).as_str())
            .map_err(|e| err(path, e))?
        {
            let entry = entry.map_err(|e| err(path, e))?;
            let name = String::from_utf8_lossy(entry.file_name().as_ref()).into_owned();
            if name == "." || name == ".." {
                continue;
            }
            if out.entries.len() == limit {
                out.truncated = true;
                break;
            }
            let kind = kind(entry.file_type().map_err(|e| err(path, e))?);
            out.entries.push(DirEntry {
                name,
                kind,
                inode: 0,
            });
        }
        Ok(out)
    }

    fn read(&mut self, path: &[String], offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut file = self
            .0
            .open(to_path(path).as_str())
            .map_err(|e| err(path, e))?;
        file.seek_to(offset).map_err(|e| err(path, e))?;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = file.read_bytes(&mut buf[got..]).map_err(|e| err(path, e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }
}

/// Opens ext2/3/4 on `src`.
pub(crate) fn open(src: Arc<dyn BlockSource>, fs_type: FsType) -> Result<Box<dyn Filesystem>> {
    let (raw, (label, uuid)) = Threaded::spawn(move || {
        let fs = Ext4::load(Box::new(Reader(src))).map_err(|e| err(&[], e))?;
        let label = fs
            .label()
            .to_str()
            .ok()
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        let uuid = Some(fs.uuid().to_string());
        Ok((Ext(fs), (label, uuid)))
    })?;
    Ok(Box::new(Tree {
        raw,
        fs_type,
        label,
        uuid,
    }))
}
