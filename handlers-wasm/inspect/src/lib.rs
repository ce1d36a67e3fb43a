//! `guestkit.inspect`: finds the operating systems on a job's disk images and describes each
//! one as libguestfs' virt-inspector would, as a documented JSON document
//! (`docs/schemas/inspect-output.schema.json`).
//!
//! Everything read from the guest is parsed here, inside the sandbox; every parser is bounded
//! and turns damage into a warning in the output rather than a failed job.

pub mod etc;
pub mod guest;
pub mod inspect;
pub mod linux;
pub mod pkg;
pub mod read_at;
pub mod release;
pub mod report;
pub mod windows;

use guestkit_handler_sdk::{self as sdk, Handler, HandlerError, HandlerInfo, Job, Output};
use serde::Deserialize;

/// Optional sections of the report; all of them unless the payload's `include` narrows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Applications,
    Services,
    Users,
    Groups,
    Network,
    Kernels,
    CloudInit,
}

/// The `inspect` payload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Which of the job's images to inspect (all of them if absent).
    pub images: Option<Vec<String>>,
    /// Which optional sections to report (all of them if absent).
    pub include: Option<Vec<Section>>,
    /// A Job Protocol v1.0 document's `payload.data.image`; the worker grants it, so it is
    /// accepted and otherwise ignored here.
    pub image: Option<serde_json::Value>,
}

impl Options {
    /// True when `section` is to be reported.
    pub fn wants(&self, section: Section) -> bool {
        self.include
            .as_ref()
            .is_none_or(|list| list.contains(&section))
    }
}

const PAYLOAD_SCHEMA: &str = r#"{"type":["object","null"],"additionalProperties":false,"properties":{"images":{"type":"array","items":{"type":"string"}},"include":{"type":"array","items":{"enum":["applications","services","users","groups","network","kernels","cloud_init"]}},"image":{}}}"#;

struct Inspect;

impl Handler for Inspect {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "guestkit.inspect".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec!["inspect".into()],
            description: "Finds every operating system on the granted images and reports its \
                          distribution, version, architecture, hostname, mountpoints, \
                          filesystems, applications, services, users, network and kernels."
                .into(),
            payload_schema: Some(PAYLOAD_SCHEMA.into()),
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        let options: Options = sdk::payload::<Option<Options>>(&job)?.unwrap_or_default();
        let names = match &options.images {
            Some(subset) => {
                for name in subset {
                    if !job.images.contains(name) {
                        return Err(HandlerError::InvalidInput(format!(
                            "payload.images: {name:?} is not one of the job's images"
                        )));
                    }
                }
                subset.clone()
            }
            None => job.images.clone(),
        };
        if names.is_empty() {
            return Err(HandlerError::InvalidInput(
                "the job grants no image to inspect".into(),
            ));
        }
        let report = inspect::run(&names, &options)?;
        sdk::output(&report)
    }
}

sdk::export_handler!(Inspect);
