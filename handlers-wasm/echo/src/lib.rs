//! `guestkit.echo`: answers `echo` jobs with the payload they carry, plus the job's id,
//! attempt and granted images, so a round trip through the worker can be checked end to end.

use guestkit_handler_sdk::{self as sdk, Handler, HandlerError, HandlerInfo, Job, Output};
use serde_json::{Value, json};

struct Echo;

impl Handler for Echo {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "guestkit.echo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec!["echo".into()],
            description: "Returns the job's payload unchanged, with the job's id, attempt and \
                          granted images."
                .into(),
            payload_schema: Some(r#"{"description":"any JSON value"}"#.into()),
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        let payload: Value = sdk::payload(&job)?;
        sdk::log::debug("echoing payload");
        sdk::output(&json!({
            "echo": payload,
            "job_id": job.id,
            "attempt": job.attempt,
            "images": job.images,
        }))
    }
}

sdk::export_handler!(Echo);
