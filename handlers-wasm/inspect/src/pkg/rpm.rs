//! rpm header blobs, as rpm stores them in its database (no lead, no header magic): an index
//! of (tag, type, offset, count) entries over a data store. Bounds follow rpm's own
//! `headerImport` checks.

use super::{Application, Listing, MAX_PACKAGES, bdb, sqlite, text};
use crate::read_at::ReadAt;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_SUMMARY: u32 = 1004;
const TAG_URL: u32 = 1020;
const TAG_ARCH: u32 = 1022;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's own limits on a header's index length and data size.
const MAX_INDEX: usize = 0xffff;
const MAX_DATA: usize = 256 << 20;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A parsed header: its index and data store.
pub struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

impl<'a> Header<'a> {
    /// Checks the blob's framing.
    pub fn parse(blob: &'a [u8]) -> Result<Self, String> {
        let il = be32(blob, 0).ok_or("header too short")? as usize;
        let dl = be32(blob, 4).ok_or("header too short")? as usize;
        if il == 0 || il > MAX_INDEX || dl > MAX_DATA {
            return Err(format!("header sizes out of range (index {il}, data {dl})"));
        }
        let index_end = 8 + il * 16;
        let end = index_end + dl;
        if blob.len() < end {
            return Err(format!(
                "header of {} bytes, framing says {end}",
                blob.len()
            ));
        }
        Ok(Header {
            index: &blob[8..index_end],
            data: &blob[index_end..end],
        })
    }

    fn entry(&self, tag: u32) -> Option<(u32, usize, u32)> {
        self.index.chunks_exact(16).find_map(|e| {
            (be32(e, 0)? == tag).then(|| Some((be32(e, 4)?, be32(e, 8)? as usize, be32(e, 12)?)))?
        })
    }

    /// A string tag (the first string of an array or i18n table).
    pub fn string(&self, tag: u32) -> Option<String> {
        let (ty, offset, _) = self.entry(tag)?;
        if !matches!(ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return None;
        }
        let rest = self.data.get(offset..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(text(&rest[..end]))
    }

    /// The first value of an INT32 tag.
    pub fn int32(&self, tag: u32) -> Option<u32> {
        let (ty, offset, count) = self.entry(tag)?;
        (ty == TYPE_INT32 && count >= 1).then(|| be32(self.data, offset))?
    }

    /// The application this header describes.
    pub fn application(&self) -> Result<Application, String> {
        let name = self.string(TAG_NAME).ok_or("header has no name")?;
        Ok(Application {
            name,
            epoch: self.int32(TAG_EPOCH).unwrap_or(0),
            version: self.string(TAG_VERSION).unwrap_or_default(),
            release: self.string(TAG_RELEASE).unwrap_or_default(),
            // gpg-pubkey pseudo-packages have no arch; rpm prints "(none)".
            arch: self.string(TAG_ARCH).unwrap_or_default(),
            summary: self.string(TAG_SUMMARY).unwrap_or_default(),
            url: self.string(TAG_URL).unwrap_or_default(),
            ..Application::default()
        })
    }
}

fn push(out: &mut Listing, what: &str, blob: &[u8]) {
    if out.applications.len() >= MAX_PACKAGES {
        out.warnings
            .push(format!("{what}: too many packages; list cut"));
        return;
    }
    match Header::parse(blob).and_then(|h| h.application()) {
        Ok(app) => out.applications.push(app),
        Err(e) => out.warnings.push(format!("{what}: {e}")),
    }
}

/// Every package in an `rpmdb.sqlite`.
pub fn read_sqlite<R: ReadAt + ?Sized>(file: &R) -> Listing {
    let mut out = Listing::default();
    let db = match sqlite::Database::open(file) {
        Ok(db) => db,
        Err(e) => {
            out.warnings.push(format!("rpmdb.sqlite: {e}"));
            return out;
        }
    };
    let root = match db.table_root("Packages") {
        Ok(root) => root,
        Err(e) => {
            out.warnings.push(format!("rpmdb.sqlite: {e}"));
            return out;
        }
    };
    let rows = db.scan(root);
    for w in rows.warnings {
        out.warnings.push(format!("rpmdb.sqlite: {w}"));
    }
    for (hnum, cols) in rows.rows {
        match cols.get(1) {
            Some(sqlite::Value::Blob(blob)) => {
                push(&mut out, &format!("rpmdb.sqlite header {hnum}"), blob)
            }
            _ => out
                .warnings
                .push(format!("rpmdb.sqlite: row {hnum} has no header blob")),
        }
    }
    out
}

/// Every package in a Berkeley DB `Packages` file.
pub fn read_bdb<R: ReadAt + ?Sized>(file: &R) -> Listing {
    let mut out = Listing::default();
    let pairs = match bdb::read_hash(file) {
        Ok(p) => p,
        Err(e) => {
            out.warnings.push(format!("Packages: {e}"));
            return out;
        }
    };
    let big = bdb::keys_big_endian(file);
    for w in pairs.warnings {
        out.warnings.push(format!("Packages: {w}"));
    }
    let mut records: Vec<(u32, Vec<u8>)> = Vec::new();
    for (key, data) in pairs.pairs {
        let Ok(k) = <[u8; 4]>::try_from(key.as_slice()) else {
            out.warnings
                .push(format!("Packages: a key of {} bytes", key.len()));
            continue;
        };
        let hnum = if big {
            u32::from_be_bytes(k)
        } else {
            u32::from_le_bytes(k)
        };
        // Record 0 holds rpm's next-instance counter, not a header.
        if hnum != 0 {
            records.push((hnum, data));
        }
    }
    records.sort_by_key(|(h, _)| *h);
    for (hnum, blob) in records {
        push(&mut out, &format!("Packages header {hnum}"), &blob);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, value) in entries {
            while *ty == TYPE_INT32 && data.len() % 4 != 0 {
                data.push(0);
            }
            for v in [*tag, *ty, data.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(value);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    #[test]
    fn header_fields_and_damage() {
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, b"bash\0"),
            (TAG_EPOCH, TYPE_INT32, &2u32.to_be_bytes()),
            (TAG_VERSION, TYPE_STRING, b"5.2\0"),
            (TAG_SUMMARY, TYPE_I18NSTRING, b"The shell\0"),
        ]);
        let app = Header::parse(&b).unwrap().application().unwrap();
        assert_eq!(
            (app.name.as_str(), app.epoch, app.version.as_str()),
            ("bash", 2, "5.2")
        );
        assert_eq!(app.summary, "The shell");
        for i in 0..b.len() {
            for x in [0u8, 0xff, 0x80] {
                let mut d = b.clone();
                d[i] = x;
                let _ = Header::parse(&d).and_then(|h| h.application());
                let _ = Header::parse(&d[..i]).and_then(|h| h.application());
            }
        }
    }
}
