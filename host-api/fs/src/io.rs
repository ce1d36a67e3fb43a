//! `std::io` adapters over a [`BlockSource`] for parser crates that want `Read + Seek`.

use guestkit_block::BlockSource;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Size of one aligned buffer: parsers issue many small reads (directory entries, records),
/// and every read below may be a decompression or a network round trip.
const BUF: usize = 64 * 1024;

/// Buffers kept, least recently used replaced first. More than one, because parsers alternate
/// between places: fatfs looks up the next cluster in the FAT between data clusters, and with
/// one buffer each lookup and each cluster after it would re-read a whole buffer.
const BUFFERS: usize = 8;

/// A `Read + Seek` cursor over a source, reading through a few block-aligned buffers.
/// `Write` always fails: nothing in this crate may modify an image.
pub(crate) struct Cursor {
    src: Arc<dyn BlockSource>,
    pos: u64,
    /// `(start, bytes)`, most recently used first; at most [`BUFFERS`].
    bufs: Vec<(u64, Vec<u8>)>,
}

impl Cursor {
    pub(crate) fn new(src: Arc<dyn BlockSource>) -> Self {
        Cursor {
            src,
            pos: 0,
            bufs: Vec::new(),
        }
    }

    /// Moves the buffer holding `self.pos` to the front, reading it first if none does.
    fn fill(&mut self) -> io::Result<()> {
        let pos = self.pos;
        if let Some(i) = self
            .bufs
            .iter()
            .position(|(start, b)| pos >= *start && pos - start < b.len() as u64)
        {
            self.bufs[..=i].rotate_right(1);
            return Ok(());
        }
        let size = self.src.size();
        let start = pos - pos % BUF as u64;
        let len = (size - start).min(BUF as u64) as usize;
        let mut buf = if self.bufs.len() >= BUFFERS {
            self.bufs.pop().map(|(_, b)| b).unwrap_or_default()
        } else {
            Vec::new()
        };
        buf.resize(len, 0);
        self.src
            .read_at(start, &mut buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.bufs.insert(0, (start, buf));
        Ok(())
    }
}

impl Read for Cursor {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.src.size() {
            return Ok(0);
        }
        self.fill()?;
        let (start, buf) = &self.bufs[0];
        let at = (self.pos - start) as usize;
        let n = out.len().min(buf.len() - at);
        out[..n].copy_from_slice(&buf[at..at + n]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use guestkit_block::MemSource;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts the reads that reach the source.
    struct Counting(MemSource, AtomicU64);

    impl BlockSource for Counting {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> guestkit_block::Result<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.read_at(offset, buf)
        }
    }

    fn source(len: usize) -> Arc<Counting> {
        let bytes = (0..len).map(|i| (i % 251) as u8).collect();
        Arc::new(Counting(MemSource(bytes), AtomicU64::new(0)))
    }

    #[test]
    fn reads_cross_buffers_and_stop_at_the_end() {
        let len = 3 * BUF + 100;
        let src = source(len);
        let mut c = Cursor::new(src.clone());
        c.seek(SeekFrom::Start(BUF as u64 - 3)).unwrap();
        let mut out = vec![0u8; BUF + 10];
        c.read_exact(&mut out).unwrap();
        let want: Vec<u8> = (BUF - 3..2 * BUF + 7).map(|i| (i % 251) as u8).collect();
        assert_eq!(out, want);
        c.seek(SeekFrom::End(-5)).unwrap();
        let mut tail = Vec::new();
        c.read_to_end(&mut tail).unwrap();
        assert_eq!(tail.len(), 5);
        assert_eq!(tail[4], ((len - 1) % 251) as u8);
        assert!(c.write(b"x").is_err());
    }

    #[test]
    fn alternating_between_places_reads_each_block_once() {
        let src = source(8 * BUF);
        let mut c = Cursor::new(src.clone());
        let mut byte = [0u8; 1];
        // A table near the start, data far behind it: the pattern of fatfs on small clusters.
        for i in 0..1000u64 {
            c.seek(SeekFrom::Start(i % 512)).unwrap();
            c.read_exact(&mut byte).unwrap();
            c.seek(SeekFrom::Start(5 * BUF as u64 + i * 128)).unwrap();
            c.read_exact(&mut byte).unwrap();
            assert_eq!(byte[0], ((5 * BUF as u64 + i * 128) % 251) as u8);
        }
        // One read for the table's block, two for the data's.
        assert_eq!(src.1.load(Ordering::Relaxed), 3);
        // More places than buffers: the least recently used goes first.
        let src = source((BUFFERS + 1) * BUF);
        let mut c = Cursor::new(src.clone());
        let mut at = |c: &mut Cursor, block: usize| {
            c.seek(SeekFrom::Start((block * BUF) as u64)).unwrap();
            c.read_exact(&mut byte).unwrap();
        };
        for block in 0..=BUFFERS {
            at(&mut c, block);
        }
        assert_eq!(c.bufs.len(), BUFFERS);
        let reads = src.1.load(Ordering::Relaxed);
        at(&mut c, BUFFERS);
        assert_eq!(src.1.load(Ordering::Relaxed), reads, "the newest is kept");
        at(&mut c, 0);
        assert_eq!(
            src.1.load(Ordering::Relaxed),
            reads + 1,
            "the oldest was dropped"
        );
    }
}
