//! Shared body of the fuzz targets: open in-memory bytes as one format and read from it.

use std::sync::Arc;

use guestkit_formats::{BlockSource, Format, MemSource, open_source};

/// Opens `data` as `format` (or probes it) and reads a few ranges chosen from the data itself.
/// Any `Err` is fine; a panic, hang or huge allocation is a bug.
pub fn open_and_read(data: &[u8], format: Option<Format>) {
    let Ok(img) = open_source(Arc::new(MemSource(data.to_vec())), format) else {
        return;
    };
    let size = img.size();
    if size == 0 {
        return;
    }
    let _ = img.info();
    let mut buf = vec![0u8; 1 << 20];
    // Start of the disk, end of the disk, and offsets taken from the input's last bytes.
    let mut offsets = vec![0, size.saturating_sub(buf.len() as u64)];
    for chunk in data.rchunks(8).take(4) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        offsets.push(u64::from_le_bytes(word) % size);
    }
    for off in offsets {
        let len = (buf.len() as u64).min(size - off) as usize;
        let _ = img.read_at(off, &mut buf[..len]);
    }
}
