//! guestkit-worker: runs untrusted WASM handler components against VM disk images.
//!
//! The pieces, each in its own module and wired together by the binary:
//! - [`engine`]: the wasmtime sandbox (pooling allocator, fuel, epochs, compile cache) and the
//!   per-job run under [`limits`];
//! - [`registry`]: built-in handlers plus a hot-reloaded handlers directory;
//! - [`local`]: the in-process one-shot run behind `guestkit-worker run`;
//! - [`executor`]: claims jobs from the store under leases and runs them;
//! - [`grants`]: which images a job may read, checked at submission and at run time;
//! - [`service`]: admission and submission of jobs (validation, backpressure, group commit);
//! - [`recent`]: recently finished jobs, so a waiting client needs no store read;
//! - [`api`]: the HTTP API; [`metrics`]: Prometheus metrics;
//! - [`tenants`]: tenants, their tokens, image roots, handlers and quotas;
//! - [`daemon`]: wires all of it together; [`client`]: the CLI's HTTP client;
//! - [`authoring`]: `handler new` and `handler check`, for handler authors.

pub mod api;
pub mod authoring;
pub mod builtin;
pub mod client;
pub mod daemon;
pub mod engine;
pub mod executor;
pub mod grants;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod recent;
pub mod registry;
pub mod service;
pub mod tenants;
pub mod watchers;

pub use engine::{CancelToken, EngineConfig, JobFailure, RunReport, Sandbox, Usage};
pub use limits::JobLimits;
pub use registry::{HandlerMeta, HandlerSource, LoadedHandler, Registry, RegistryConfig, Snapshot};
