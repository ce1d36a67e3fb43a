//! `std::io` adapters over a [`BlockSource`] for parser crates that want `Read + Seek`.

use guestkit_block::BlockSource;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Size of the aligned buffer: parsers issue many small reads (directory entries, records),
/// and every read below may be a decompression or a network round trip.
const BUF: usize = 64 * 1024;

/// A `Read + Seek` cursor over a source, reading through one block-aligned buffer.
/// `Write` always fails: nothing in this crate may modify an image.
pub(crate) struct Cursor {
    src: Arc<dyn BlockSource>,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl Cursor {
    pub(crate) fn new(src: Arc<dyn BlockSource>) -> Self {
        Cursor {
            src,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let size = self.src.size();
        let start = self.pos - self.pos % BUF as u64;
        let len = (size - start).min(BUF as u64) as usize;
        self.buf.resize(len, 0);
        self.src
            .read_at(start, &mut self.buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.buf_start = start;
        Ok(())
    }
}

impl Read for Cursor {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.src.size() {
            return Ok(0);
        }
        let in_buf =
            self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            self.fill()?;
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.src.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

impl Write for Cursor {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "read-only image",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
