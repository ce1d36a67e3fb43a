//! Guest-side SDK for guestkit handler components: the WIT bindings of the
//! `guestkit:handler` world plus the helpers most handlers need.
//!
//! - [`export_handler!`] exports a type implementing [`Handler`] (`describe` + `handle`);
//! - [`JobExt::payload`] parses the job's JSON payload into your type, and a mismatch is an
//!   `invalid-input` error naming the field (`payload.max_depth: invalid type: ...`);
//! - [`Context`] adds context to errors (`.context("reading /etc/os-release")?`) on their way
//!   to a [`HandlerError`], keeping their kind;
//! - [`disk`] opens granted images and filesystems, reads whole files up to a cap and walks
//!   trees within depth and entry caps ([`disk::walk`]), never following symlinks;
//! - [`log`] and the [`info!`]-style macros write to the job's log; [`Progress`] reports
//!   progress at most once per interval.
//!
//! ```ignore
//! use guestkit_handler_sdk::prelude::*;
//! use guestkit_handler_sdk::{self as sdk, disk};
//!
//! #[derive(serde::Deserialize)]
//! struct Payload { path: String }
//!
//! struct Cat;
//! impl Handler for Cat {
//!     fn describe() -> HandlerInfo {
//!         HandlerInfo {
//!             name: "example.cat".into(),
//!             version: "0.1.0".into(),
//!             operations: vec!["cat".into()],
//!             description: "Reads one file from the first filesystem of the image.".into(),
//!             payload_schema: None,
//!         }
//!     }
//!     fn handle(job: Job) -> Result<Output, HandlerError> {
//!         let payload: Payload = job.payload()?;
//!         let image = disk::open(job.image()?).context("opening the image")?;
//!         let volume = disk::filesystem_volumes(&image)?.into_iter().next()
//!             .context("the image holds no filesystem")?;
//!         let fs = image.open_filesystem(&volume.id).context("opening the filesystem")?;
//!         let text = disk::read_to_string(&fs, &payload.path, 1 << 20)
//!             .with_context(|| format!("reading {}", payload.path))?;
//!         sdk::output(&serde_json::json!({ "text": text }))
//!     }
//! }
//! sdk::export_handler!(Cat);
//! ```

#![warn(missing_docs)]

mod error;
pub mod progress;
mod walk;

pub use error::Context;
pub use progress::Progress;

/// The bindings wit-bindgen generates for the `handler` world (used by [`export_handler!`];
/// the useful parts are re-exported at the crate root and in [`disk`] and [`log`]).
#[doc(hidden)]
#[allow(clippy::too_many_arguments, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "guestkit_handler_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

/// What a handler implements: `describe()` (called once at load time) and `handle(job)`
/// (called once per job, in a fresh instance).
pub use bindings::Guest as Handler;
pub use bindings::guestkit::handler::types::{HandlerError, HandlerInfo, Job, Output};

/// The names most handlers use: `use guestkit_handler_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::disk::{FileKind, Filesystem, Image};
    pub use crate::{Context, Handler, HandlerError, HandlerInfo, Job, JobExt, Output, Progress};
}

/// Exports a type implementing [`Handler`] as this component's `describe` and `handle`.
#[macro_export]
macro_rules! export_handler {
    ($ty:ident) => {
        $crate::bindings::export!($ty with_types_in $crate::bindings);
    };
}

/// Logging into the job's log stream. The host keeps at most 1000 lines per job (the rest are
/// dropped and counted) and truncates long lines; log what helps someone debug a job, not
/// every file visited. The [`info!`](crate::info) family of macros formats like `format!`.
pub mod log {
    pub use crate::bindings::guestkit::handler::log::{Level, log};

    /// Logs at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message)
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::log($crate::log::Level::$level, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__log!(Trace, $($arg)+) };
}
/// Logs a `format!`-style message at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__log!(Debug, $($arg)+) };
}
/// Logs a `format!`-style message at info level: `sdk::info!("found {} files", n)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__log!(Info, $($arg)+) };
}
/// Logs a `format!`-style message at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__log!(Warn, $($arg)+) };
}
/// Logs a `format!`-style message at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__log!(Error, $($arg)+) };
}

/// Reports progress: `done` of `total` units (`total` 0 = unknown). See [`Progress`] for a
/// reporter that rate-limits itself.
pub fn progress(done: u64, total: u64, message: &str) {
    bindings::guestkit::handler::progress::report(done, total, message)
}

/// Parses the job's JSON payload into `T`; a mismatch is an `invalid-input` error naming the
/// field it is about, e.g. `payload.options.max_depth: invalid type: string "x", expected u32`
/// (`payload: missing field `path`` for a missing field of the top level).
pub fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, HandlerError> {
    parse_payload(&job.payload)
}

/// [`payload`] on JSON text.
pub fn parse_payload<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, HandlerError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "payload".to_string()
        } else if path.starts_with('[') {
            format!("payload{path}")
        } else {
            format!("payload.{path}")
        };
        HandlerError::InvalidInput(format!("{field}: {}", e.inner()))
    })?;
    de.end()
        .map_err(|e| HandlerError::InvalidInput(format!("payload: {e}")))?;
    Ok(value)
}

/// Conveniences on the [`Job`] record.
pub trait JobExt {
    /// The payload parsed into `T`: `let p: MyPayload = job.payload()?;`. See [`payload`].
    fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError>;

    /// The name of the first granted image, or an `invalid-input` error if the job grants none.
    fn image(&self) -> Result<&str, HandlerError>;
}

impl JobExt for Job {
    fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        parse_payload(&self.payload)
    }

    fn image(&self) -> Result<&str, HandlerError> {
        self.images
            .first()
            .map(String::as_str)
            .ok_or_else(|| HandlerError::InvalidInput("the job grants no image".into()))
    }
}

/// Serialises `value` as the job's JSON output.
pub fn output<T: serde::Serialize>(value: &T) -> Result<Output, HandlerError> {
    serde_json::to_string(value)
        .map(|data| Output { data })
        .map_err(|e| HandlerError::Failed(format!("serialising output: {e}")))
}

/// Read-only access to the job's granted disk images.
///
/// ```ignore
/// let image = sdk::disk::open(&job.images[0])?;
/// for volume in image.volumes()? {
///     if volume.fs_type.as_deref() == Some("ext4") {
///         let fs = image.open_filesystem(&volume.id)?;
///         let os_release = sdk::disk::read_to_end(&fs, "/etc/os-release", 1 << 20)?;
///     }
/// }
/// ```
pub mod disk {
    use crate::HandlerError;
    pub use crate::bindings::guestkit::handler::checksum::Algorithm;
    pub use crate::bindings::guestkit::handler::disk::{
        BtrfsSubvolume, DirEntry, DirListing, DiskError, FileKind, Filesystem, Image, ImageInfo,
        Stat, Volume, VolumeKind, open,
    };
    pub use crate::walk::{
        MAX_DIR_ENTRIES, WalkEntry, WalkError, WalkOptions, WalkSource, Walker, walk,
    };

    /// Largest read the host serves per call.
    pub const MAX_READ: u32 = 1 << 20;

    /// Id of the Btrfs top-level subvolume: `subvolid=5` in an fstab, path `/` for
    /// `open-btrfs-subvolume`; `list-btrfs-subvolumes` does not list it.
    pub const BTRFS_TOP_LEVEL: u64 = 5;

    /// `io` becomes `failed` (worth a retry), `unsupported` stays `unsupported`, and the rest
    /// (`not-found`, `invalid`, `corrupt`, `limit`) are `invalid-input`: the image does not fit
    /// what the job asked for. The message is `kind: message`, e.g. `not-found: /etc/hostname`.
    impl From<DiskError> for HandlerError {
        fn from(e: DiskError) -> Self {
            let message = format!("{}: {}", e.kind(), e.message());
            match e {
                DiskError::Io(_) => HandlerError::Failed(message),
                DiskError::Unsupported(_) => HandlerError::Unsupported(message),
                _ => HandlerError::InvalidInput(message),
            }
        }
    }

    /// The volumes of `image` that hold a filesystem the host can open (not swap, not an LVM
    /// physical volume, not unrecognised), in the host's order.
    pub fn filesystem_volumes(image: &Image) -> Result<Vec<Volume>, DiskError> {
        Ok(image
            .volumes()?
            .into_iter()
            .filter(|v| {
                v.fs_type
                    .as_deref()
                    .is_some_and(|t| !matches!(t, "swap" | "LVM2_member"))
            })
            .collect())
    }

    /// [`read_to_end`] as text; bytes that are not UTF-8 become U+FFFD.
    pub fn read_to_string(fs: &Filesystem, path: &str, max: u64) -> Result<String, DiskError> {
        let bytes = read_to_end(fs, path, max)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Reads a whole file of at most `max` bytes, in host-sized chunks; a larger file is a
    /// `limit` error rather than an unbounded allocation.
    pub fn read_to_end(fs: &Filesystem, path: &str, max: u64) -> Result<Vec<u8>, DiskError> {
        let size = fs.stat(path)?.size;
        if size > max {
            return Err(DiskError::Limit(format!(
                "{path} is {size} bytes, more than the {max} allowed"
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        while (data.len() as u64) < size {
            let want = MAX_READ.min((size - data.len() as u64) as u32);
            let chunk = fs.read_file(path, data.len() as u64, want)?;
            if chunk.is_empty() {
                break;
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }

    /// Host-computed digest of a file inside a filesystem.
    pub fn checksum_file(
        fs: &Filesystem,
        path: &str,
        algorithm: Algorithm,
    ) -> Result<String, DiskError> {
        crate::bindings::guestkit::handler::checksum::file(fs, path, algorithm)
    }

    /// Host-computed digest of a granted image file.
    pub fn checksum_image(image: &Image, algorithm: Algorithm) -> Result<String, DiskError> {
        crate::bindings::guestkit::handler::checksum::image_file(image, algorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Options {
        max_depth: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Payload {
        path: String,
        #[serde(default)]
        options: Option<Options>,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn err(json: &str) -> String {
        let e = parse_payload::<Payload>(json).unwrap_err();
        assert_eq!(e.kind(), "invalid-input");
        e.message().to_string()
    }

    #[test]
    fn payload_errors_name_the_field() {
        assert!(parse_payload::<Payload>(r#"{"path":"/etc"}"#).is_ok());
        assert!(
            err(r#"{"path":"/","options":{"max_depth":"x"}}"#)
                .starts_with("payload.options.max_depth: invalid type: string"),
            "{}",
            err(r#"{"path":"/","options":{"max_depth":"x"}}"#)
        );
        assert!(err(r#"{"path":"/","tags":["a",1]}"#).starts_with("payload.tags[1]: invalid type"));
        assert!(err("{}").starts_with("payload: missing field `path`"));
        assert!(err("null").starts_with("payload: invalid type: null"));
        assert!(err(r#"{"path":"/"} x"#).starts_with("payload: trailing characters"));
    }

    #[test]
    fn disk_errors_become_handler_errors_of_the_right_kind() {
        let e: HandlerError = disk::DiskError::NotFound("/x".into()).into();
        assert_eq!(e, HandlerError::InvalidInput("not-found: /x".into()));
        let e: HandlerError = disk::DiskError::Io("eof".into()).into();
        assert_eq!(e.kind(), "failed");
    }
}
