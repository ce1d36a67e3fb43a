//! guestkit-worker: runs untrusted WASM handler components against VM disk images.
//!
//! The pieces, each in its own module and wired together by the binary:
//! - [`engine`]: the wasmtime sandbox (pooling allocator, fuel, epochs, compile cache) and the
//!   per-job run under [`limits`];
//! - [`registry`]: built-in handlers plus a hot-reloaded handlers directory;
//! - [`local`]: the in-process one-shot run behind `guestkit-worker run`.

pub mod builtin;
pub mod engine;
pub mod limits;
pub mod local;
pub mod registry;

pub use engine::{CancelToken, EngineConfig, JobFailure, RunReport, Sandbox, Usage};
pub use limits::JobLimits;
pub use registry::{HandlerMeta, HandlerSource, LoadedHandler, Registry, RegistryConfig, Snapshot};
