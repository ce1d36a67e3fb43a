//! NTFS through the `ntfs` crate, over a buffered [`Cursor`].
//!
//! Symlinks are read in the Interix form ntfs-3g writes (a system file whose data is
//! `IntxLNK\x01` + UTF-16LE target). NTFS has no Unix owners: uid/gid are 0 and mode is
//! synthesised (0o755 directories, 0o644 files, 0o777 symlinks).

use crate::io::Cursor;
use crate::resolve::{Raw, Tree, display};
use crate::threaded::Threaded;
use crate::{
    DirEntry, Error, FileKind, Filesystem, FsType, MAX_LINK_TARGET, Metadata, ReadDir, Result,
};
use guestkit_block::BlockSource;
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::{NtfsFileNamespace, NtfsStandardInformation};
use ntfs::{Ntfs, NtfsFile};
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// Index entries visited per listing at most: a corrupt index can loop.
const MAX_DIR_ENTRIES: usize = 1 << 20;
const INTERIX_MAGIC: &[u8; 8] = b"IntxLNK\x01";
const ATTR_SYSTEM: u32 = 0x4;

struct Nt {
    ntfs: Ntfs,
    io: Cursor,
}

fn err(path: &[String], e: ntfs::NtfsError) -> Error {
    Error::corrupt("NTFS", format!("{}: {e}", display(path)))
}

/// Seconds since the Unix epoch of an NT timestamp (100 ns units since 1601).
fn unix_time(nt: u64) -> i64 {
    (nt / 10_000_000) as i64 - 11_644_473_600
}

/// The file at canonical `path`, looked up from the root through the directory indexes.
fn file_at<'n>(ntfs: &'n Ntfs, io: &mut Cursor, path: &[String]) -> Result<NtfsFile<'n>> {
    {
        let mut file = ntfs.root_directory(io).map_err(|e| err(path, e))?;
        for (i, name) in path.iter().enumerate() {
            let here = &path[..=i];
            if !file.is_directory() {
                return Err(Error::NotADirectory(display(&path[..i])));
            }
            let index = file.directory_index(io).map_err(|e| err(here, e))?;
            let mut finder = index.finder();
            let entry = NtfsFileNameIndex::find(&mut finder, ntfs, io, name)
                .ok_or_else(|| Error::NotFound(display(here)))?
                .map_err(|e| err(here, e))?;
            file = entry.to_file(ntfs, io).map_err(|e| err(here, e))?;
        }
        Ok(file)
    }
}

/// The Interix symlink target of `file`, if it is one.
fn interix_target(file: &NtfsFile<'_>, io: &mut Cursor, path: &[String]) -> Result<Option<String>> {
    let info: NtfsStandardInformation = file.info().map_err(|e| err(path, e))?;
    if info.file_attributes().bits() & ATTR_SYSTEM == 0 || file.is_directory() {
        return Ok(None);
    }
    let Some(item) = file.data(io, "") else {
        return Ok(None);
    };
    let item = item.map_err(|e| err(path, e))?;
    let attr = item.to_attribute().map_err(|e| err(path, e))?;
    let value = attr.value(io).map_err(|e| err(path, e))?;
    let len = value.len();
    if len < 8 || len > (8 + 2 * MAX_LINK_TARGET) as u64 || len % 2 != 0 {
        return Ok(None);
    }
    let mut buf = vec![0u8; len as usize];
    value
        .attach(io)
        .read_exact(&mut buf)
        .map_err(|e| Error::corrupt("NTFS", format!("{}: {e}", display(path))))?;
    if &buf[..8] != INTERIX_MAGIC {
        return Ok(None);
    }
    let units: Vec<u16> = buf[8..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(Some(String::from_utf16_lossy(&units)))
}

fn data_len(file: &NtfsFile<'_>, io: &mut Cursor, path: &[String]) -> Result<u64> {
    match file.data(io, "") {
        None => Ok(0),
        Some(item) => {
            let item = item.map_err(|e| err(path, e))?;
            let attr = item.to_attribute().map_err(|e| err(path, e))?;
            Ok(attr.value_length())
        }
    }
}

impl Raw for Nt {
    fn lstat(&mut self, path: &[String]) -> Result<Metadata> {
        let Nt { ntfs, io } = self;
        let file = file_at(ntfs, io, path)?;
        let info = file.info().map_err(|e| err(path, e))?;
        let mtime = unix_time(info.modification_time().nt_timestamp());
        let inode = file.file_record_number();
        let nlink = u32::from(file.hard_link_count());
        if file.is_directory() {
            return Ok(Metadata {
                kind: FileKind::Dir,
                size: 0,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime,
                nlink,
                inode,
            });
        }
        if let Some(target) = interix_target(&file, io, path)? {
            return Ok(Metadata {
                kind: FileKind::Symlink,
                size: target.len() as u64,
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime,
                nlink,
                inode,
            });
        }
        let size = data_len(&file, io, path)?;
        Ok(Metadata {
            kind: FileKind::File,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
            nlink,
            inode,
        })
    }

    fn read_link(&mut self, path: &[String]) -> Result<String> {
        let Nt { ntfs, io } = self;
        let file = file_at(ntfs, io, path)?;
        interix_target(&file, io, path)?.ok_or_else(|| Error::NotASymlink(display(path)))
    }

    fn read_dir(&mut self, path: &[String], limit: usize) -> Result<ReadDir> {
        let Nt { ntfs, io } = self;
        let ntfs = &*ntfs;
        let dir = file_at(ntfs, io, path)?;
        let index = dir.directory_index(io).map_err(|e| err(path, e))?;
        let mut entries = index.entries();
        let mut out = ReadDir::default();
        let mut visited = 0usize;
        while let Some(entry) = entries.next(io) {
            visited += 1;
            if visited > MAX_DIR_ENTRIES {
                return Err(Error::Limit(format!(
                    "{}: more than {MAX_DIR_ENTRIES} index entries",
                    display(path)
                )));
            }
            let entry = entry.map_err(|e| err(path, e))?;
            let Some(key) = entry.key() else { continue };
            let key = key.map_err(|e| err(path, e))?;
            // Short 8.3 aliases are a second name of the same file, not an entry of their own.
            if key.namespace() == NtfsFileNamespace::Dos {
                continue;
            }
            let name = key.name().to_string_lossy();
            if name == "." || name == ".." {
                continue;
            }
            if out.entries.len() == limit {
                out.truncated = true;
                break;
            }
            let inode = entry.file_reference().file_record_number();
            let kind = if key.is_directory() {
                FileKind::Dir
            } else if key.file_attributes().bits() & ATTR_SYSTEM != 0 {
                let file = entry.to_file(ntfs, io).map_err(|e| err(path, e))?;
                if interix_target(&file, io, path)?.is_some() {
                    FileKind::Symlink
                } else {
                    FileKind::File
                }
            } else {
                FileKind::File
            };
            out.entries.push(DirEntry { name, kind, inode });
        }
        Ok(out)
    }

    fn read(&mut self, path: &[String], offset: u64, len: usize) -> Result<Vec<u8>> {
        let Nt { ntfs, io } = self;
        let file = file_at(ntfs, io, path)?;
        let Some(item) = file.data(io, "") else {
            return Ok(Vec::new());
        };
        let item = item.map_err(|e| err(path, e))?;
        let attr = item.to_attribute().map_err(|e| err(path, e))?;
        let value = attr.value(io).map_err(|e| err(path, e))?;
        let mut reader = value.attach(io);
        let io_err = |e: std::io::Error| Error::corrupt("NTFS", format!("{}: {e}", display(path)));
        reader.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        let mut buf = Vec::with_capacity(len);
        reader
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(io_err)?;
        Ok(buf)
    }
}

/// Opens NTFS on `src`.
pub(crate) fn open(src: Arc<dyn BlockSource>) -> Result<Box<dyn Filesystem>> {
    let (raw, (label, uuid)) = Threaded::spawn(move || {
        let mut io = Cursor::new(src);
        let mut ntfs = Ntfs::new(&mut io).map_err(|e| err(&[], e))?;
        ntfs.read_upcase_table(&mut io).map_err(|e| err(&[], e))?;
        let label = match ntfs.volume_name(&mut io) {
            Some(Ok(name)) => Some(name.name().to_string_lossy()).filter(|l| !l.is_empty()),
            _ => None,
        };
        // blkid prints the 64-bit serial as 16 upper-case hex digits.
        let uuid = Some(format!("{:016X}", ntfs.serial_number()));
        Ok((Nt { ntfs, io }, (label, uuid)))
    })?;
    Ok(Box::new(Tree {
        raw,
        fs_type: FsType::Ntfs,
        label,
        uuid,
    }))
}
