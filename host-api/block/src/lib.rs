//! The bottom of the disk stack.
//!
//! Every layer (image formats, NBD, partition tables, LVM, filesystems) reads through
//! [`BlockSource`], a read-only, random-access view of a fixed-size virtual device. Sources are
//! `Send + Sync` and take `&self`, so one opened image can serve concurrent readers.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Errors of the disk stack. Bad input is always one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying file or connection failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A read reached outside the device.
    #[error("read of {len} bytes at offset {offset} is outside the device of {size} bytes")]
    OutOfRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Size of the device.
        size: u64,
    },
    /// The on-disk structures are inconsistent or malformed.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which structure (e.g. "qcow2 L2 table").
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A valid feature this reader does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A configured bound was hit (chain depth, allocation size, confinement).
    #[error("limit exceeded: {0}")]
    Limit(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A corrupt-structure error.
    pub fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}

/// Result alias for the disk stack.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A read-only, random-access, fixed-size byte device.
pub trait BlockSource: Send + Sync {
    /// Size of the virtual device in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the bytes at `offset`. A read that does not fit inside
    /// [`size`](Self::size) fails with [`Error::OutOfRange`] and reads nothing useful.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// Checks that `len` bytes at `offset` fit inside a device of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<()> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange { offset, len, size }),
    }
}

impl<T: BlockSource + ?Sized> BlockSource for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
}

impl<T: BlockSource + ?Sized> BlockSource for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
}

/// A plain file read as-is (a raw image, or the container file of a formatted image).
#[derive(Debug)]
pub struct FileSource {
    file: File,
    size: u64,
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Self::from_file(file)
    }

    /// Wraps an already opened file; its size is read once, now.
    pub fn from_file(file: File) -> Result<Self> {
        let size = file
            .metadata()
            .map_err(|e| Error::io("reading file metadata", e))?
            .len();
        Ok(FileSource { file, size })
    }

    /// The underlying file handle.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl BlockSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(format!("reading {} bytes at {offset}", buf.len()), e))
    }
}

/// A window `[start, start + len)` of another source, e.g. one partition of a disk.
#[derive(Debug, Clone)]
pub struct Window<S> {
    inner: S,
    start: u64,
    len: u64,
}

impl<S: BlockSource> Window<S> {
    /// A view of `len` bytes of `inner` starting at `start`; fails if it does not fit.
    pub fn new(inner: S, start: u64, len: u64) -> Result<Self> {
        let fits = start
            .checked_add(len)
            .is_some_and(|end| end <= inner.size());
        if !fits {
            return Err(Error::OutOfRange {
                offset: start,
                len,
                size: inner.size(),
            });
        }
        Ok(Window { inner, start, len })
    }
}

impl<S: BlockSource> BlockSource for Window<S> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len)?;
        self.inner.read_at(self.start + offset, buf)
    }
}

/// An in-memory device; for tests and small synthesised structures.
#[derive(Debug, Clone, Default)]
pub struct MemSource(pub Vec<u8>);

impl BlockSource for MemSource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.0[start..start + buf.len()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_are_enforced() {
        let mem = MemSource((0u8..=255).collect());
        let w = Window::new(mem.clone(), 10, 20).unwrap();
        let mut buf = [0u8; 4];
        w.read_at(16, &mut buf).unwrap();
        assert_eq!(buf, [26, 27, 28, 29]);
        assert!(matches!(
            w.read_at(18, &mut buf),
            Err(Error::OutOfRange { .. })
        ));
        assert!(Window::new(mem.clone(), 250, 10).is_err());
        assert!(Window::new(mem, u64::MAX, 2).is_err());
    }

    #[test]
    fn range_check_does_not_overflow() {
        assert!(check_range(u64::MAX, 1, u64::MAX).is_err());
        assert!(check_range(0, 0, 0).is_ok());
    }
}
