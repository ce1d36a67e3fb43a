//! Misbehaves on request, one operation per kind of abuse, so the sandbox tests can show that
//! each one fails only its own job.

use guestkit_handler_sdk::{self as sdk, Handler, HandlerError, HandlerInfo, Job, Output};
use std::hint::black_box;

struct Hostile;

/// Unbounded recursion on the wasm call stack (no shadow-stack frames).
#[inline(never)]
fn recurse_native(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(recurse_native(black_box(depth + 1))) + 1
}

/// Unbounded recursion with large frames on the shadow stack in linear memory.
fn recurse(depth: u64) -> u64 {
    // Keep a frame's worth of live data so the recursion cannot be turned into a loop.
    let frame = black_box([depth; 16]);
    black_box(recurse(depth + 1)) + frame[(depth % 16) as usize]
}

impl Handler for Hostile {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "test.hostile".into(),
            version: "0.1.0".into(),
            operations: [
                "hostile.spin",
                "hostile.alloc",
                "hostile.recurse",
                "hostile.recurse-shadow",
                "hostile.panic",
                "hostile.unreachable",
                "hostile.output",
                "hostile.not-json",
                "hostile.error",
                "hostile.log-flood",
                "hostile.sleep",
                "hostile.progress",
            ]
            .map(String::from)
            .to_vec(),
            description: "Misbehaves on request (tests only).".into(),
            payload_schema: None,
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        let payload: serde_json::Value = sdk::payload(&job)?;
        match job.operation.as_str() {
            "hostile.spin" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "hostile.alloc" => {
                // Grow without bound, touching every page.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xA5; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "hostile.recurse" => {
                let n = recurse_native(0);
                sdk::output(&n)
            }
            "hostile.recurse-shadow" => {
                let n = recurse(0);
                sdk::output(&n)
            }
            "hostile.panic" => panic!("deliberate panic from the hostile handler"),
            "hostile.unreachable" => core::arch::wasm32::unreachable(),
            "hostile.output" => {
                let size = payload["bytes"].as_u64().unwrap_or(0) as usize;
                Ok(Output {
                    data: format!("\"{}\"", "x".repeat(size)),
                })
            }
            "hostile.not-json" => Ok(Output {
                data: "this is not json".into(),
            }),
            "hostile.error" => {
                let message = payload["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_string();
                Err(match payload["kind"].as_str() {
                    Some("invalid-input") => HandlerError::InvalidInput(message),
                    Some("unsupported") => HandlerError::Unsupported(message),
                    _ => HandlerError::Failed(message),
                })
            }
            "hostile.log-flood" => {
                let lines = payload["lines"].as_u64().unwrap_or(100_000);
                for i in 0..lines {
                    sdk::log::info(&format!("line {i}"));
                }
                sdk::output(&lines)
            }
            "hostile.sleep" => {
                // Burns wall-clock time without burning much fuel: a blocking WASI sleep.
                let ms = payload["ms"].as_u64().unwrap_or(1000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                sdk::output(&ms)
            }
            "hostile.progress" => {
                let steps = payload["steps"].as_u64().unwrap_or(10);
                for i in 1..=steps {
                    sdk::progress(i, steps, "working");
                }
                sdk::output(&steps)
            }
            other => Err(HandlerError::Unsupported(other.to_string())),
        }
    }
}

sdk::export_handler!(Hostile);
