//! The error type of this crate.

/// Errors of the filesystem layer. Bad input is always one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device below failed or the on-disk structures are corrupt.
    #[error(transparent)]
    Block(#[from] guestkit_block::Error),
    /// No such file or directory.
    #[error("{0}: not found")]
    NotFound(String),
    /// A non-final component, or the target of `read_dir`, is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// `read_file` on something that is not a regular file.
    #[error("{0}: not a regular file")]
    NotAFile(String),
    /// `read_link` on something that is not a symlink.
    #[error("{0}: not a symlink")]
    NotASymlink(String),
    /// More than [`MAX_SYMLINK_HOPS`](crate::MAX_SYMLINK_HOPS) symlinks while resolving.
    #[error("{0}: too many levels of symbolic links")]
    TooManySymlinks(String),
    /// A path that is not absolute or otherwise malformed.
    #[error("invalid path {0:?}")]
    InvalidPath(String),
    /// The structures are malformed.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which structure.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A valid feature (or filesystem kind) this crate does not read.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A bound was hit (read size, link length).
    #[error("limit exceeded: {0}")]
    Limit(String),
}

impl Error {
    /// A corrupt-structure error.
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
