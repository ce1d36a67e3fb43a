//! Confinement and loop detection for files an image names (backing files, VMDK extents,
//! parents of differencing VHD/VHDX disks).

use std::ffi::OsStr;
use std::fs::File;
use std::io::ErrorKind;
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

impl Chain {
    /// Opens the parent of a differencing disk (VHD, VHDX) at `from` as an image of `format`.
    /// `candidates` are the names its locators give, most trusted first: the first that exists
    /// is used (a name that resolves outside the roots is an error, not skipped). `matches`
    /// checks the parent's container against the identity the child records before the parent
    /// is opened as an image.
    pub fn open_parent(
        &mut self,
        from: Option<&Path>,
        candidates: &[Vec<u8>],
        format: Format,
        matches: &dyn Fn(&dyn BlockSource) -> Result<()>,
    ) -> Result<Arc<dyn BlockSource>> {
        if self.backing.len() as u32 >= self.max_depth {
            return Err(Error::Limit(format!(
                "backing chain deeper than {} files",
                self.max_depth
            )));
        }
        if candidates.is_empty() {
            return Err(Error::corrupt(
                "differencing image",
                "no usable parent locator",
            ));
        }
        let mut found = None;
        for name in candidates {
            match self.open_named(from, name, "parent disk") {
                Ok(opened) => {
                    found = Some(opened);
                    break;
                }
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let Some((joined, canon, file)) = found else {
            let tried: Vec<_> = candidates
                .iter()
                .map(|n| format!("{:?}", String::from_utf8_lossy(n)))
                .collect();
            let from = from.map_or_else(String::new, |p| p.display().to_string());
            return Err(Error::io(
                format!(
                    "finding the parent disk of {from} (tried {})",
                    tried.join(", ")
                ),
                ErrorKind::NotFound.into(),
            ));
        };
        self.enter(&file, &canon)?;
        self.backing.push(canon);
        let container: Arc<dyn BlockSource> = Arc::new(FileSource::from_file(file)?);
        matches(&*container)?;
        let (disk, _info): (Box<dyn BlockSource>, ImageInfo) =
            open_layer(container, Some(&joined), Some(format), self)?;
        Ok(Arc::from(disk))
    }
}

/// The names to try for a parent that a locator gives as a Windows path: a relative path with
/// its separators turned around, and for an absolute path (drive letter, UNC or volume path,
/// which cannot name a file here) its last component, looked for next to the child.
pub fn windows_path_candidates(path: &str) -> Vec<Vec<u8>> {
    let path = path.trim_end_matches('\0');
    if path.is_empty() {
        return Vec::new();
    }
    let bytes = path.as_bytes();
    let absolute = path.starts_with('\\')
        || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic());
    if absolute {
        let last = path.rsplit(['\\', '/']).next().unwrap_or_default();
        if last.is_empty() || last == "." || last == ".." {
            return Vec::new();
        }
        return vec![last.as_bytes().to_vec()];
    }
    vec![path.replace('\\', "/").into_bytes()]
}

/// Decodes UTF-16 text of a locator (`big_endian` for VHD's parent name), stopping at a NUL.
pub fn utf16(raw: &[u8], big_endian: bool) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        })
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_become_names_to_try() {
        let cases: [(&str, &[&str]); 9] = [
            (".\\base.vhd", &["./base.vhd"]),
            ("..\\dir\\base.vhd", &["../dir/base.vhd"]),
            ("base.vhd\0\0", &["base.vhd"]),
            ("C:\\VMs\\base.vhd", &["base.vhd"]),
            ("c:/VMs/base.vhd", &["base.vhd"]),
            ("\\\\server\\share\\base.vhdx", &["base.vhdx"]),
            ("\\\\?\\Volume{1}\\x\\base.vhdx", &["base.vhdx"]),
            ("C:\\VMs\\..", &[]),
            ("", &[]),
        ];
        for (path, want) in cases {
            let want: Vec<Vec<u8>> = want.iter().map(|w| w.as_bytes().to_vec()).collect();
            assert_eq!(windows_path_candidates(path), want, "{path:?}");
        }
    }

    #[test]
    fn utf16_stops_at_nul_and_survives_odd_input() {
        let le: Vec<u8> = "ab\0cd".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(utf16(&le, false), "ab");
        let be: Vec<u8> = "xy".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(utf16(&be, true), "xy");
        assert_eq!(utf16(&[0x00, 0xd8, 0x41], false), "\u{fffd}");
    }
}
