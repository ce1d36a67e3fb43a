//! Guest-side SDK for guestkit handler components.
//!
//! ```ignore
//! use guestkit_handler_sdk::{self as sdk, Handler, HandlerError, HandlerInfo, Job, Output};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn describe() -> HandlerInfo { /* ... */ }
//!     fn handle(job: Job) -> Result<Output, HandlerError> { /* ... */ }
//! }
//! sdk::export_handler!(Echo);
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "guestkit_handler_sdk::bindings",
    });
}

pub use bindings::Guest as Handler;
pub use bindings::guestkit::handler::types::{HandlerError, HandlerInfo, Job, Output};

/// Exports a type implementing [`Handler`] as this component's `describe` and `handle`.
#[macro_export]
macro_rules! export_handler {
    ($ty:ident) => {
        $crate::bindings::export!($ty with_types_in $crate::bindings);
    };
}

/// Logging into the job's log stream.
pub mod log {
    use crate::bindings::guestkit::handler::log::{Level, log};

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

/// Reports progress: `done` of `total` units (`total` 0 = unknown).
pub fn progress(done: u64, total: u64, message: &str) {
    bindings::guestkit::handler::progress::report(done, total, message)
}

/// Parses the job's JSON payload into `T`; a mismatch is an `invalid-input` error naming the
/// problem as serde describes it.
pub fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, HandlerError> {
    serde_json::from_str(&job.payload)
        .map_err(|e| HandlerError::InvalidInput(format!("payload: {e}")))
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
    pub use crate::bindings::guestkit::handler::checksum::Algorithm;
    pub use crate::bindings::guestkit::handler::disk::{
        DirEntry, DirListing, DiskError, FileKind, Filesystem, Image, ImageInfo, Stat, Volume,
        VolumeKind, open,
    };
    use crate::HandlerError;

    /// Largest read the host serves per call.
    pub const MAX_READ: u32 = 1 << 20;

    impl From<DiskError> for HandlerError {
        fn from(e: DiskError) -> Self {
            match e {
                DiskError::Io(_) => HandlerError::Failed(e.to_string()),
                DiskError::Unsupported(_) => HandlerError::Unsupported(e.to_string()),
                _ => HandlerError::InvalidInput(e.to_string()),
            }
        }
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
    pub fn checksum_file(fs: &Filesystem, path: &str, algorithm: Algorithm) -> Result<String, DiskError> {
        crate::bindings::guestkit::handler::checksum::file(fs, path, algorithm)
    }

    /// Host-computed digest of a granted image file.
    pub fn checksum_image(image: &Image, algorithm: Algorithm) -> Result<String, DiskError> {
        crate::bindings::guestkit::handler::checksum::image_file(image, algorithm)
    }
}
