//! Shared helpers for the end-to-end tests.

use guestkit_worker::{EngineConfig, Sandbox};
use std::sync::{Arc, OnceLock};

pub use guestkit_fixtures::component;

/// One sandbox engine per test process (the pooling allocator reserves address space per
/// engine, so tests share one rather than making one each).
pub fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            Sandbox::new(EngineConfig {
                pool_slots: 64,
                cache_dir: Some(target_dir().join("test-compile-cache")),
                ..EngineConfig::default()
            })
            .expect("creating the sandbox engine")
        })
        .clone()
}

/// The cargo target directory the tests were built in.
pub fn target_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => dir.into(),
        None => guestkit_fixtures::workspace_root().join("target"),
    }
}

/// The bytes of a built-in handler component.
pub fn builtin(name: &str) -> &'static [u8] {
    guestkit_worker::builtin::BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("no built-in handler {name}"))
}

/// A job for `operation` carrying `payload`.
pub fn job(operation: &str, payload: serde_json::Value) -> guestkit_host_api::Job {
    guestkit_host_api::Job {
        id: format!("test-{operation}"),
        operation: operation.to_string(),
        payload: payload.to_string(),
        images: Vec::new(),
        attempt: 1,
    }
}
