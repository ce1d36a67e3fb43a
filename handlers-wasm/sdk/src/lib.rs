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
