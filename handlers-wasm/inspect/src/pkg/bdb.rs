//! A read-only reader of the key/data pairs of a Berkeley DB hash file, the format of rpm's
//! classic `/var/lib/rpm/Packages` (key: 4-byte header instance number, data: header blob).
//!
//! Written by hand: no maintained pure-Rust Berkeley DB reader exists, and like rpm's own
//! `bdb_ro` backend we need only a sequential walk of the hash pages plus their overflow
//! chains. Pages are read one at a time, bounded by the file length; loops and damage become
//! warnings.

use crate::read_at::ReadAt;
use std::collections::HashSet;

const HASH_MAGIC: u32 = 0x0006_1561;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// Size of the generic page header (lsn, pgno, prev, next, entries, hf_offset, level, type).
const PAGE_HEADER: usize = 26;
const MAX_VALUE: u64 = 64 << 20;

/// The pairs read, and what could not be read.
#[derive(Debug, Default)]
pub struct Pairs {
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    pub warnings: Vec<String>,
}

struct Hash<'a, R: ReadAt + ?Sized> {
    file: &'a R,
    swap: bool,
    page_size: usize,
    pages: u64,
}

impl<R: ReadAt + ?Sized> Hash<'_, R> {
    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.swap {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }
    fn u16(&self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        if self.swap {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    }
    fn page(&self, n: u64) -> Result<Vec<u8>, String> {
        if n >= self.pages {
            return Err(format!("page {n} past the end of the file"));
        }
        self.file.read_at(n * self.page_size as u64, self.page_size)
    }

    /// Item `i` of a hash page: its bytes, from the type byte to the start of the item before.
    fn item<'p>(&self, page: &'p [u8], i: usize) -> Result<&'p [u8], String> {
        let inp = |k: usize| -> Option<usize> {
            let at = PAGE_HEADER + 2 * k;
            (at + 2 <= page.len()).then(|| usize::from(self.u16(page, at)))
        };
        let start = inp(i).ok_or("index past the page")?;
        let end = if i == 0 {
            self.page_size
        } else {
            inp(i - 1).ok_or("index past the page")?
        };
        if start < PAGE_HEADER || start >= end || end > page.len() {
            return Err(format!("item {i} has a bad offset {start}..{end}"));
        }
        Ok(&page[start..end])
    }

    fn value(&self, item: &[u8]) -> Result<Vec<u8>, String> {
        match item.first() {
            Some(&H_KEYDATA) => Ok(item[1..].to_vec()),
            Some(&H_OFFPAGE) if item.len() >= 12 => {
                let first = u64::from(self.u32(item, 4));
                let total = u64::from(self.u32(item, 8));
                if total > MAX_VALUE {
                    return Err(format!("value of {total} bytes is over the limit"));
                }
                self.overflow(first, total as usize)
            }
            Some(t) => Err(format!("unsupported item type {t}")),
            None => Err("empty item".into()),
        }
    }

    fn overflow(&self, first: u64, total: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(total.min(1 << 20));
        let mut next = first;
        let mut seen = HashSet::new();
        while out.len() < total {
            if next == 0 || !seen.insert(next) {
                return Err("broken overflow chain".into());
            }
            let page = self.page(next)?;
            if page[25] != P_OVERFLOW {
                return Err(format!("page {next} is not an overflow page"));
            }
            let len = usize::from(self.u16(&page, 22));
            let data = page
                .get(PAGE_HEADER..PAGE_HEADER + len)
                .ok_or("overflow length past the page")?;
            let take = data.len().min(total - out.len());
            out.extend_from_slice(&data[..take]);
            next = u64::from(self.u32(&page, 16));
        }
        Ok(out)
    }
}

/// Every key/data pair of the hash database in `file`.
pub fn read_hash<R: ReadAt + ?Sized>(file: &R) -> Result<Pairs, String> {
    let meta = file
        .read_at(0, 512)
        .map_err(|e| format!("bdb metadata: {e}"))?;
    let swap = match (
        u32::from_le_bytes([meta[12], meta[13], meta[14], meta[15]]),
        u32::from_be_bytes([meta[12], meta[13], meta[14], meta[15]]),
    ) {
        (HASH_MAGIC, _) => false,
        (_, HASH_MAGIC) => true,
        _ => return Err("not a Berkeley DB hash file".into()),
    };
    let mut db = Hash {
        file,
        swap,
        page_size: 0,
        pages: 0,
    };
    let page_size = db.u32(&meta, 20) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("bad page size {page_size}"));
    }
    if meta[24] != 0 {
        return Err("encrypted Berkeley DB files are not supported".into());
    }
    if meta[25] != P_HASHMETA {
        return Err(format!(
            "metadata page has type {}, not hash metadata",
            meta[25]
        ));
    }
    db.page_size = page_size;
    let last = u64::from(db.u32(&meta, 32));
    db.pages = (file.size() / page_size as u64).min(last.saturating_add(1));

    let mut out = Pairs::default();
    for n in 1..db.pages {
        let page = match db.page(n) {
            Ok(p) => p,
            Err(e) => {
                out.warnings.push(e);
                continue;
            }
        };
        if page[25] != P_HASH && page[25] != P_HASH_UNSORTED {
            continue;
        }
        let entries = usize::from(db.u16(&page, 20));
        if PAGE_HEADER + 2 * entries > page_size {
            out.warnings
                .push(format!("page {n}: {entries} entries cannot fit"));
            continue;
        }
        for pair in 0..entries / 2 {
            let read = || -> Result<(Vec<u8>, Vec<u8>), String> {
                let key = db.value(db.item(&page, 2 * pair)?)?;
                let data = db.value(db.item(&page, 2 * pair + 1)?)?;
                Ok((key, data))
            };
            match read() {
                Ok(kv) => out.pairs.push(kv),
                Err(e) => out.warnings.push(format!("page {n} pair {pair}: {e}")),
            }
        }
    }
    Ok(out)
}

/// The byte order of 4-byte integer keys in this file (Berkeley DB stores them as the
/// writing host did; the metadata magic tells which).
pub fn keys_big_endian<R: ReadAt + ?Sized>(file: &R) -> bool {
    file.read_at(12, 4)
        .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]) == HASH_MAGIC)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut data = vec![0u8; 8192];
        data[12..16].copy_from_slice(&HASH_MAGIC.to_le_bytes());
        data[20..24].copy_from_slice(&4096u32.to_le_bytes());
        data[25] = P_HASHMETA;
        data[32..36].copy_from_slice(&1u32.to_le_bytes());
        data[4096 + 25] = P_HASH;
        data[4096 + 20] = 4;
        for i in 0..2000 {
            let mut d = data.clone();
            d[4096 + (i * 7) % 4096] = i as u8;
            d[4096 + 26 + (i % 8)] = (i * 13) as u8;
            let _ = read_hash(d.as_slice());
        }
        assert!(read_hash(&[0u8; 100][..]).is_err());
    }
}
