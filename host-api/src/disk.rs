//! The `disk` and `checksum` interfaces: a job's granted images, as resources.
//!
//! The embedder opens every granted image (format parsing, confinement, checksum checks) and
//! hands them over as [`GrantedImage`]s; a handler can open only those, by name. Volumes
//! (whole disk, partitions, LVM logical volumes) are discovered on first use, filesystems are
//! opened on request, and every call reads a bounded amount.

use crate::HostCtx;
use crate::bindings::guestkit::handler::checksum::{self, Algorithm};
use crate::bindings::guestkit::handler::disk::{
    self, BtrfsSubvolume, DirEntry, DirListing, DiskError, FileKind, ImageInfo, Stat, Volume,
    VolumeKind,
};
use guestkit_block::{BlockSource, Window};
use guestkit_fs::{Filesystem, FsType};
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Resource;

/// Largest read of one `read`/`read-file` call.
pub const MAX_READ: u32 = 1 << 20;
/// Most entries one `read-dir` call returns.
pub const MAX_DIR_ENTRIES: u32 = 10_000;
/// Most volumes reported for one image.
pub const MAX_VOLUMES: usize = 256;
/// Most resources (images + filesystems) a job may hold open at once.
pub const MAX_HANDLES: usize = 1024;

/// An image granted to a job, opened by the embedder.
pub struct GrantedImage {
    /// The name the job lists it under (`job.images`).
    pub name: String,
    /// The virtual disk (format already decoded).
    pub disk: Arc<dyn BlockSource>,
    /// The image file itself, for `checksum.image-file` (the same open file the disk reads).
    pub file: Option<Arc<File>>,
    /// Container format name.
    pub format: String,
    /// Backing files below the image.
    pub backing_depth: u32,
}

/// Counts the bytes read through a source (for metrics).
struct Counted {
    inner: Arc<dyn BlockSource>,
    bytes: Arc<AtomicU64>,
}

impl BlockSource for Counted {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> guestkit_block::Result<()> {
        self.inner.read_at(offset, buf)?;
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The disk state of one job's instance.
#[derive(Default)]
pub struct DiskCtx {
    images: Vec<GrantedImage>,
    table: wasmtime::component::ResourceTable,
    handles: usize,
    bytes_read: Arc<AtomicU64>,
}

impl DiskCtx {
    /// Grants `images` to the job; reads are counted into `bytes_read`.
    pub fn new(images: Vec<GrantedImage>, bytes_read: Arc<AtomicU64>) -> Self {
        let images = images
            .into_iter()
            .map(|mut image| {
                image.disk = Arc::new(Counted {
                    inner: image.disk,
                    bytes: bytes_read.clone(),
                });
                image
            })
            .collect();
        DiskCtx {
            images,
            table: Default::default(),
            handles: 0,
            bytes_read,
        }
    }

    /// Bytes read from the granted images so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
}

/// A discovered volume and the bytes behind it.
type VolumeSource = (Volume, Arc<dyn BlockSource>);

/// An opened image (the `image` resource).
pub struct ImageHandle {
    index: usize,
    volumes: Option<Vec<VolumeSource>>,
}

/// An opened filesystem (the `filesystem` resource).
pub struct FsHandle {
    fs: Box<dyn Filesystem>,
}

fn block_error(e: guestkit_block::Error) -> DiskError {
    use guestkit_block::Error as E;
    match e {
        E::Io { .. } => DiskError::Io(e.to_string()),
        E::OutOfRange { .. } => DiskError::Invalid(e.to_string()),
        E::Corrupt { .. } => DiskError::Corrupt(e.to_string()),
        E::Unsupported(_) => DiskError::Unsupported(e.to_string()),
        E::Limit(_) => DiskError::Limit(e.to_string()),
    }
}

fn fs_error(e: guestkit_fs::Error) -> DiskError {
    use guestkit_fs::Error as E;
    match e {
        E::Block(b) => block_error(b),
        E::NotFound(_) => DiskError::NotFound(e.to_string()),
        E::NotADirectory(_) | E::NotAFile(_) | E::NotASymlink(_) | E::InvalidPath(_) => {
            DiskError::Invalid(e.to_string())
        }
        E::TooManySymlinks(_) | E::Limit(_) => DiskError::Limit(e.to_string()),
        E::Corrupt { .. } => DiskError::Corrupt(e.to_string()),
        E::Unsupported(_) => DiskError::Unsupported(e.to_string()),
    }
}

fn kind(k: guestkit_fs::FileKind) -> FileKind {
    match k {
        guestkit_fs::FileKind::File => FileKind::File,
        guestkit_fs::FileKind::Dir => FileKind::Directory,
        guestkit_fs::FileKind::Symlink => FileKind::Symlink,
        guestkit_fs::FileKind::Other => FileKind::Other,
    }
}

fn stat(m: guestkit_fs::Metadata) -> Stat {
    Stat {
        kind: kind(m.kind),
        size: m.size,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
        nlink: m.nlink,
        inode: m.inode,
    }
}

fn readable(fs_type: FsType) -> bool {
    !matches!(fs_type, FsType::Swap | FsType::LvmPv)
}

/// A volume record for `source`, with what its superblock says.
fn describe(id: String, kind: VolumeKind, source: &Arc<dyn BlockSource>) -> Volume {
    let fs_type = guestkit_fs::probe(&**source).ok().flatten();
    let (mut label, mut uuid) = (None, None);
    if fs_type.is_some_and(readable)
        && let Ok(fs) = guestkit_fs::open(source.clone())
    {
        label = fs.label();
        uuid = fs.uuid();
    }
    Volume {
        id,
        kind,
        size: source.size(),
        partition_number: None,
        partition_table: None,
        partition_type: None,
        partition_label: None,
        partition_uuid: None,
        fs_type: fs_type.map(|t| t.blkid_name().to_string()),
        fs_label: label,
        fs_uuid: uuid,
    }
}

/// Finds the whole disk, its partitions and the LVM logical volumes on them.
fn discover(disk: &Arc<dyn BlockSource>) -> Result<Vec<VolumeSource>, DiskError> {
    let mut found: Vec<VolumeSource> = Vec::new();
    found.push((
        describe("disk".into(), VolumeKind::WholeDisk, disk),
        disk.clone(),
    ));
    if let Some(table) = guestkit_volumes::read_partition_table(&**disk).map_err(block_error)? {
        let table_name = match table.kind {
            guestkit_volumes::TableKind::Mbr => "mbr",
            guestkit_volumes::TableKind::Gpt => "gpt",
        };
        for p in &table.partitions {
            if p.partition_type.is_extended() || found.len() >= MAX_VOLUMES {
                continue;
            }
            let window =
                Window::new(disk.clone(), p.start_bytes, p.size_bytes).map_err(block_error)?;
            let source: Arc<dyn BlockSource> = Arc::new(window);
            let mut v = describe(format!("p{}", p.number), VolumeKind::Partition, &source);
            v.partition_number = Some(p.number);
            v.partition_table = Some(table_name.into());
            v.partition_type = Some(match p.partition_type {
                guestkit_volumes::PartitionType::Mbr(b) => format!("0x{b:02x}"),
                guestkit_volumes::PartitionType::Gpt(g) => g.to_string(),
            });
            v.partition_label = p.name.clone().filter(|n| !n.is_empty());
            v.partition_uuid = p.partition_guid.map(|g| g.to_string());
            found.push((v, source));
        }
    }
    let pvs: Vec<_> = found
        .iter()
        .filter(|(v, _)| v.fs_type.as_deref() == Some("LVM2_member"))
        .filter_map(|(_, s)| {
            guestkit_volumes::lvm::PhysicalVolume::probe(s.clone())
                .ok()
                .flatten()
        })
        .collect();
    if !pvs.is_empty() {
        let scan = guestkit_volumes::lvm::VolumeGroup::assemble_all(pvs);
        for vg in &scan.volume_groups {
            for lv in vg.logical_volumes() {
                if !lv.is_readable() || found.len() >= MAX_VOLUMES {
                    continue;
                }
                let Ok(reader) = vg.open_lv(&lv.name) else {
                    continue;
                };
                let source: Arc<dyn BlockSource> = Arc::new(reader);
                let id = format!("lvm/{}/{}", vg.name, lv.name);
                found.push((describe(id, VolumeKind::LogicalVolume, &source), source));
            }
        }
    }
    Ok(found)
}

fn check_len(len: u32) -> Result<usize, DiskError> {
    if len == 0 || len > MAX_READ {
        return Err(DiskError::Invalid(format!(
            "read length must be 1..={MAX_READ} bytes, got {len}"
        )));
    }
    Ok(len as usize)
}

impl HostCtx {
    fn image_handle(&self, r: &Resource<ImageHandle>) -> wasmtime::Result<&ImageHandle> {
        Ok(self.disk.table.get(r)?)
    }

    fn granted(&self, r: &Resource<ImageHandle>) -> wasmtime::Result<&GrantedImage> {
        let index = self.image_handle(r)?.index;
        Ok(&self.disk.images[index])
    }

    fn take_handle(&mut self) -> Result<(), DiskError> {
        if self.disk.handles >= MAX_HANDLES {
            return Err(DiskError::Limit(format!(
                "at most {MAX_HANDLES} images and filesystems open at once"
            )));
        }
        self.disk.handles += 1;
        Ok(())
    }

    fn volume_source(
        &mut self,
        r: &Resource<ImageHandle>,
        id: &str,
    ) -> wasmtime::Result<Result<Arc<dyn BlockSource>, DiskError>> {
        if let Err(e) = self.ensure_volumes(r)? {
            return Ok(Err(e));
        }
        let handle = self.image_handle(r)?;
        let found = handle
            .volumes
            .as_ref()
            .and_then(|vs| vs.iter().find(|(v, _)| v.id == id))
            .map(|(_, s)| s.clone());
        Ok(found.ok_or_else(|| DiskError::NotFound(format!("no volume {id:?} on this image"))))
    }

    fn ensure_volumes(
        &mut self,
        r: &Resource<ImageHandle>,
    ) -> wasmtime::Result<Result<(), DiskError>> {
        if self.image_handle(r)?.volumes.is_some() {
            return Ok(Ok(()));
        }
        let disk = self.granted(r)?.disk.clone();
        match discover(&disk) {
            Ok(volumes) => {
                self.disk.table.get_mut(r)?.volumes = Some(volumes);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn open_fs(
        &mut self,
        r: &Resource<ImageHandle>,
        id: &str,
        subvolume: Option<&str>,
    ) -> wasmtime::Result<Result<Resource<FsHandle>, DiskError>> {
        let source = match self.volume_source(r, id)? {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let opened = match subvolume {
            None => guestkit_fs::open(source),
            Some(path) => guestkit_fs::open_btrfs_subvolume(source, path),
        };
        let fs = match opened {
            Ok(fs) => fs,
            Err(e) => return Ok(Err(fs_error(e))),
        };
        if let Err(e) = self.take_handle() {
            return Ok(Err(e));
        }
        Ok(Ok(self.disk.table.push(FsHandle { fs })?))
    }
}

impl disk::Host for HostCtx {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<ImageHandle>, DiskError>> {
        let Some(index) = self.disk.images.iter().position(|i| i.name == name) else {
            return Ok(Err(DiskError::NotFound(format!(
                "the job grants no image named {name:?}"
            ))));
        };
        if let Err(e) = self.take_handle() {
            return Ok(Err(e));
        }
        Ok(Ok(self.disk.table.push(ImageHandle {
            index,
            volumes: None,
        })?))
    }
}

impl disk::HostImage for HostCtx {
    fn info(&mut self, r: Resource<ImageHandle>) -> wasmtime::Result<ImageInfo> {
        let g = self.granted(&r)?;
        Ok(ImageInfo {
            name: g.name.clone(),
            format: g.format.clone(),
            virtual_size: g.disk.size(),
            backing_depth: g.backing_depth,
        })
    }

    fn volumes(
        &mut self,
        r: Resource<ImageHandle>,
    ) -> wasmtime::Result<Result<Vec<Volume>, DiskError>> {
        if let Err(e) = self.ensure_volumes(&r)? {
            return Ok(Err(e));
        }
        let handle = self.image_handle(&r)?;
        Ok(Ok(handle
            .volumes
            .as_ref()
            .map(|vs| vs.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default()))
    }

    fn open_filesystem(
        &mut self,
        r: Resource<ImageHandle>,
        volume_id: String,
    ) -> wasmtime::Result<Result<Resource<FsHandle>, DiskError>> {
        self.open_fs(&r, &volume_id, None)
    }

    fn open_btrfs_subvolume(
        &mut self,
        r: Resource<ImageHandle>,
        volume_id: String,
        path: String,
    ) -> wasmtime::Result<Result<Resource<FsHandle>, DiskError>> {
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self.open_fs(&r, &volume_id, Some(&path))
    }

    fn list_btrfs_subvolumes(
        &mut self,
        r: Resource<ImageHandle>,
        volume_id: String,
    ) -> wasmtime::Result<Result<Vec<BtrfsSubvolume>, DiskError>> {
        let source = match self.volume_source(&r, &volume_id)? {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(guestkit_fs::list_btrfs_subvolumes(&*source)
            .map(|list| {
                list.into_iter()
                    .map(|s| BtrfsSubvolume {
                        id: s.id,
                        path: s.path,
                        parent_id: s.parent_id,
                        is_default: s.is_default,
                        read_only: s.read_only,
                    })
                    .collect()
            })
            .map_err(fs_error))
    }

    fn read(
        &mut self,
        r: Resource<ImageHandle>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, DiskError>> {
        let len = match check_len(len) {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let disk = self.granted(&r)?.disk.clone();
        let size = disk.size();
        if offset >= size {
            return Ok(Ok(Vec::new()));
        }
        let len = len.min((size - offset) as usize);
        let mut buf = vec![0u8; len];
        Ok(disk
            .read_at(offset, &mut buf)
            .map(|()| buf)
            .map_err(block_error))
    }

    fn drop(&mut self, r: Resource<ImageHandle>) -> wasmtime::Result<()> {
        self.disk.table.delete(r)?;
        self.disk.handles = self.disk.handles.saturating_sub(1);
        Ok(())
    }
}

impl disk::HostFilesystem for HostCtx {
    fn fs_type(&mut self, r: Resource<FsHandle>) -> wasmtime::Result<String> {
        Ok(self
            .disk
            .table
            .get(&r)?
            .fs
            .fs_type()
            .blkid_name()
            .to_string())
    }

    fn label(&mut self, r: Resource<FsHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.disk.table.get(&r)?.fs.label())
    }

    fn uuid(&mut self, r: Resource<FsHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.disk.table.get(&r)?.fs.uuid())
    }

    fn stat(
        &mut self,
        r: Resource<FsHandle>,
        path: String,
    ) -> wasmtime::Result<Result<Stat, DiskError>> {
        let fs = &self.disk.table.get(&r)?.fs;
        Ok(fs.stat(&path).map(stat).map_err(fs_error))
    }

    fn lstat(
        &mut self,
        r: Resource<FsHandle>,
        path: String,
    ) -> wasmtime::Result<Result<Stat, DiskError>> {
        let fs = &self.disk.table.get(&r)?.fs;
        Ok(fs.lstat(&path).map(stat).map_err(fs_error))
    }

    fn read_dir(
        &mut self,
        r: Resource<FsHandle>,
        path: String,
        limit: u32,
    ) -> wasmtime::Result<Result<DirListing, DiskError>> {
        if limit == 0 || limit > MAX_DIR_ENTRIES {
            return Ok(Err(DiskError::Invalid(format!(
                "limit must be 1..={MAX_DIR_ENTRIES}, got {limit}"
            ))));
        }
        let fs = &self.disk.table.get(&r)?.fs;
        Ok(fs
            .read_dir(&path, limit as usize)
            .map(|d| DirListing {
                entries: d
                    .entries
                    .into_iter()
                    .map(|e| DirEntry {
                        name: e.name,
                        kind: kind(e.kind),
                        inode: e.inode,
                    })
                    .collect(),
                truncated: d.truncated,
            })
            .map_err(fs_error))
    }

    fn read_file(
        &mut self,
        r: Resource<FsHandle>,
        path: String,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, DiskError>> {
        let len = match check_len(len) {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let fs = &self.disk.table.get(&r)?.fs;
        Ok(fs.read_file(&path, offset, len).map_err(fs_error))
    }

    fn read_link(
        &mut self,
        r: Resource<FsHandle>,
        path: String,
    ) -> wasmtime::Result<Result<String, DiskError>> {
        let fs = &self.disk.table.get(&r)?.fs;
        Ok(fs.read_link(&path).map_err(fs_error))
    }

    fn drop(&mut self, r: Resource<FsHandle>) -> wasmtime::Result<()> {
        self.disk.table.delete(r)?;
        self.disk.handles = self.disk.handles.saturating_sub(1);
        Ok(())
    }
}

/// A file inside a filesystem, seen as a block source, so the checksum pipeline reads it
/// in large ranged reads like any other source.
struct FileInFs<'a> {
    fs: &'a dyn Filesystem,
    path: &'a str,
    size: u64,
}

impl BlockSource for FileInFs<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> guestkit_block::Result<()> {
        guestkit_block::check_range(offset, buf.len(), self.size)?;
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(guestkit_fs::MAX_READ);
            let data = self
                .fs
                .read_file(self.path, offset + done as u64, want)
                .map_err(|e| guestkit_block::Error::Io {
                    context: format!("reading {}", self.path),
                    source: std::io::Error::other(e.to_string()),
                })?;
            if data.is_empty() {
                return Err(guestkit_block::Error::corrupt(
                    "file",
                    format!("{} ended before its size", self.path),
                ));
            }
            buf[done..done + data.len()].copy_from_slice(&data);
            done += data.len();
        }
        Ok(())
    }
}

fn algorithm(a: Algorithm) -> guestkit_checksum::Algorithm {
    match a {
        Algorithm::Sha256 => guestkit_checksum::Algorithm::Sha256,
        Algorithm::Sha512 => guestkit_checksum::Algorithm::Sha512,
        Algorithm::Sha1 => guestkit_checksum::Algorithm::Sha1,
        Algorithm::Md5 => guestkit_checksum::Algorithm::Md5,
        Algorithm::Blake3 => guestkit_checksum::Algorithm::Blake3,
    }
}

impl checksum::Host for HostCtx {
    fn image_file(
        &mut self,
        r: Resource<ImageHandle>,
        algorithm: Algorithm,
    ) -> wasmtime::Result<Result<String, DiskError>> {
        let Some(file) = self.granted(&r)?.file.clone() else {
            return Ok(Err(DiskError::Unsupported(
                "this image is not a file on the host (e.g. served over NBD)".into(),
            )));
        };
        let source = match file
            .try_clone()
            .map_err(|e| DiskError::Io(e.to_string()))
            .and_then(|f| guestkit_block::FileSource::from_file(f).map_err(block_error))
        {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let counted = Counted {
            inner: Arc::new(source),
            bytes: self.disk.bytes_read.clone(),
        };
        Ok(hash_source(&counted, algorithm))
    }

    fn file(
        &mut self,
        r: Resource<FsHandle>,
        path: String,
        algorithm: Algorithm,
    ) -> wasmtime::Result<Result<String, DiskError>> {
        let fs = &self.disk.table.get(&r)?.fs;
        let size = match fs.stat(&path) {
            Ok(m) if m.kind == guestkit_fs::FileKind::File => m.size,
            Ok(_) => {
                return Ok(Err(DiskError::Invalid(format!(
                    "{path}: not a regular file"
                ))));
            }
            Err(e) => return Ok(Err(fs_error(e))),
        };
        let source = FileInFs {
            fs: fs.as_ref(),
            path: &path,
            size,
        };
        Ok(hash_source(&source, algorithm))
    }
}

/// Digest of a whole block source (read once, in large chunks, hashed on another thread).
pub fn hash_source(source: &dyn BlockSource, algorithm_: Algorithm) -> Result<String, DiskError> {
    let algo = algorithm(algorithm_);
    match guestkit_checksum::checksum(source, &[algo], &Default::default()) {
        Ok(digests) => digests
            .get(algo)
            .map(str::to_string)
            .ok_or_else(|| DiskError::Io("no digest computed".into())),
        Err(guestkit_checksum::Error::Block(e)) => Err(block_error(e)),
        Err(e) => Err(DiskError::Io(e.to_string())),
    }
}
