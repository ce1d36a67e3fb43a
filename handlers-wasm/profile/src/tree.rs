//! The guest filesystem as the checks see it: a small read-only [`Tree`] trait (the WIT
//! `filesystem` resource implements it; tests use an in-memory tree), and [`Scan`], which reads
//! through it under byte and entry budgets and turns every problem into a warning instead of an
//! error, so one bad file costs one check, not the job.

use serde::Serialize;

/// Kind of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What `lstat`/`stat` report.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One directory entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
}

/// Why a tree call failed.
#[derive(Debug)]
pub enum FsError {
    /// The path does not exist (or a component of it is not a directory).
    Absent,
    /// Anything else: corrupt structures, I/O, limits.
    Other(String),
}

/// Read-only access to one filesystem, with the bounds of the WIT `disk` interface.
pub trait Tree {
    fn stat(&self, path: &str) -> Result<Meta, FsError>;
    fn lstat(&self, path: &str) -> Result<Meta, FsError>;
    /// Up to `limit` entries; the flag is true when the directory holds more.
    fn read_dir(&self, path: &str, limit: u32) -> Result<(Vec<Entry>, bool), FsError>;
    /// Up to `len` (at most [`MAX_READ`]) bytes from `offset`.
    fn read_at(&self, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, FsError>;
    fn read_link(&self, path: &str) -> Result<String, FsError>;
}

/// Largest read the host serves per call.
pub const MAX_READ: u32 = 1 << 20;
/// Largest configuration file read whole.
pub const MAX_CONFIG_FILE: u64 = 1 << 20;
/// Bytes read per root filesystem, all files together.
pub const MAX_BYTES_PER_ROOT: u64 = 32 << 20;
/// Directory entries looked at per root filesystem, all walks together.
pub const MAX_ENTRIES_PER_ROOT: u64 = 200_000;
/// Entries asked for per directory listing (the host's own cap).
pub const MAX_DIR_LISTING: u32 = 10_000;
/// Warnings kept per root; more are counted in one last warning.
const MAX_WARNINGS: usize = 100;

/// A problem met while reading the guest: the result is partial, not wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub message: String,
}

/// A text file, split into lines (without their line ends).
pub struct Text {
    pub path: String,
    pub lines: Vec<String>,
}

impl Text {
    /// Lines with their 1-based numbers.
    pub fn numbered(&self) -> impl Iterator<Item = (u32, &str)> {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| (u32::try_from(i + 1).unwrap_or(u32::MAX), l.as_str()))
    }
}

/// Splits `data` into lines if it is text: UTF-8 with no NUL byte. Configuration files that are
/// not text are damaged (or not what their name says), and guessing at them would invent
/// findings.
pub fn text_lines(data: &[u8]) -> Option<Vec<String>> {
    if data.contains(&0) {
        return None;
    }
    let s = std::str::from_utf8(data).ok()?;
    // A final newline ends the last line rather than starting another.
    let s = s.strip_suffix('\n').unwrap_or(s);
    if s.is_empty() {
        return Some(Vec::new());
    }
    Some(
        s.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect(),
    )
}

/// Reads one root filesystem under budgets, collecting warnings.
pub struct Scan<'a> {
    tree: &'a dyn Tree,
    bytes_left: u64,
    entries_left: u64,
    warnings: Vec<Warning>,
    dropped_warnings: u64,
}

impl<'a> Scan<'a> {
    /// A scan of `tree` with the default budgets.
    pub fn new(tree: &'a dyn Tree) -> Self {
        Scan {
            tree,
            bytes_left: MAX_BYTES_PER_ROOT,
            entries_left: MAX_ENTRIES_PER_ROOT,
            warnings: Vec::new(),
            dropped_warnings: 0,
        }
    }

    /// Records a warning about `path` (and `line`, if known).
    pub fn warn(&mut self, path: &str, line: Option<u32>, message: impl Into<String>) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(Warning {
                path: path.to_string(),
                line,
                message: message.into(),
            });
        } else {
            self.dropped_warnings += 1;
        }
    }

    /// The warnings so far, with a last one counting any that were dropped.
    pub fn into_warnings(mut self) -> Vec<Warning> {
        if self.dropped_warnings > 0 {
            self.warnings.push(Warning {
                path: "/".into(),
                line: None,
                message: format!("{} more warnings not shown", self.dropped_warnings),
            });
        }
        self.warnings
    }

    /// Metadata of `path` itself; `None` when absent or unreadable (the latter warned).
    pub fn lstat(&mut self, path: &str) -> Option<Meta> {
        match self.tree.lstat(path) {
            Ok(m) => Some(m),
            Err(FsError::Absent) => None,
            Err(FsError::Other(e)) => {
                self.warn(path, None, format!("cannot stat: {e}"));
                None
            }
        }
    }

    /// Metadata of `path`, following symlinks; `None` when absent or unreadable (warned).
    pub fn stat(&mut self, path: &str) -> Option<Meta> {
        match self.tree.stat(path) {
            Ok(m) => Some(m),
            Err(FsError::Absent) => None,
            Err(FsError::Other(e)) => {
                self.warn(path, None, format!("cannot stat: {e}"));
                None
            }
        }
    }

    /// True when `path` exists (following symlinks).
    pub fn exists(&mut self, path: &str) -> bool {
        self.stat(path).is_some()
    }

    /// True when `path` is a directory (following symlinks).
    pub fn is_dir(&mut self, path: &str) -> bool {
        self.stat(path).is_some_and(|m| m.kind == Kind::Dir)
    }

    /// The target of a symlink, if readable.
    pub fn read_link(&mut self, path: &str) -> Option<String> {
        match self.tree.read_link(path) {
            Ok(t) => Some(t),
            Err(FsError::Absent) => None,
            Err(FsError::Other(e)) => {
                self.warn(path, None, format!("cannot read link: {e}"));
                None
            }
        }
    }

    /// The entries of a directory, sorted by name, within the entry budget; `None` when it is
    /// absent or not a directory. A cut listing is warned about and used as far as it goes.
    pub fn list_dir(&mut self, path: &str) -> Option<Vec<Entry>> {
        if self.entries_left == 0 {
            self.warn(path, None, "entry budget exhausted; directory not listed");
            return None;
        }
        let limit = u32::try_from(self.entries_left.min(u64::from(MAX_DIR_LISTING)))
            .unwrap_or(MAX_DIR_LISTING);
        match self.tree.read_dir(path, limit) {
            Ok((mut entries, truncated)) => {
                self.entries_left = self.entries_left.saturating_sub(entries.len() as u64);
                if truncated {
                    self.warn(
                        path,
                        None,
                        format!("directory listing cut at {} entries", entries.len()),
                    );
                }
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                Some(entries)
            }
            Err(FsError::Absent) => None,
            Err(FsError::Other(e)) => {
                self.warn(path, None, format!("cannot list directory: {e}"));
                None
            }
        }
    }

    /// A whole file of at most `max` bytes; `None` when absent, too big, over budget or
    /// unreadable (all but the first warned).
    pub fn read_file(&mut self, path: &str, max: u64) -> Option<Vec<u8>> {
        let meta = self.stat(path)?;
        if meta.kind != Kind::File {
            if meta.kind != Kind::Dir {
                self.warn(path, None, "not a regular file; skipped");
            }
            return None;
        }
        if meta.size > max {
            self.warn(
                path,
                None,
                format!("{} bytes, more than the {max} read; skipped", meta.size),
            );
            return None;
        }
        if meta.size > self.bytes_left {
            self.warn(path, None, "read budget exhausted; skipped");
            return None;
        }
        self.bytes_left -= meta.size;
        let mut data = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while (data.len() as u64) < meta.size {
            let want = u64::from(MAX_READ).min(meta.size - data.len() as u64);
            let want = u32::try_from(want).unwrap_or(MAX_READ);
            match self.tree.read_at(path, data.len() as u64, want) {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    let room = usize::try_from(meta.size).unwrap_or(usize::MAX) - data.len();
                    data.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Err(FsError::Absent) => return None,
                Err(FsError::Other(e)) => {
                    self.warn(path, None, format!("cannot read: {e}"));
                    return None;
                }
            }
        }
        Some(data)
    }

    /// A text configuration file; `None` when absent or unusable (warned when it exists but is
    /// not text or cannot be read).
    pub fn read_text(&mut self, path: &str) -> Option<Text> {
        let data = self.read_file(path, MAX_CONFIG_FILE)?;
        match text_lines(&data) {
            Some(lines) => Some(Text {
                path: path.to_string(),
                lines,
            }),
            None => {
                self.warn(
                    path,
                    None,
                    "not a text file (NUL bytes or invalid UTF-8); its checks were skipped",
                );
                None
            }
        }
    }
}

/// Joins a directory and a name into an absolute path.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

pub mod mem {
    //! An in-memory tree, for tests and fuzzing.
    use super::*;
    use std::collections::BTreeMap;

    /// A tree held in memory: path -> (metadata, content or symlink target). Symlinks must
    /// point at absolute paths.
    #[derive(Default)]
    pub struct MemTree {
        pub nodes: BTreeMap<String, (Meta, Vec<u8>)>,
    }

    fn meta(kind: Kind, mode: u32, size: u64) -> Meta {
        Meta {
            kind,
            size,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    impl MemTree {
        /// A tree holding only `/`.
        pub fn new() -> Self {
            let mut t = MemTree::default();
            t.nodes
                .insert("/".into(), (meta(Kind::Dir, 0o755, 0), Vec::new()));
            t
        }

        fn parents(&mut self, path: &str) {
            let mut p = String::new();
            let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                p.push('/');
                p.push_str(part);
                self.nodes
                    .entry(p.clone())
                    .or_insert((meta(Kind::Dir, 0o755, 0), Vec::new()));
            }
        }

        /// Adds a text file with mode 0644 (and its parent directories).
        pub fn file(&mut self, path: &str, data: &str) -> &mut Self {
            self.file_mode(path, data.as_bytes(), 0o644)
        }

        /// Adds a file with `data` and `mode` (and its parent directories).
        pub fn file_mode(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
            self.parents(path);
            self.nodes.insert(
                path.into(),
                (meta(Kind::File, mode, data.len() as u64), data.to_vec()),
            );
            self
        }

        /// Adds a directory with `mode` (and its parents).
        pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
            self.parents(path);
            self.nodes
                .insert(path.into(), (meta(Kind::Dir, mode, 0), Vec::new()));
            self
        }

        /// Adds a symlink to the absolute path `target`.
        pub fn link(&mut self, path: &str, target: &str) -> &mut Self {
            self.parents(path);
            self.nodes.insert(
                path.into(),
                (
                    meta(Kind::Symlink, 0o777, target.len() as u64),
                    target.as_bytes().to_vec(),
                ),
            );
            self
        }

        fn get(&self, path: &str) -> Result<&(Meta, Vec<u8>), FsError> {
            self.nodes.get(path).ok_or(FsError::Absent)
        }
    }

    impl Tree for MemTree {
        fn stat(&self, path: &str) -> Result<Meta, FsError> {
            // Links in tests point at absolute paths only.
            let (m, data) = self.get(path)?;
            if m.kind == Kind::Symlink {
                let target = String::from_utf8_lossy(data).to_string();
                return self.get(&target).map(|n| n.0);
            }
            Ok(*m)
        }
        fn lstat(&self, path: &str) -> Result<Meta, FsError> {
            self.get(path).map(|n| n.0)
        }
        fn read_dir(&self, path: &str, limit: u32) -> Result<(Vec<Entry>, bool), FsError> {
            let prefix = join(path, "");
            let entries: Vec<Entry> = self
                .nodes
                .iter()
                .filter(|(p, _)| {
                    p.len() > prefix.len()
                        && p.starts_with(&prefix)
                        && !p[prefix.len()..].contains('/')
                })
                .map(|(p, (m, _))| Entry {
                    name: p[prefix.len()..].to_string(),
                    kind: m.kind,
                })
                .collect();
            let truncated = entries.len() > limit as usize;
            Ok((
                entries.into_iter().take(limit as usize).collect(),
                truncated,
            ))
        }
        fn read_at(&self, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, FsError> {
            let (_, data) = self.get(path)?;
            let start = (offset as usize).min(data.len());
            let end = (start + len as usize).min(data.len());
            Ok(data[start..end].to_vec())
        }
        fn read_link(&self, path: &str) -> Result<String, FsError> {
            let (_, data) = self.get(path)?;
            Ok(String::from_utf8_lossy(data).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_keep_numbering_and_reject_binary() {
        assert_eq!(text_lines(b"a\nb\n").unwrap(), vec!["a", "b"]);
        assert_eq!(text_lines(b"a\r\n\nb").unwrap(), vec!["a", "", "b"]);
        assert_eq!(text_lines(b"").unwrap(), Vec::<String>::new());
        assert!(text_lines(b"a\0b").is_none());
        assert!(text_lines(&[0xff, 0xfe, b'a']).is_none());
    }

    #[test]
    fn oversized_and_binary_files_become_warnings() {
        let mut t = mem::MemTree::new();
        t.file_mode(
            "/etc/big",
            &vec![b'a'; (MAX_CONFIG_FILE + 1) as usize],
            0o644,
        );
        t.file_mode("/etc/bin", b"\x00\x01garbage", 0o644);
        let mut scan = Scan::new(&t);
        assert!(scan.read_text("/etc/big").is_none());
        assert!(scan.read_text("/etc/bin").is_none());
        assert!(scan.read_text("/etc/none").is_none());
        let w = scan.into_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(w[0].path, "/etc/big");
        assert_eq!(w[1].path, "/etc/bin");
    }
}
