//! Random access to guest files for the package database readers, which walk pages instead of
//! loading whole databases (an rpmdb can be hundreds of megabytes).

use std::cell::RefCell;

/// Bytes at an offset of something with a known length: a guest file or, in tests, a slice.
pub trait ReadAt {
    /// Total length in bytes.
    fn size(&self) -> u64;
    /// Exactly `len` bytes from `offset`, or an error saying why not.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String>;
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let start = usize::try_from(offset).map_err(|_| "offset out of range".to_string())?;
        let end = start.checked_add(len).ok_or("length out of range")?;
        self.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
            format!(
                "read of {len} bytes at {offset} is past the end ({})",
                <[u8]>::len(self)
            )
        })
    }
}

/// Reads through a small cache of aligned chunks, so page-sized reads cost few host calls.
pub struct ChunkCache<F: Fn(u64, u32) -> Result<Vec<u8>, String>> {
    fetch: F,
    len: u64,
    chunk: u64,
    slots: usize,
    cache: RefCell<Vec<(u64, Vec<u8>)>>,
}

impl<F: Fn(u64, u32) -> Result<Vec<u8>, String>> ChunkCache<F> {
    /// `fetch(offset, len)` reads the underlying file; `chunk` bytes are fetched at a time and
    /// at most `slots` chunks are kept.
    pub fn new(fetch: F, len: u64, chunk: u32, slots: usize) -> Self {
        ChunkCache {
            fetch,
            len,
            chunk: u64::from(chunk.max(1)),
            slots: slots.max(1),
            cache: RefCell::new(Vec::new()),
        }
    }

    fn chunk_at(&self, index: u64) -> Result<Vec<u8>, String> {
        let mut cache = self.cache.borrow_mut();
        if let Some(pos) = cache.iter().position(|(i, _)| *i == index) {
            let hit = cache.remove(pos);
            let data = hit.1.clone();
            cache.push(hit);
            return Ok(data);
        }
        let start = index * self.chunk;
        let want = self.chunk.min(self.len.saturating_sub(start)) as u32;
        let data = (self.fetch)(start, want)?;
        if data.len() as u64 != u64::from(want) {
            return Err(format!(
                "short read at {start}: {} of {want} bytes",
                data.len()
            ));
        }
        if cache.len() >= self.slots {
            cache.remove(0);
        }
        cache.push((index, data.clone()));
        Ok(data)
    }
}

impl<F: Fn(u64, u32) -> Result<Vec<u8>, String>> ReadAt for ChunkCache<F> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let end = offset
            .checked_add(len as u64)
            .ok_or("length out of range")?;
        if end > self.len {
            return Err(format!(
                "read of {len} bytes at {offset} is past the end ({})",
                self.len
            ));
        }
        let mut out = Vec::with_capacity(len);
        let mut pos = offset;
        while pos < end {
            let index = pos / self.chunk;
            let data = self.chunk_at(index)?;
            let from = (pos - index * self.chunk) as usize;
            let take = ((end - pos) as usize).min(data.len().saturating_sub(from));
            if take == 0 {
                return Err(format!("empty chunk at {pos}"));
            }
            out.extend_from_slice(&data[from..from + take]);
            pos += take as u64;
        }
        Ok(out)
    }
}
