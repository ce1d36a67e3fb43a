//! A guest's files as its fstab would mount them: reads are routed to the filesystem mounted
//! on the longest matching mountpoint. Every read is bounded; a missing file is `None`.

use crate::read_at::ChunkCache;
use guestkit_handler_sdk::disk::{DirEntry, DiskError, FileKind, Filesystem, MAX_READ};

/// Reads `len` bytes at an offset of one guest file.
pub type Fetch<'a> = Box<dyn Fn(u64, u32) -> Result<Vec<u8>, String> + 'a>;

/// Most entries read from one directory.
pub const DIR_LIMIT: u32 = 10_000;

struct Mount {
    point: String,
    fs: Filesystem,
}

/// The filesystems of one operating system, by mountpoint.
pub struct Guest {
    /// Longest mountpoint first; `/` last.
    mounts: Vec<Mount>,
}

impl Guest {
    /// A guest of just its root filesystem.
    pub fn new(root: Filesystem) -> Guest {
        Guest {
            mounts: vec![Mount {
                point: "/".into(),
                fs: root,
            }],
        }
    }

    /// Mounts `fs` on `point` (an absolute path other than `/`).
    pub fn mount(&mut self, point: &str, fs: Filesystem) {
        let point = point.trim_end_matches('/').to_string();
        if point.is_empty() || self.mounts.iter().any(|m| m.point == point) {
            return;
        }
        self.mounts.push(Mount { point, fs });
        self.mounts
            .sort_by_key(|m| std::cmp::Reverse(m.point.len()));
    }

    /// The root filesystem.
    pub fn root(&self) -> &Filesystem {
        &self.mounts.last().expect("a guest always has its root").fs
    }

    fn route(&self, path: &str) -> (&Filesystem, String) {
        for m in &self.mounts {
            if m.point == "/" {
                break;
            }
            if let Some(rest) = path.strip_prefix(m.point.as_str()) {
                if rest.is_empty() {
                    return (&m.fs, "/".into());
                }
                if rest.starts_with('/') {
                    return (&m.fs, rest.to_string());
                }
            }
        }
        (self.root(), path.to_string())
    }

    /// What `path` is, following symlinks; `None` if it does not resolve.
    pub fn kind(&self, path: &str) -> Option<FileKind> {
        let (fs, p) = self.route(path);
        fs.stat(&p).ok().map(|s| s.kind)
    }

    pub fn is_file(&self, path: &str) -> bool {
        self.kind(path) == Some(FileKind::File)
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.kind(path) == Some(FileKind::Directory)
    }

    /// Size of a regular file.
    pub fn file_size(&self, path: &str) -> Option<u64> {
        let (fs, p) = self.route(path);
        fs.stat(&p)
            .ok()
            .filter(|s| s.kind == FileKind::File)
            .map(|s| s.size)
    }

    /// A whole regular file of at most `cap` bytes. `Ok(None)` when there is no such file;
    /// `Err` when it is larger than `cap` or cannot be read.
    pub fn read(&self, path: &str, cap: u64) -> Result<Option<Vec<u8>>, String> {
        let (fs, p) = self.route(path);
        // Most guest files fit in one read: ask for it directly (one path lookup on the host
        // instead of two); `invalid` is the host's answer for a directory or device.
        let mut data = match fs.read_file(&p, 0, MAX_READ) {
            Ok(d) => d,
            Err(DiskError::NotFound(_) | DiskError::Invalid(_)) => return Ok(None),
            Err(e) => return Err(format!("{path}: {e}")),
        };
        let size = if data.len() < MAX_READ as usize {
            data.len() as u64
        } else {
            fs.stat(&p).map_err(|e| format!("{path}: {e}"))?.size
        };
        if size > cap {
            return Err(format!("{path}: {size} bytes, more than the {cap} read"));
        }
        data.reserve((size as usize).saturating_sub(data.len()));
        while (data.len() as u64) < size {
            let want = MAX_READ.min((size - data.len() as u64) as u32);
            let chunk = fs
                .read_file(&p, data.len() as u64, want)
                .map_err(|e| format!("{path}: {e}"))?;
            if chunk.is_empty() {
                break;
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Some(data))
    }

    /// A small text file (config files: 1 MiB at most), lossily decoded; `None` if absent or
    /// unreadable.
    pub fn read_small(&self, path: &str) -> Option<Vec<u8>> {
        self.read(path, 1 << 20).ok().flatten()
    }

    /// The first `n` bytes (at most 1 MiB) of a regular file.
    pub fn head(&self, path: &str, n: u32) -> Option<Vec<u8>> {
        let (fs, p) = self.route(path);
        fs.read_file(&p, 0, n.clamp(1, MAX_READ)).ok()
    }

    /// Random access to a big file (package databases), through a chunk cache.
    pub fn reader(&self, path: &str) -> Option<ChunkCache<Fetch<'_>>> {
        let (fs, p) = self.route(path);
        let st = fs.stat(&p).ok().filter(|s| s.kind == FileKind::File)?;
        let fetch: Fetch<'_> =
            Box::new(move |offset, len| fs.read_file(&p, offset, len).map_err(|e| e.to_string()));
        Some(ChunkCache::new(fetch, st.size, MAX_READ, 16))
    }

    /// Entries of a directory, sorted by name; empty if it is not one.
    pub fn list(&self, path: &str) -> Vec<DirEntry> {
        let (fs, p) = self.route(path);
        let mut entries = fs
            .read_dir(&p, DIR_LIMIT)
            .map(|l| l.entries)
            .unwrap_or_default();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// The target of a symlink.
    pub fn read_link(&self, path: &str) -> Option<String> {
        let (fs, p) = self.route(path);
        fs.read_link(&p).ok()
    }

    /// The real spelling of `path` on a case-insensitive lookup (Windows paths), walking one
    /// component at a time.
    pub fn resolve_nocase(&self, path: &str) -> Option<String> {
        let mut current = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let dir = if current.is_empty() {
                "/".to_string()
            } else {
                current.clone()
            };
            let entry = self
                .list(&dir)
                .into_iter()
                .find(|e| e.name.eq_ignore_ascii_case(part))?;
            current = format!("{current}/{}", entry.name);
        }
        Some(if current.is_empty() {
            "/".into()
        } else {
            current
        })
    }
}
