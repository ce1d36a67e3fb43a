//! A bounded filesystem walker: depth and entry caps, `lstat` only, symlinks never followed.
//!
//! Walking an untrusted filesystem must not let the image decide how much work the handler
//! does: a directory with millions of entries, a very deep tree or a corrupt directory that
//! lists itself all end at a cap, and the walk says it was cut short.

use crate::bindings::guestkit::handler::disk::{DirListing, DiskError, FileKind, Filesystem, Stat};
use std::collections::VecDeque;

/// The two calls the walker needs; implemented for [`Filesystem`] (and by tests for a fake).
pub trait WalkSource {
    /// Metadata of `path` itself (never following a final symlink).
    fn lstat(&self, path: &str) -> Result<Stat, DiskError>;
    /// Up to `limit` entries of the directory `path`.
    fn read_dir(&self, path: &str, limit: u32) -> Result<DirListing, DiskError>;
}

impl WalkSource for Filesystem {
    fn lstat(&self, path: &str) -> Result<Stat, DiskError> {
        Filesystem::lstat(self, path)
    }
    fn read_dir(&self, path: &str, limit: u32) -> Result<DirListing, DiskError> {
        Filesystem::read_dir(self, path, limit)
    }
}

/// Most entries the host returns for one directory listing.
pub const MAX_DIR_ENTRIES: u32 = 10_000;

/// Caps of a walk. The defaults suit a whole-system scan of a typical guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkOptions {
    /// Deepest level descended into: the root's children are depth 1. Directories at this
    /// depth are yielded but not listed.
    pub max_depth: u32,
    /// Most entries yielded in total; the walk stops (truncated) after that many.
    pub max_entries: u64,
    /// Most entries read from any one directory (at most [`MAX_DIR_ENTRIES`]); the rest of a
    /// larger directory is skipped (truncated).
    pub max_dir_entries: u32,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            max_depth: 32,
            max_entries: 100_000,
            max_dir_entries: MAX_DIR_ENTRIES,
        }
    }
}

/// One entry found by a walk.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// Absolute path inside the filesystem, `/`-separated.
    pub path: String,
    /// The entry's own metadata (`lstat`: a symlink is reported as a symlink).
    pub stat: Stat,
    /// 1 for the root's children, 2 for theirs, and so on.
    pub depth: u32,
}

/// A walk that could not read part of the tree.
#[derive(Debug, Clone)]
pub struct WalkError {
    /// The path the failed call was about.
    pub path: String,
    /// What the host said.
    pub error: DiskError,
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.path,
            self.error.kind(),
            self.error.message()
        )
    }
}

impl std::error::Error for WalkError {}

impl From<WalkError> for crate::HandlerError {
    fn from(e: WalkError) -> Self {
        crate::HandlerError::from(e.error).context(e.path)
    }
}

/// Walks the tree under `root` within `options`' caps.
///
/// Yields every entry below `root` (not `root` itself) as `Ok(WalkEntry)`, directory by
/// directory: the entries of one directory sorted by name, then its subdirectories' contents.
/// Symlinks are yielded as symlinks and never followed. A directory or entry that cannot be
/// read is yielded as `Err(WalkError)` and the walk goes on with the rest; stop at the first
/// error with `?` if partial results are no use. After the walk, [`Walker::truncated`] says
/// whether a cap cut it short.
///
/// ```ignore
/// let mut walker = sdk::disk::walk(&fs, "/etc", WalkOptions { max_depth: 2, ..Default::default() });
/// for entry in &mut walker {
///     let entry = entry?;
///     if entry.stat.kind == FileKind::File { /* ... */ }
/// }
/// let complete = !walker.truncated();
/// ```
pub fn walk<'a, S: WalkSource + ?Sized>(
    fs: &'a S,
    root: &str,
    options: WalkOptions,
) -> Walker<'a, S> {
    let root = if root.len() > 1 {
        root.trim_end_matches('/').to_string()
    } else {
        root.to_string()
    };
    Walker {
        fs,
        options,
        dirs: vec![(root, 0)],
        pending: VecDeque::new(),
        found: Vec::new(),
        yielded: 0,
        truncated: false,
    }
}

/// The iterator [`walk`] returns.
pub struct Walker<'a, S: WalkSource + ?Sized> {
    fs: &'a S,
    options: WalkOptions,
    /// Directories still to list, with their depth (the last one is listed next).
    dirs: Vec<(String, u32)>,
    /// Entries of the directory being walked: path and depth, in name order.
    pending: VecDeque<(String, u32)>,
    /// Subdirectories of the directory being walked, in name order, to list after it.
    found: Vec<(String, u32)>,
    yielded: u64,
    truncated: bool,
}

impl<S: WalkSource + ?Sized> Walker<'_, S> {
    /// Whether a cap (entries in total, entries per directory) cut the walk short so far.
    /// Directories at `max_depth` being left unlisted does not count: that is the depth the
    /// caller asked for.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Entries yielded so far.
    pub fn yielded(&self) -> u64 {
        self.yielded
    }

    fn list(&mut self, dir: String, depth: u32) -> Result<(), WalkError> {
        let limit = self.options.max_dir_entries.clamp(1, MAX_DIR_ENTRIES);
        let listing = self.fs.read_dir(&dir, limit).map_err(|error| WalkError {
            path: dir.clone(),
            error,
        })?;
        if listing.truncated {
            self.truncated = true;
        }
        let mut names: Vec<String> = listing
            .entries
            .into_iter()
            .map(|e| e.name)
            // A name the host should never send (and a corrupt directory could hold) would
            // make paths ambiguous; skip it rather than build a wrong path.
            .filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains('/'))
            .collect();
        names.sort_unstable();
        names.dedup();
        let prefix = if dir == "/" { "" } else { dir.as_str() };
        self.pending.extend(
            names
                .into_iter()
                .map(|name| (format!("{prefix}/{name}"), depth + 1)),
        );
        Ok(())
    }
}

impl<S: WalkSource + ?Sized> Iterator for Walker<'_, S> {
    type Item = Result<WalkEntry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.yielded >= self.options.max_entries {
                if !self.pending.is_empty() || !self.found.is_empty() || !self.dirs.is_empty() {
                    self.truncated = true;
                    self.pending.clear();
                    self.found.clear();
                    self.dirs.clear();
                }
                return None;
            }
            if let Some((path, depth)) = self.pending.pop_front() {
                let stat = match self.fs.lstat(&path) {
                    Ok(stat) => stat,
                    Err(error) => return Some(Err(WalkError { path, error })),
                };
                if stat.kind == FileKind::Directory && depth < self.options.max_depth {
                    self.found.push((path.clone(), depth));
                }
                self.yielded += 1;
                return Some(Ok(WalkEntry { path, stat, depth }));
            }
            // The directory is done: its subdirectories go on the stack so the first name's
            // subtree is walked first.
            while let Some(dir) = self.found.pop() {
                self.dirs.push(dir);
            }
            let (dir, depth) = self.dirs.pop()?;
            if let Err(e) = self.list(dir, depth) {
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::guestkit::handler::disk::DirEntry;
    use std::collections::BTreeMap;

    /// path -> kind; a directory's children are the paths one level below it.
    struct Fake(BTreeMap<String, FileKind>);

    impl Fake {
        fn new(paths: &[(&str, FileKind)]) -> Self {
            let mut map: BTreeMap<String, FileKind> =
                paths.iter().map(|(p, k)| (p.to_string(), *k)).collect();
            map.insert("/".into(), FileKind::Directory);
            Fake(map)
        }
    }

    fn stat(kind: FileKind) -> Stat {
        Stat {
            kind,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            nlink: 1,
            inode: 0,
        }
    }

    impl WalkSource for Fake {
        fn lstat(&self, path: &str) -> Result<Stat, DiskError> {
            match self.0.get(path) {
                Some(k) => Ok(stat(*k)),
                None => Err(DiskError::NotFound(path.into())),
            }
        }
        fn read_dir(&self, path: &str, limit: u32) -> Result<DirListing, DiskError> {
            if path == "/broken" {
                return Err(DiskError::Corrupt("bad block".into()));
            }
            let prefix = if path == "/" {
                "/".to_string()
            } else {
                format!("{path}/")
            };
            // Reverse order, to check that the walker sorts.
            let names: Vec<&String> = self
                .0
                .keys()
                .rev()
                .filter(|p| p.len() > prefix.len() && p.starts_with(&prefix))
                .filter(|p| !p[prefix.len()..].contains('/'))
                .collect();
            let entries: Vec<DirEntry> = names
                .iter()
                .take(limit as usize)
                .map(|p| DirEntry {
                    name: p[prefix.len()..].to_string(),
                    kind: self.0[*p],
                    inode: 0,
                })
                .collect();
            Ok(DirListing {
                truncated: names.len() > entries.len(),
                entries,
            })
        }
    }

    fn tree() -> Fake {
        use FileKind::*;
        Fake::new(&[
            ("/a", Directory),
            ("/a/x", File),
            ("/a/deeper", Directory),
            ("/a/deeper/y", File),
            ("/b", File),
            ("/link", Symlink),
            ("/z", Directory),
            ("/z/1", File),
        ])
    }

    fn paths(w: &mut Walker<'_, Fake>) -> Vec<String> {
        w.map(|e| e.unwrap().path).collect()
    }

    #[test]
    fn walks_directory_by_directory_in_name_order() {
        let fs = tree();
        let mut w = walk(&fs, "/", WalkOptions::default());
        assert_eq!(
            paths(&mut w),
            [
                "/a",
                "/b",
                "/link",
                "/z",
                "/a/deeper",
                "/a/x",
                "/a/deeper/y",
                "/z/1"
            ]
        );
        assert!(!w.truncated());
        assert_eq!(w.yielded(), 8);
    }

    #[test]
    fn depth_cap_lists_no_deeper_and_is_not_truncation() {
        let fs = tree();
        let mut w = walk(
            &fs,
            "/",
            WalkOptions {
                max_depth: 1,
                ..Default::default()
            },
        );
        assert_eq!(paths(&mut w), ["/a", "/b", "/link", "/z"]);
        assert!(!w.truncated());
        let mut w = walk(&fs, "/a/", WalkOptions::default());
        assert_eq!(paths(&mut w), ["/a/deeper", "/a/x", "/a/deeper/y"]);
    }

    #[test]
    fn entry_caps_truncate() {
        let fs = tree();
        let mut w = walk(
            &fs,
            "/",
            WalkOptions {
                max_entries: 3,
                ..Default::default()
            },
        );
        assert_eq!(paths(&mut w), ["/a", "/b", "/link"]);
        assert!(w.truncated());
        let mut w = walk(
            &fs,
            "/",
            WalkOptions {
                max_dir_entries: 1,
                ..Default::default()
            },
        );
        let found = paths(&mut w);
        assert!(w.truncated());
        assert!(found.len() < 8, "{found:?}");
    }

    #[test]
    fn errors_are_yielded_and_the_walk_goes_on() {
        use FileKind::*;
        let fs = Fake::new(&[("/broken", Directory), ("/ok", Directory), ("/ok/f", File)]);
        let results: Vec<Result<WalkEntry, WalkError>> =
            walk(&fs, "/", WalkOptions::default()).collect();
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert_eq!(errors, ["/broken: corrupt: bad block"]);
        assert!(
            results
                .iter()
                .any(|r| r.as_ref().is_ok_and(|e| e.path == "/ok/f"))
        );
        let e: crate::HandlerError = results.into_iter().find_map(Result::err).unwrap().into();
        assert_eq!(e.message(), "/broken: corrupt: bad block");
    }
}
