//! `example.hostname`: reads `/etc/hostname` and `/etc/os-release` from every filesystem on
//! the job's images and reports the guest's name and OS.
//!
//! Built with cargo-component (`cargo component build --release`), which generates
//! `src/bindings.rs` from `../../wit` (see `[package.metadata.component]` in Cargo.toml).

#[allow(warnings)]
mod bindings;

use bindings::guestkit::handler::disk::{self, DiskError, Filesystem};
use bindings::guestkit::handler::{log, progress};
use bindings::{Guest, HandlerError, HandlerInfo, Job, Output};
use serde_json::{Map, Value, json};

/// Largest file read, in bytes: these files are small, and the image decides their size.
const MAX_FILE: u64 = 64 << 10;

/// Reads a small text file, or `None` when it is not there.
fn read_small(fs: &Filesystem, path: &str) -> Result<Option<String>, DiskError> {
    let stat = match fs.stat(path) {
        Ok(stat) => stat,
        Err(DiskError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = stat.size.min(MAX_FILE) as u32;
    if len == 0 {
        return Ok(Some(String::new()));
    }
    let bytes = fs.read_file(path, 0, len)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `KEY=value` lines of os-release (quotes removed), as a JSON object.
fn parse_os_release(text: &str) -> Map<String, Value> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| !key.trim().is_empty() && !key.trim_start().starts_with('#'))
        .map(|(key, value)| {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            (key.trim().to_string(), Value::from(value))
        })
        .collect()
}

fn failed(context: &str, e: DiskError) -> HandlerError {
    match e {
        DiskError::Io(_) => HandlerError::Failed(format!("{context}: {e:?}")),
        _ => HandlerError::InvalidInput(format!("{context}: {e:?}")),
    }
}

struct Hostname;

impl Guest for Hostname {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "example.hostname".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec!["example.hostname".into()],
            description: "Reads the hostname and os-release of every filesystem on the job's images."
                .into(),
            payload_schema: Some(r#"{"description": "no payload needed"}"#.into()),
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        if job.images.is_empty() {
            return Err(HandlerError::InvalidInput("the job grants no image".into()));
        }
        let mut found = Vec::new();
        for (i, name) in job.images.iter().enumerate() {
            progress::report(i as u64, job.images.len() as u64, name);
            let image = disk::open(name).map_err(|e| failed(name, e))?;
            let volumes = image.volumes().map_err(|e| failed(name, e))?;
            for volume in volumes {
                let Some(fs_type) = volume.fs_type.clone() else { continue };
                if fs_type == "swap" || fs_type == "LVM2_member" {
                    continue;
                }
                let fs = match image.open_filesystem(&volume.id) {
                    Ok(fs) => fs,
                    Err(e) => {
                        log::log(log::Level::Warn, &format!("{name} {}: {e:?}", volume.id));
                        continue;
                    }
                };
                let context = format!("{name} {}", volume.id);
                let hostname = read_small(&fs, "/etc/hostname").map_err(|e| failed(&context, e))?;
                let os_release = read_small(&fs, "/etc/os-release")
                    .map_err(|e| failed(&context, e))?
                    .map(|text| parse_os_release(&text));
                found.push(json!({
                    "image": name,
                    "volume": volume.id,
                    "fs_type": fs_type,
                    "hostname": hostname.map(|h| h.trim().to_string()),
                    "os_release": os_release,
                }));
            }
        }
        progress::report(job.images.len() as u64, job.images.len() as u64, "done");
        Ok(Output {
            data: json!({ "filesystems": found }).to_string(),
        })
    }
}

bindings::export!(Hostname with_types_in bindings);
