//! Built several times with different `GK_TEST_VERSION` / `GK_TEST_OPERATION` /
//! `GK_TEST_DESCRIBE` values to give the hot-reload tests distinct components.

use guestkit_handler_sdk::{self as sdk, Handler, HandlerError, HandlerInfo, Job, Output};

const VERSION: &str = match option_env!("GK_TEST_VERSION") {
    Some(v) => v,
    None => "1",
};
const OPERATION: &str = match option_env!("GK_TEST_OPERATION") {
    Some(op) => op,
    None => "versioned",
};
const DESCRIBE: &str = match option_env!("GK_TEST_DESCRIBE") {
    Some(mode) => mode,
    None => "ok",
};

struct Versioned;

impl Handler for Versioned {
    fn describe() -> HandlerInfo {
        if DESCRIBE == "loop" {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        HandlerInfo {
            name: "test.versioned".into(),
            version: VERSION.into(),
            operations: vec![OPERATION.into()],
            description: "Reports the version it was built as (tests only).".into(),
            payload_schema: None,
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        let payload: serde_json::Value = sdk::payload(&job)?;
        if let Some(ms) = payload["sleep_ms"].as_u64() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        sdk::output(&serde_json::json!({ "version": VERSION, "job_id": job.id }))
    }
}

sdk::export_handler!(Versioned);
