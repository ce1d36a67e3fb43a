//! `example.list-dir`: lists a directory of a filesystem on the job's first image.
//!
//! Built with plain cargo (`cargo build --release --target wasm32-wasip2`) and wit-bindgen
//! straight from the repository's WIT, no SDK: every call here is one of `wit/handler.wit`.
//!
//! Payload: `{"path": "/etc", "volume": "p1", "limit": 1000}`; all optional. Without a
//! `volume`, the first volume holding a filesystem is used.

wit_bindgen::generate!({
    world: "handler",
    path: "../../wit",
});

use guestkit::handler::disk::{self, DiskError, FileKind, Image};
use guestkit::handler::log::{Level, log};
use serde::{Deserialize, Serialize};

/// What a job may ask for; unknown fields are refused so a typo is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    /// The directory to list (absolute).
    #[serde(default = "default_path")]
    path: String,
    /// The volume id (`disk`, `p1`, `lvm/VG/LV`); default: the first with a filesystem.
    #[serde(default)]
    volume: Option<String>,
    /// Most entries returned (the host serves at most 10000 per listing).
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_path() -> String {
    "/".into()
}

fn default_limit() -> u32 {
    1000
}

const PAYLOAD_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "absolute path of the directory"},
    "volume": {"type": "string", "description": "volume id, e.g. disk, p1, lvm/vg/root"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 10000}
  },
  "additionalProperties": false
}"#;

/// One directory entry in the output.
#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    kind: &'static str,
    size: u64,
    mode: String,
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Directory => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Other => "other",
    }
}

/// `context: kind(message)`, with the kind deciding whether a retry can help.
fn disk_error(context: &str, e: DiskError) -> HandlerError {
    let message = format!("{context}: {e:?}");
    match e {
        DiskError::Io(_) => HandlerError::Failed(message),
        DiskError::Unsupported(_) => HandlerError::Unsupported(message),
        _ => HandlerError::InvalidInput(message),
    }
}

/// The volume the job named, or the first one holding a filesystem.
fn pick_volume(image: &Image, wanted: Option<&str>) -> Result<String, HandlerError> {
    if let Some(id) = wanted {
        return Ok(id.to_string());
    }
    let volumes = image
        .volumes()
        .map_err(|e| disk_error("listing volumes", e))?;
    volumes
        .into_iter()
        .find(|v| {
            v.fs_type
                .as_deref()
                .is_some_and(|t| !matches!(t, "swap" | "LVM2_member"))
        })
        .map(|v| v.id)
        .ok_or_else(|| HandlerError::Unsupported("no volume on the image holds a filesystem".into()))
}

struct ListDir;

impl Guest for ListDir {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "example.list-dir".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec!["example.list-dir".into()],
            description: "Lists a directory of a filesystem on the job's first image.".into(),
            payload_schema: Some(PAYLOAD_SCHEMA.into()),
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        let text = if job.payload.trim() == "null" { "{}" } else { &job.payload };
        let payload: Payload = serde_json::from_str(text)
            .map_err(|e| HandlerError::InvalidInput(format!("payload: {e}")))?;
        if !payload.path.starts_with('/') {
            return Err(HandlerError::InvalidInput("payload.path: must be absolute".into()));
        }
        let limit = payload.limit.clamp(1, 10_000);
        let name = job
            .images
            .first()
            .ok_or_else(|| HandlerError::InvalidInput("the job grants no image".into()))?;
        let image = disk::open(name).map_err(|e| disk_error(&format!("opening {name}"), e))?;
        let volume = pick_volume(&image, payload.volume.as_deref())?;
        let fs = image
            .open_filesystem(&volume)
            .map_err(|e| disk_error(&format!("opening the filesystem on {volume}"), e))?;
        let listing = fs
            .read_dir(&payload.path, limit)
            .map_err(|e| disk_error(&format!("listing {}", payload.path), e))?;
        let mut entries = Vec::with_capacity(listing.entries.len());
        for entry in listing.entries {
            let path = if payload.path.ends_with('/') {
                format!("{}{}", payload.path, entry.name)
            } else {
                format!("{}/{}", payload.path, entry.name)
            };
            // lstat: a symlink is reported as itself, never followed.
            let stat = fs
                .lstat(&path)
                .map_err(|e| disk_error(&format!("lstat {path}"), e))?;
            entries.push(Entry {
                name: entry.name,
                kind: kind_name(stat.kind),
                size: stat.size,
                mode: format!("{:04o}", stat.mode),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        log(
            Level::Info,
            &format!("{} entries in {} on {volume}", entries.len(), payload.path),
        );
        let data = serde_json::json!({
            "image": name,
            "volume": volume,
            "fs_type": fs.fs_type(),
            "path": payload.path,
            "entries": entries,
            "truncated": listing.truncated,
        });
        Ok(Output {
            data: data.to_string(),
        })
    }
}

export!(ListDir);
