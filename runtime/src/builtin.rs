//! The handler components compiled into the worker (built by `build.rs` from handlers-wasm/).

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
