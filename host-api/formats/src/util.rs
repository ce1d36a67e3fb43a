//! Small helpers shared by the format readers.

use guestkit_block::{BlockSource, Error, Result};

/// Largest virtual disk any reader accepts (64 TiB, the VHDX limit); bigger sizes are treated as
/// corrupt headers rather than a reason to size tables after them.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// Largest metadata table (L1, BAT, grain directory, block map) read into memory at open.
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

/// Reads `buf.len()` bytes of a container at `offset`; reading past its end means the metadata
/// that produced `offset` is corrupt.
pub fn read_container(
    src: &dyn BlockSource,
    offset: u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<()> {
    match src.read_at(offset, buf) {
        Err(Error::OutOfRange { offset, len, size }) => Err(Error::corrupt(
            what,
            format!("{len} bytes at offset {offset} lie past the end of the {size}-byte file"),
        )),
        other => other,
    }
}

/// Reads a whole metadata table of `len` bytes at `offset`, refusing sizes above
/// [`MAX_TABLE_BYTES`] and tables that do not fit in the container.
pub fn read_table(
    src: &dyn BlockSource,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>> {
    if len > MAX_TABLE_BYTES {
        return Err(Error::Limit(format!(
            "{what} of {len} bytes exceeds the {MAX_TABLE_BYTES}-byte cap"
        )));
    }
    let fits = offset.checked_add(len).is_some_and(|end| end <= src.size());
    if !fits {
        return Err(Error::corrupt(
            what,
            format!(
                "{len} bytes at offset {offset} do not fit in the {}-byte file",
                src.size()
            ),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    read_container(src, offset, &mut buf, what)?;
    Ok(buf)
}

/// Checks a header's virtual size against [`MAX_VIRTUAL_SIZE`].
pub fn check_virtual_size(size: u64, what: &'static str) -> Result<u64> {
    if size > MAX_VIRTUAL_SIZE {
        return Err(Error::corrupt(
            what,
            format!("virtual size {size} exceeds the {MAX_VIRTUAL_SIZE}-byte limit"),
        ));
    }
    Ok(size)
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
pub fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
pub fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
pub fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads `buf.len()` bytes at `offset` of an optional lower layer; bytes past its end (or with no
/// layer at all) read as zeros, as qemu does for a backing file smaller than its overlay.
pub fn read_lower(lower: Option<&dyn BlockSource>, offset: u64, buf: &mut [u8]) -> Result<()> {
    let Some(lower) = lower else {
        buf.fill(0);
        return Ok(());
    };
    let size = lower.size();
    let avail = size.saturating_sub(offset).min(buf.len() as u64) as usize;
    let (inside, beyond) = buf.split_at_mut(avail);
    if !inside.is_empty() {
        lower.read_at(offset, inside)?;
    }
    beyond.fill(0);
    Ok(())
}
