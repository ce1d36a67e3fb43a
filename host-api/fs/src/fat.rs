//! FAT12/16/32 through the `fatfs` crate, read-only: its I/O is a [`Cursor`] whose writes fail.
//!
//! FAT has no owners, modes, links or inode numbers: mode is synthesised (0o755 for
//! directories, 0o644 for files, 0o444 when read-only), uid/gid/inode are 0 and nlink is 1.

use crate::io::Cursor;
use crate::resolve::{Raw, Tree, display};
use crate::threaded::Threaded;
use crate::{DirEntry, Error, FileKind, Filesystem, FsType, Metadata, ReadDir, Result};
use fatfs::{FileSystem, FsOptions};
use guestkit_block::BlockSource;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// The upper half of code page 850, mtools' default for short names; fatfs alone would turn
/// every non-ASCII byte of an 8.3 name into U+FFFD.
const CP850_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈıÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}";

/// Decodes 8.3 names with [`CP850_HIGH`]; we never encode, the image is read-only.
#[derive(Debug)]
struct Cp850;

impl fatfs::OemCpConverter for Cp850 {
    fn decode(&self, oem_char: u8) -> char {
        match oem_char {
            0..=0x7F => char::from(oem_char),
            _ => CP850_HIGH
                .chars()
                .nth(usize::from(oem_char - 0x80))
                .unwrap_or('\u{FFFD}'),
        }
    }
    fn encode(&self, uni_char: char) -> Option<u8> {
        if uni_char.is_ascii() {
            return Some(uni_char as u8);
        }
        CP850_HIGH
            .chars()
            .position(|c| c == uni_char)
            .and_then(|i| u8::try_from(i + 0x80).ok())
    }
}

static CP850: Cp850 = Cp850;

/// fatfs applies the "lower-case base/extension" flags of an 8.3 name to ASCII letters only.
/// When one part of a name has only lower-case ASCII letters but an upper-case non-ASCII one,
/// it was such a name: lower-case that part entirely, as Linux does.
fn fix_short_case(name: String) -> String {
    fn part(p: &str) -> String {
        let has_lower_ascii = p.chars().any(|c| c.is_ascii_lowercase());
        let has_upper_ascii = p.chars().any(|c| c.is_ascii_uppercase());
        let has_upper_other = p.chars().any(|c| !c.is_ascii() && c.is_uppercase());
        if has_lower_ascii && !has_upper_ascii && has_upper_other {
            p.to_lowercase()
        } else {
            p.to_owned()
        }
    }
    match name.rsplit_once('.') {
        Some((base, ext)) => format!("{}.{}", part(base), part(ext)),
        None => part(&name),
    }
}

/// Directory entries scanned per lookup at most: the FAT spec caps a directory at 65536 entries
/// (2 MiB), and a corrupt cluster chain can loop forever.
const MAX_DIR_ENTRIES: usize = 1 << 16;

struct Fat(FileSystem<Cursor>);

type FatDir<'a> = fatfs::Dir<'a, Cursor>;

fn io_err(path: &[String], e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(display(path)),
        _ => Error::corrupt("FAT", format!("{}: {e}", display(path))),
    }
}

/// Seconds since the epoch of a FAT local timestamp, read as UTC.
fn unix_time(dt: fatfs::DateTime) -> i64 {
    // Days from civil, after Howard Hinnant's algorithm.
    let (y, m, d) = (
        i64::from(dt.date.year),
        i64::from(dt.date.month),
        i64::from(dt.date.day),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    days * 86400
        + i64::from(dt.time.hour) * 3600
        + i64::from(dt.time.min) * 60
        + i64::from(dt.time.sec)
}

fn meta_of(e: &fatfs::DirEntry<'_, Cursor>) -> Metadata {
    let dir = e.is_dir();
    let ro = e.attributes().contains(fatfs::FileAttributes::READ_ONLY);
    Metadata {
        kind: if dir { FileKind::Dir } else { FileKind::File },
        size: if dir { 0 } else { e.len() },
        mode: match (dir, ro) {
            (true, _) => 0o755,
            (false, true) => 0o444,
            (false, false) => 0o644,
        },
        uid: 0,
        gid: 0,
        mtime: unix_time(e.modified()),
        nlink: 1,
        inode: 0,
    }
}

/// The entry called `name` in `dir`. FAT names compare case-insensitively; an exact match wins.
/// fatfs' own path lookup is not used: it scans without bound, and a looping chain never ends.
fn find<'a>(dir: &FatDir<'a>, name: &str, path: &[String]) -> Result<fatfs::DirEntry<'a, Cursor>> {
    let mut fallback = None;
    let lower = name.to_lowercase();
    for e in dir.iter().take(MAX_DIR_ENTRIES) {
        let e = e.map_err(|e| io_err(path, e))?;
        let n = fix_short_case(e.file_name());
        if n == name {
            return Ok(e);
        }
        if fallback.is_none() && n.to_lowercase() == lower {
            fallback = Some(e);
        }
    }
    fallback.ok_or_else(|| Error::NotFound(display(path)))
}

impl Fat {
    fn dir<'a>(&'a self, path: &[String]) -> Result<FatDir<'a>> {
        let mut dir = self.0.root_dir();
        for i in 0..path.len() {
            let e = find(&dir, &path[i], &path[..=i])?;
            if !e.is_dir() {
                return Err(Error::NotADirectory(display(&path[..=i])));
            }
            dir = e.to_dir();
        }
        Ok(dir)
    }

    /// The entry named by `path` in its parent.
    fn entry<'a>(&'a self, path: &[String]) -> Result<fatfs::DirEntry<'a, Cursor>> {
        let (name, parent) = path
            .split_last()
            .ok_or_else(|| Error::NotFound("/".into()))?;
        find(&self.dir(parent)?, name, path)
    }
}

impl Raw for Fat {
    fn lstat(&mut self, path: &[String]) -> Result<Metadata> {
        if path.is_empty() {
            return Ok(Metadata {
                kind: FileKind::Dir,
                size: 0,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                nlink: 1,
                inode: 0,
            });
        }
        Ok(meta_of(&self.entry(path)?))
    }

    fn read_link(&mut self, path: &[String]) -> Result<String> {
        Err(Error::NotASymlink(display(path)))
    }

    fn read_dir(&mut self, path: &[String], limit: usize) -> Result<ReadDir> {
        let mut out = ReadDir::default();
        for e in self.dir(path)?.iter().take(MAX_DIR_ENTRIES) {
            let e = e.map_err(|e| io_err(path, e))?;
            let name = fix_short_case(e.file_name());
            if name == "." || name == ".." {
                continue;
            }
            if out.entries.len() == limit {
                out.truncated = true;
                break;
            }
            let kind = if e.is_dir() {
                FileKind::Dir
            } else {
                FileKind::File
            };
            out.entries.push(DirEntry {
                name,
                kind,
                inode: 0,
            });
        }
        Ok(out)
    }

    fn read(&mut self, path: &[String], offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut file = self.entry(path)?.to_file();
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err(path, e))?;
        let mut buf = Vec::with_capacity(len);
        file.take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(path, e))?;
        Ok(buf)
    }
}

/// Blkid prints a FAT volume id as two groups of four upper-case hex digits.
fn volume_id(id: u32) -> String {
    format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)
}

/// Opens FAT12/16/32 on `src`.
pub(crate) fn open(src: Arc<dyn BlockSource>, fs_type: FsType) -> Result<Box<dyn Filesystem>> {
    let (raw, (label, uuid)) = Threaded::spawn(move || {
        let options = FsOptions::new()
            .update_accessed_date(false)
            .oem_cp_converter(&CP850);
        let fs = FileSystem::new(Cursor::new(src), options).map_err(|e| io_err(&[], e))?;
        // blkid prefers the label in the root directory to the boot sector's copy.
        let label = match fs.read_volume_label_from_root_dir() {
            Ok(Some(l)) => Some(l),
            _ => Some(fs.volume_label()),
        }
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.is_empty() && l != "NO NAME");
        let uuid = Some(volume_id(fs.volume_id()));
        Ok((Fat(fs), (label, uuid)))
    })?;
    Ok(Box::new(Tree {
        raw,
        fs_type,
        label,
        uuid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_name_case_flags_reach_non_ascii_letters() {
        assert_eq!(fix_short_case("cafÉ.txt".into()), "café.txt");
        assert_eq!(fix_short_case("Café.txt".into()), "Café.txt");
        assert_eq!(fix_short_case("README.TXT".into()), "README.TXT");
    }

    #[test]
    fn cp850_round_trips_its_upper_half() {
        use fatfs::OemCpConverter;
        assert_eq!(CP850_HIGH.chars().count(), 128);
        for b in 0x80..=0xFFu8 {
            let c = Cp850.decode(b);
            assert_eq!(Cp850.encode(c), Some(b), "{b:#x}");
        }
        assert_eq!(Cp850.decode(0x90), 'É');
    }

    #[test]
    fn fat_times_are_civil_utc() {
        let dt = fatfs::DateTime {
            date: fatfs::Date {
                year: 2024,
                month: 1,
                day: 2,
            },
            time: fatfs::Time {
                hour: 3,
                min: 4,
                sec: 4,
                millis: 0,
            },
        };
        assert_eq!(unix_time(dt), 1_704_164_644);
    }

    #[test]
    fn volume_id_prints_like_blkid() {
        assert_eq!(volume_id(0x1234_AB12), "1234-AB12");
    }
}
