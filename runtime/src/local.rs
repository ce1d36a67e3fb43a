//! One job, in-process, in the same sandbox the daemon uses: the handler author's local loop
//! behind `guestkit-worker run`.

use crate::engine::{CancelToken, RunReport, Sandbox};
use crate::limits::JobLimits;
use crate::registry::{self, HandlerSource, LoadedHandler, Registry, RegistryConfig};
use anyhow::{Context, Result, bail};
use guestkit_host_api::{DiskCtx, Job, LogLevel, Observer};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct LocalJob {
    /// The operation; may be omitted with `handler_file` when it serves exactly one.
    pub operation: Option<String>,
    /// The payload document.
    pub payload: Value,
    /// Image files granted to the job.
    pub images: Vec<PathBuf>,
    /// Run this component instead of an installed handler.
    pub handler_file: Option<PathBuf>,
    /// The handlers directory to pick the handler from (with the built-ins).
    pub handlers_dir: Option<PathBuf>,
    /// Limits for the run.
    pub limits: JobLimits,
}

/// Prints a handler's log lines and progress to stderr.
struct StderrObserver;

impl Observer for StderrObserver {
    fn log(&self, level: LogLevel, message: &str) {
        eprintln!("[{level}] {message}");
    }
    fn progress(&self, done: u64, total: u64, message: &str) {
        if total > 0 {
            eprintln!("[progress] {done}/{total} {message}");
        } else {
            eprintln!("[progress] {done} {message}");
        }
    }
}

/// Checks that every image is an existing regular file and returns the names the job grants.
pub fn grant_images(images: &[PathBuf]) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(images.len());
    for path in images {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("image {}: cannot be read", path.display()))?;
        if !meta.is_file() {
            bail!("image {}: not a regular file", path.display());
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("image {}: file name is not UTF-8", path.display()))?;
        if names.iter().any(|n| n == name) {
            bail!(
                "image {}: another granted image has the same file name",
                path.display()
            );
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Resolves the handler and runs the job once; returns the handler used and the report.
pub async fn run(
    sandbox: &Arc<Sandbox>,
    job: &LocalJob,
) -> Result<(Arc<LoadedHandler>, RunReport)> {
    let names = grant_images(&job.images)?;
    let mut images = Vec::with_capacity(names.len());
    let metrics = crate::metrics::Metrics::new()?;
    for (path, name) in job.images.iter().zip(&names) {
        // The image's own directory is its root: backing files may live beside it, not
        // anywhere else.
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let policy = crate::grants::ImagePolicy::new(&[dir.to_path_buf()])?;
        let grant = crate::grants::Grant {
            name: name.clone(),
            path: std::fs::canonicalize(path)
                .with_context(|| format!("image {}", path.display()))?,
            format: None,
            nbd: None,
            checksum: None,
            size_bytes: None,
            max_virtual_size: None,
        };
        let opened = crate::grants::open(&policy, &grant, &metrics)
            .with_context(|| format!("image {}", path.display()))?;
        images.push(opened);
    }
    let (handler, operation) = match &job.handler_file {
        Some(path) => {
            let handler = load_file(sandbox, path).await?;
            let operation = match &job.operation {
                Some(op) if handler.meta.operations.contains(op) => op.clone(),
                Some(op) => bail!(
                    "{} does not serve operation '{op}' (it serves {})",
                    path.display(),
                    handler.meta.operations.join(", ")
                ),
                None if handler.meta.operations.len() == 1 => handler.meta.operations[0].clone(),
                None => bail!(
                    "{} serves several operations ({}); pick one with --operation",
                    path.display(),
                    handler.meta.operations.join(", ")
                ),
            };
            (handler, operation)
        }
        None => {
            let Some(operation) = job.operation.clone() else {
                bail!("--operation is required unless --handler names a component");
            };
            let registry = Registry::new(
                sandbox.clone(),
                RegistryConfig {
                    dir: job.handlers_dir.clone(),
                    builtins: true,
                    tenants: Vec::new(),
                },
            )
            .await?;
            let snapshot = registry.snapshot();
            for e in &snapshot.errors {
                eprintln!("warning: {}: {}", e.path.display(), e.error);
            }
            let Some(handler) = snapshot.get(&operation).cloned() else {
                bail!(
                    "no handler serves operation '{operation}' (served: {})",
                    snapshot.operations().join(", ")
                );
            };
            (handler, operation)
        }
    };
    let wit_job = Job {
        id: format!("local-{}", std::process::id()),
        operation,
        payload: serde_json::to_string(&job.payload)?,
        images: names,
        attempt: 1,
    };
    let report = sandbox
        .run_with_disk(
            handler.pre(),
            &wit_job,
            &job.limits,
            Arc::new(StderrObserver),
            &CancelToken::new(),
            DiskCtx::new(images, Arc::default()),
        )
        .await;
    Ok((handler, report))
}

/// Loads a component file that is not installed.
pub async fn load_file(sandbox: &Arc<Sandbox>, path: &Path) -> Result<Arc<LoadedHandler>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = crate::engine::digest(&bytes);
    registry::load(
        sandbox,
        bytes,
        digest,
        HandlerSource::File(path.to_path_buf()),
    )
    .await
    .with_context(|| format!("loading {}", path.display()))
    .map(Arc::new)
}

/// The report as the CLI prints it.
pub fn report_json(handler: &LoadedHandler, report: &RunReport) -> Value {
    let mut doc = json!({
        "handler": {
            "name": handler.meta.name,
            "version": handler.meta.version,
            "digest": handler.digest,
        },
        "usage": report.usage,
    });
    match &report.outcome {
        Ok(output) => {
            doc["status"] = json!("succeeded");
            doc["output"] = output.clone();
        }
        Err(failure) => {
            doc["status"] = json!("failed");
            doc["error"] = json!({
                "code": failure.code(),
                "message": failure.to_string(),
                "retryable": failure.retryable(),
            });
        }
    }
    doc
}
