//! Path resolution shared by every reader: lexical `..`, symlinks followed with a hop limit.
//!
//! Readers implement [`Raw`], which only ever sees canonical paths (components with no `.`,
//! `..` or symlink before the last one); [`Tree`] turns user paths into those.

use crate::threaded::Threaded;
use crate::{
    DirEntry, Error, FileKind, Filesystem, FsType, MAX_LINK_TARGET, MAX_READ, MAX_SYMLINK_HOPS,
    Metadata, ReadDir, Result,
};
use std::collections::VecDeque;

/// The per-filesystem primitives, on canonical paths (no symlink in any but the last component).
pub(crate) trait Raw {
    /// Metadata of `path` without following a final symlink.
    fn lstat(&mut self, path: &[String]) -> Result<Metadata>;
    /// Target of the symlink `path`.
    fn read_link(&mut self, path: &[String]) -> Result<String>;
    /// Up to `limit` entries of directory `path`.
    fn read_dir(&mut self, path: &[String], limit: usize) -> Result<ReadDir>;
    /// Up to `len` bytes of regular file `path` at `offset` (`len <= MAX_READ`).
    fn read(&mut self, path: &[String], offset: u64, len: usize) -> Result<Vec<u8>>;
}

/// Most components of a resolved path (a PATH_MAX path of one-letter names).
const MAX_DEPTH: usize = MAX_LINK_TARGET / 2;

/// Joins canonical components back into an absolute path, for messages.
pub(crate) fn display(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

/// A filesystem: a reader on its own thread plus what was learnt when opening it.
pub(crate) struct Tree {
    pub(crate) raw: Threaded,
    pub(crate) fs_type: FsType,
    pub(crate) label: Option<String>,
    pub(crate) uuid: Option<String>,
}

fn split(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
}

impl Tree {
    /// Resolves `path` to canonical components; the last symlink is followed if `follow_last`.
    fn resolve(&self, path: &str, follow_last: bool) -> Result<Vec<String>> {
        if !path.starts_with('/') {
            return Err(Error::InvalidPath(path.to_owned()));
        }
        if path.len() > MAX_LINK_TARGET {
            return Err(Error::Limit(format!("path of {} bytes", path.len())));
        }
        let mut todo: VecDeque<String> = split(path).collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0u32;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            cur.push(c);
            // Each component costs a lookup from the root; a path as deep as PATH_MAX allows
            // is the most a guest could have made.
            if cur.len() > MAX_DEPTH {
                return Err(Error::Limit(format!(
                    "{path}: more than {MAX_DEPTH} components"
                )));
            }
            let last = todo.is_empty();
            if last && !follow_last {
                break;
            }
            let meta = self.raw_lstat(&cur)?;
            match meta.kind {
                FileKind::Symlink => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Error::TooManySymlinks(path.to_owned()));
                    }
                    let target = self.raw_read_link(&cur)?;
                    cur.pop();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    for c in split(&target).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front(c);
                    }
                }
                FileKind::Dir => {}
                _ if !last => return Err(Error::NotADirectory(display(&cur))),
                _ => {}
            }
        }
        Ok(cur)
    }

    fn raw_lstat(&self, p: &[String]) -> Result<Metadata> {
        let p = p.to_vec();
        self.raw.call(move |r| r.lstat(&p))
    }

    fn raw_read_link(&self, p: &[String]) -> Result<String> {
        let p = p.to_vec();
        let target = self.raw.call(move |r| r.read_link(&p))?;
        if target.len() > MAX_LINK_TARGET {
            return Err(Error::Limit(format!(
                "symlink target of {} bytes",
                target.len()
            )));
        }
        Ok(target)
    }
}

impl Filesystem for Tree {
    fn fs_type(&self) -> FsType {
        self.fs_type
    }
    fn label(&self) -> Option<String> {
        self.label.clone()
    }
    fn uuid(&self) -> Option<String> {
        self.uuid.clone()
    }
    fn stat(&self, path: &str) -> Result<Metadata> {
        let p = self.resolve(path, true)?;
        self.raw_lstat(&p)
    }
    fn lstat(&self, path: &str) -> Result<Metadata> {
        let p = self.resolve(path, false)?;
        self.raw_lstat(&p)
    }
    fn read_dir(&self, path: &str, limit: usize) -> Result<ReadDir> {
        let p = self.resolve(path, true)?;
        if self.raw_lstat(&p)?.kind != FileKind::Dir {
            return Err(Error::NotADirectory(display(&p)));
        }
        let mut dir = self.raw.call(move |r| r.read_dir(&p, limit))?;
        let keep: Vec<DirEntry> = dir
            .entries
            .drain(..)
            .filter(|e| e.name != "." && e.name != "..")
            .collect();
        dir.entries = keep;
        Ok(dir)
    }
    fn read_file(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len > MAX_READ {
            return Err(Error::Limit(format!(
                "read of {len} bytes (at most {MAX_READ})"
            )));
        }
        let p = self.resolve(path, true)?;
        let meta = self.raw_lstat(&p)?;
        if meta.kind != FileKind::File {
            return Err(Error::NotAFile(display(&p)));
        }
        let len = len.min(
            meta.size
                .saturating_sub(offset)
                .try_into()
                .unwrap_or(usize::MAX),
        );
        if len == 0 {
            return Ok(Vec::new());
        }
        self.raw.call(move |r| r.read(&p, offset, len))
    }
    fn read_link(&self, path: &str) -> Result<String> {
        let p = self.resolve(path, false)?;
        if self.raw_lstat(&p)?.kind != FileKind::Symlink {
            return Err(Error::NotASymlink(display(&p)));
        }
        self.raw_read_link(&p)
    }
}
