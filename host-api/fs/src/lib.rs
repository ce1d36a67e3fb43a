//! Read-only filesystems over any [`BlockSource`].
//!
//! [`probe`] names what a device holds from its superblock magic; [`open`] gives a
//! [`Filesystem`] for the kinds this crate reads. Paths are absolute and `/`-separated; `..` is
//! handled lexically and symlinks in any component are followed inside the filesystem, at most
//! [`MAX_SYMLINK_HOPS`] times, so a handler can walk a guest's tree as the guest would see it.
//!
//! Every reader is bounded: reads are capped at [`MAX_READ`], listings at the caller's limit,
//! symlink chains at [`MAX_SYMLINK_HOPS`].

mod btrfs;
mod btrfs_subvol;
mod error;
mod ext4;
mod fat;
mod io;
mod ntfs;
mod probe;
mod resolve;
mod threaded;
mod xfs;

use std::sync::Arc;

pub use btrfs_subvol::BtrfsSubvolume;
pub use error::{Error, Result};
pub use guestkit_block::BlockSource;
pub use probe::probe;

/// Most bytes one [`Filesystem::read_file`] call returns.
pub const MAX_READ: usize = 16 * 1024 * 1024;

/// Most symlinks followed while resolving one path (as Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// Longest symlink target accepted (Linux's `PATH_MAX`).
pub const MAX_LINK_TARGET: usize = 4096;

/// What a device holds, as far as its superblock magic says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    /// ext2 (no journal).
    Ext2,
    /// ext3 (journal, no ext4-only features).
    Ext3,
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
    /// FAT with 12-bit cluster numbers.
    Fat12,
    /// FAT with 16-bit cluster numbers.
    Fat16,
    /// FAT32.
    Fat32,
    /// NTFS.
    Ntfs,
    /// Linux swap space: recognised, never opened.
    Swap,
    /// An LVM2 physical volume: recognised, to be opened by the volume layer.
    LvmPv,
}

impl FsType {
    /// The name `blkid` reports as `TYPE` for this kind.
    pub fn blkid_name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Fat12 | FsType::Fat16 | FsType::Fat32 => "vfat",
            FsType::Ntfs => "ntfs",
            FsType::Swap => "swap",
            FsType::LvmPv => "LVM2_member",
        }
    }
}

/// The kind of a directory entry or inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// What [`Filesystem::stat`] says about one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Kind of the inode.
    pub kind: FileKind,
    /// Size in bytes (for a symlink: the length of its target).
    pub size: u64,
    /// Permission bits (`0o7777` part of `st_mode`); synthesised where the fs has none.
    pub mode: u32,
    /// Owner; 0 where the fs has none.
    pub uid: u32,
    /// Group; 0 where the fs has none.
    pub gid: u32,
    /// Last modification, seconds since the Unix epoch (FAT's local time is read as UTC).
    pub mtime: i64,
    /// Number of names of the inode; 0 where the reader cannot tell.
    pub nlink: u32,
    /// Inode number (NTFS: MFT record number); 0 where the reader cannot tell.
    pub inode: u64,
}

/// One entry of a directory listing (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, lossily converted to UTF-8 if the fs stores other bytes.
    pub name: String,
    /// Kind of what the entry points to (not followed).
    pub kind: FileKind,
    /// Inode number; 0 where the reader cannot tell.
    pub inode: u64,
}

/// A directory listing, possibly cut at the caller's limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadDir {
    /// The entries, in on-disk order.
    pub entries: Vec<DirEntry>,
    /// True when the directory has more entries than the limit allowed.
    pub truncated: bool,
}

/// A read-only filesystem. All methods take absolute `/`-separated paths.
pub trait Filesystem: Send + Sync {
    /// What kind of filesystem this is.
    fn fs_type(&self) -> FsType;
    /// The volume label, if set.
    fn label(&self) -> Option<String>;
    /// The filesystem UUID or serial, formatted as `blkid` prints it for this kind.
    fn uuid(&self) -> Option<String>;
    /// Metadata of `path`, following symlinks in every component including the last.
    fn stat(&self, path: &str) -> Result<Metadata>;
    /// Metadata of `path`, not following a symlink in the last component.
    fn lstat(&self, path: &str) -> Result<Metadata>;
    /// At most `limit` entries of directory `path`; `truncated` says whether more exist.
    fn read_dir(&self, path: &str, limit: usize) -> Result<ReadDir>;
    /// Up to `len` bytes of file `path` from `offset`; shorter only at end of file.
    /// `len` above [`MAX_READ`] is an error.
    fn read_file(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// The target of symlink `path` (the last component is not followed).
    fn read_link(&self, path: &str) -> Result<String>;
}

/// Opens the filesystem on `src`. Kinds that are recognised but not read here (swap, LVM PV)
/// and unknown contents are [`Error::Unsupported`].
pub fn open(src: Arc<dyn BlockSource>) -> Result<Box<dyn Filesystem>> {
    let fs_type = probe(&*src)?.ok_or_else(|| Error::Unsupported("no known filesystem".into()))?;
    match fs_type {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => ext4::open(src, fs_type),
        FsType::Fat12 | FsType::Fat16 | FsType::Fat32 => fat::open(src, fs_type),
        FsType::Ntfs => ntfs::open(src),
        FsType::Xfs => xfs::open(src),
        FsType::Btrfs => btrfs::open(src, None),
        other => Err(Error::Unsupported(format!(
            "{} is recognised but not readable by this crate",
            other.blkid_name()
        ))),
    }
}

/// Opens the Btrfs subvolume at `path` (from the top-level subvolume, e.g. `/@home`) instead of
/// the default one.
pub fn open_btrfs_subvolume(src: Arc<dyn BlockSource>, path: &str) -> Result<Box<dyn Filesystem>> {
    match probe(&*src)? {
        Some(FsType::Btrfs) => btrfs::open(src, Some(path.to_owned())),
        other => Err(Error::Unsupported(format!("not btrfs but {other:?}"))),
    }
}

/// The subvolumes of the Btrfs filesystem on `src`, sorted by id, as `btrfs subvolume list`
/// shows them (the top level, id 5, is not listed; it opens by path `/`).
pub fn list_btrfs_subvolumes(src: &dyn BlockSource) -> Result<Vec<BtrfsSubvolume>> {
    match probe(src)? {
        Some(FsType::Btrfs) => btrfs_subvol::list(src),
        other => Err(Error::Unsupported(format!("not btrfs but {other:?}"))),
    }
}
