//! Confinement and loop detection for files an image names (backing files, VMDK extents).

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use guestkit_block::{BlockSource, Error, FileSource, Result};

use crate::{Format, ImageInfo, OpenOptions, open_layer};

/// Hard ceiling on the backing depth whatever the options say, so a huge configured limit cannot
/// turn a long (loop-free) chain into deep recursion.
const DEPTH_CEILING: u32 = 64;

/// State of one open: where named files may come from and which files are already in the chain.
pub struct Chain {
    /// Canonical allowed directories; `None` when the image has no directory (in-memory source).
    roots: Option<Vec<PathBuf>>,
    max_depth: u32,
    /// (device, inode) of every image file in the chain, to refuse loops however they are named.
    seen: Vec<(u64, u64)>,
    backing: Vec<PathBuf>,
}

impl Chain {
    /// The chain of a top image opened from `top`.
    pub fn new(top: &Path, opts: &OpenOptions) -> Result<Self> {
        let mut roots = Vec::new();
        if opts.allowed_roots.is_empty() {
            let dir = parent_dir(top);
            roots.push(canonical(dir, "the image's directory")?);
        } else {
            for root in &opts.allowed_roots {
                roots.push(canonical(root, "an allowed root")?);
            }
        }
        Ok(Chain {
            roots: Some(roots),
            max_depth: opts.max_backing_depth.min(DEPTH_CEILING),
            seen: Vec::new(),
            backing: Vec::new(),
        })
    }

    /// A chain for an image with no directory: every named file is refused.
    pub fn detached(opts: &OpenOptions) -> Self {
        Chain {
            roots: None,
            max_depth: opts.max_backing_depth.min(DEPTH_CEILING),
            seen: Vec::new(),
            backing: Vec::new(),
        }
    }

    /// Records `file` as part of the chain; fails if it already is (a loop).
    pub fn enter(&mut self, file: &File, path: &Path) -> Result<()> {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?;
        let id = (meta.dev(), meta.ino());
        if self.seen.contains(&id) {
            return Err(Error::Limit(format!(
                "backing chain loop: {} is already part of the chain",
                path.display()
            )));
        }
        self.seen.push(id);
        Ok(())
    }

    /// Canonical paths of the backing files entered so far, nearest first.
    pub fn into_backing_paths(self) -> Vec<PathBuf> {
        self.backing
    }

    /// Opens a file named `name` inside the image at `from` (its path as opened), refusing names
    /// that resolve outside the allowed roots. Returns the path to resolve further names against,
    /// the canonical path and the open file.
    pub fn open_named(
        &self,
        from: Option<&Path>,
        name: &[u8],
        what: &str,
    ) -> Result<(PathBuf, PathBuf, File)> {
        let shown = String::from_utf8_lossy(name);
        let (Some(roots), Some(from)) = (&self.roots, from) else {
            return Err(Error::Unsupported(format!(
                "{what} {shown:?} named by an image that has no directory"
            )));
        };
        if name.is_empty() || name.contains(&0) {
            return Err(Error::corrupt(
                "image",
                format!("invalid {what} name {shown:?}"),
            ));
        }
        if name.starts_with(b"json:") {
            return Err(Error::Unsupported(format!(
                "{what} given as a json: description"
            )));
        }
        // Relative names are relative to the directory of the image naming them, as in qemu.
        let joined = parent_dir(from).join(OsStr::from_bytes(name));
        let canon = joined.canonicalize().map_err(|e| {
            Error::io(
                format!("resolving {what} {shown:?} of {}", from.display()),
                e,
            )
        })?;
        if !roots.iter().any(|root| canon.starts_with(root)) {
            return Err(Error::Limit(format!(
                "{what} {shown:?} of {} resolves to {}, outside the allowed roots",
                from.display(),
                canon.display()
            )));
        }
        // Open the canonical path (no symlinks left in it) so what was checked is what is opened.
        let file = File::open(&canon)
            .map_err(|e| Error::io(format!("opening {what} {}", canon.display()), e))?;
        Ok((joined, canon, file))
    }

    /// Opens the backing file `name` of the image at `from` as a full image of `format` (probed
    /// when `None`), recursively with its own backing files.
    pub fn open_backing(
        &mut self,
        from: Option<&Path>,
        name: &[u8],
        format: Option<Format>,
    ) -> Result<Arc<dyn BlockSource>> {
        if self.backing.len() as u32 >= self.max_depth {
            return Err(Error::Limit(format!(
                "backing chain deeper than {} files",
                self.max_depth
            )));
        }
        let (joined, canon, file) = self.open_named(from, name, "backing file")?;
        self.enter(&file, &canon)?;
        self.backing.push(canon);
        let container: Arc<dyn BlockSource> = Arc::new(FileSource::from_file(file)?);
        let (disk, _info): (Box<dyn BlockSource>, ImageInfo) =
            open_layer(container, Some(&joined), format, self)?;
        Ok(Arc::from(disk))
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn canonical(path: &Path, what: &str) -> Result<PathBuf> {
    path.canonicalize()
        .map_err(|e| Error::io(format!("resolving {what} {}", path.display()), e))
}
