//! A read-only reader of one table of an SQLite 3 database file: enough to list the header
//! blobs of rpm's `rpmdb.sqlite` (`Packages(hnum INTEGER PRIMARY KEY, blob BLOB)`).
//!
//! Written by hand because the pure-Rust SQLite engines are whole databases (with their own
//! I/O layers, threads and `unsafe`) rather than readers of untrusted bytes that build for
//! wasm32-wasip2; rpm needs only a walk of one table b-tree, which the file format documents
//! completely. Every page number, length and depth is checked, every page is visited at most
//! once, and a damaged subtree becomes a warning while the rest of the table is still read.

use crate::read_at::ReadAt;
use std::collections::HashSet;

const MAX_DEPTH: usize = 32;
/// Largest record we accept (a big rpm header is a few MiB).
const MAX_PAYLOAD: u64 = 64 << 20;

/// A column value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// An opened database file.
pub struct Database<'a, R: ReadAt + ?Sized> {
    file: &'a R,
    page_size: u64,
    usable: u64,
    page_count: u64,
}

/// The rows read, and what could not be read.
#[derive(Debug, Default)]
pub struct Rows {
    pub rows: Vec<(i64, Vec<Value>)>,
    pub warnings: Vec<String>,
}

fn varint(data: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let b = *data.get(*pos)?;
        *pos += 1;
        if i == 8 {
            v = (v << 8) | u64::from(b);
            return Some(v as i64);
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some(v as i64);
        }
    }
    Some(v as i64)
}

fn be(data: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

impl<'a, R: ReadAt + ?Sized> Database<'a, R> {
    /// Checks the 100-byte header.
    pub fn open(file: &'a R) -> Result<Self, String> {
        let header = file
            .read_at(0, 100)
            .map_err(|e| format!("sqlite header: {e}"))?;
        if &header[..16] != b"SQLite format 3\0" {
            return Err("not an SQLite 3 database".into());
        }
        let raw = be(&header, 16, 2).unwrap_or(0);
        let page_size = if raw == 1 { 65536 } else { raw };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!("bad page size {page_size}"));
        }
        let reserved = u64::from(header[20]);
        let usable = page_size - reserved;
        if usable < 480 {
            return Err(format!("bad reserved space {reserved}"));
        }
        // The in-header page count is valid only if the change counter matches.
        let by_size = file.size() / page_size;
        let in_header = be(&header, 28, 4).unwrap_or(0);
        let valid = be(&header, 24, 4) == be(&header, 92, 4);
        let page_count = if valid && in_header > 0 {
            in_header.min(by_size)
        } else {
            by_size
        };
        Ok(Database {
            file,
            page_size,
            usable,
            page_count,
        })
    }

    /// True when the header says the database is in WAL mode (its latest changes may be in
    /// the `-wal` file beside it).
    pub fn wal_mode(&self) -> bool {
        self.file
            .read_at(18, 2)
            .map(|b| b == [2, 2])
            .unwrap_or(false)
    }

    fn page(&self, n: u64) -> Result<Vec<u8>, String> {
        if n == 0 || n > self.page_count {
            return Err(format!("page {n} out of range (1..={})", self.page_count));
        }
        self.file
            .read_at((n - 1) * self.page_size, self.page_size as usize)
    }

    /// Root page of table `name`, from the schema table on page 1.
    pub fn table_root(&self, name: &str) -> Result<u64, String> {
        let schema = self.scan(1);
        for (_, cols) in &schema.rows {
            let text = |i: usize| match cols.get(i) {
                Some(Value::Text(t)) => Some(t.as_slice()),
                _ => None,
            };
            if text(0) == Some(b"table")
                && text(1).is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
                && let Some(Value::Int(root)) = cols.get(3)
            {
                return u64::try_from(*root).map_err(|_| "bad root page".to_string());
            }
        }
        match schema.warnings.first() {
            Some(w) => Err(format!("table {name} not found ({w})")),
            None => Err(format!("table {name} not found")),
        }
    }

    /// Every row of the table b-tree rooted at `root`, in rowid order.
    pub fn scan(&self, root: u64) -> Rows {
        let mut rows = Rows::default();
        let mut seen = HashSet::new();
        self.walk(root, 0, &mut seen, &mut rows);
        rows
    }

    fn walk(&self, n: u64, depth: usize, seen: &mut HashSet<u64>, out: &mut Rows) {
        if depth > MAX_DEPTH {
            out.warnings
                .push(format!("b-tree deeper than {MAX_DEPTH} at page {n}"));
            return;
        }
        if !seen.insert(n) {
            out.warnings.push(format!("page {n} reached twice (loop)"));
            return;
        }
        let page = match self.page(n) {
            Ok(p) => p,
            Err(e) => return out.warnings.push(e),
        };
        let base = if n == 1 { 100 } else { 0 };
        let Some(kind) = page.get(base).copied() else {
            return out.warnings.push(format!("page {n} too short"));
        };
        let cells = be(&page, base + 3, 2).unwrap_or(0) as usize;
        let (header_len, interior) = match kind {
            0x0d => (8, false),
            0x05 => (12, true),
            other => {
                return out.warnings.push(format!(
                    "page {n}: not a table b-tree page (type {other:#x})"
                ));
            }
        };
        for i in 0..cells {
            let Some(ptr) = be(&page, base + header_len + 2 * i, 2) else {
                out.warnings
                    .push(format!("page {n}: cell pointer {i} past the page"));
                break;
            };
            let ptr = ptr as usize;
            if interior {
                match be(&page, ptr, 4) {
                    Some(child) => self.walk(child, depth + 1, seen, out),
                    None => out
                        .warnings
                        .push(format!("page {n}: cell {i} past the page")),
                }
            } else if let Err(e) = self.leaf_cell(&page, ptr, out) {
                out.warnings.push(format!("page {n} cell {i}: {e}"));
            }
        }
        if interior {
            match be(&page, base + 8, 4) {
                Some(right) => self.walk(right, depth + 1, seen, out),
                None => out.warnings.push(format!("page {n}: no right pointer")),
            }
        }
    }

    fn leaf_cell(&self, page: &[u8], ptr: usize, out: &mut Rows) -> Result<(), String> {
        let mut pos = ptr;
        let size = varint(page, &mut pos).ok_or("truncated payload size")?;
        let rowid = varint(page, &mut pos).ok_or("truncated rowid")?;
        let size = u64::try_from(size).map_err(|_| "negative payload size")?;
        if size > MAX_PAYLOAD {
            return Err(format!("payload of {size} bytes is over the limit"));
        }
        let u = self.usable;
        let x = u - 35;
        let local = if size <= x {
            size
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + (size - m) % (u - 4);
            if k <= x { k } else { m }
        };
        let local_end = pos.checked_add(local as usize).ok_or("bad cell")?;
        let mut payload = page
            .get(pos..local_end)
            .ok_or("cell past the page")?
            .to_vec();
        if local < size {
            let mut next = be(page, local_end, 4).ok_or("overflow pointer past the page")?;
            let mut seen = HashSet::new();
            while (payload.len() as u64) < size {
                if next == 0 || !seen.insert(next) {
                    return Err("broken overflow chain".into());
                }
                let ov = self.page(next)?;
                next = be(&ov, 0, 4).ok_or("short overflow page")?;
                let take = ((size - payload.len() as u64) as usize).min(u as usize - 4);
                payload.extend_from_slice(ov.get(4..4 + take).ok_or("short overflow page")?);
            }
        }
        out.rows.push((rowid, record(&payload)?));
        Ok(())
    }
}

/// Decodes a record (header of serial types, then the values).
pub fn record(payload: &[u8]) -> Result<Vec<Value>, String> {
    let mut pos = 0;
    let header_len = varint(payload, &mut pos).ok_or("truncated record header")?;
    let header_len = usize::try_from(header_len).map_err(|_| "bad record header")?;
    if header_len > payload.len() {
        return Err("record header past the payload".into());
    }
    let mut types = Vec::new();
    while pos < header_len {
        types.push(varint(&payload[..header_len], &mut pos).ok_or("truncated serial type")?);
    }
    let mut body = header_len;
    let mut values = Vec::with_capacity(types.len());
    for t in types {
        let int = |n: usize, body: usize| -> Result<i64, String> {
            let bytes = payload.get(body..body + n).ok_or("value past the record")?;
            let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                -1
            } else {
                0
            };
            for b in bytes {
                v = (v << 8) | i64::from(*b);
            }
            Ok(v)
        };
        let (value, len) = match t {
            0 => (Value::Null, 0),
            1 => (Value::Int(int(1, body)?), 1),
            2 => (Value::Int(int(2, body)?), 2),
            3 => (Value::Int(int(3, body)?), 3),
            4 => (Value::Int(int(4, body)?), 4),
            5 => (Value::Int(int(6, body)?), 6),
            6 => (Value::Int(int(8, body)?), 8),
            7 => (Value::Float(f64::from_bits(int(8, body)? as u64)), 8),
            8 => (Value::Int(0), 0),
            9 => (Value::Int(1), 0),
            t if t >= 12 => {
                let n = usize::try_from((t - 12) / 2).map_err(|_| "bad length")?;
                let end = body.checked_add(n).ok_or("bad length")?;
                let bytes = payload
                    .get(body..end)
                    .ok_or("value past the record")?
                    .to_vec();
                (
                    if t % 2 == 0 {
                        Value::Blob(bytes)
                    } else {
                        Value::Text(bytes)
                    },
                    n,
                )
            }
            other => return Err(format!("reserved serial type {other}")),
        };
        body += len;
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut data = b"SQLite format 3\0".to_vec();
        data.resize(4096, 0xff);
        data[16] = 0x10;
        data[17] = 0x00;
        data[20] = 0;
        let db = Database::open(data.as_slice()).unwrap();
        assert!(db.table_root("Packages").is_err());
        for i in 0..4096 {
            let mut d = data.clone();
            d[i % 4096] ^= 0x5a;
            if let Ok(db) = Database::open(d.as_slice()) {
                let _ = db.table_root("Packages");
                let _ = db.scan(1);
            }
        }
    }

    #[test]
    fn record_values() {
        // header: len 3, types NULL, 1-byte int; body: 0x7f
        assert_eq!(
            record(&[3, 0, 1, 0x7f]).unwrap(),
            vec![Value::Null, Value::Int(127)]
        );
        assert!(record(&[5, 0]).is_err());
    }
}
