//! Drives the `disk` and `checksum` interfaces for the tests: each operation reports what the
//! host served, so the tests can compare it with what the image tools wrote.

use guestkit_handler_sdk::disk::{self, Algorithm, FileKind, Filesystem, Image};
use guestkit_handler_sdk::{self as sdk, Handler, HandlerError, HandlerInfo, Job, Output};
use serde_json::{Value, json};

struct DiskTool;

fn str_arg<'a>(payload: &'a Value, key: &str) -> Result<&'a str, HandlerError> {
    payload[key]
        .as_str()
        .ok_or_else(|| HandlerError::InvalidInput(format!("payload.{key} is required")))
}

fn algorithm(name: &str) -> Result<Algorithm, HandlerError> {
    Ok(match name {
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        "sha1" => Algorithm::Sha1,
        "md5" => Algorithm::Md5,
        "blake3" => Algorithm::Blake3,
        other => return Err(HandlerError::InvalidInput(format!("algorithm {other}"))),
    })
}

fn open_fs(image: &Image, payload: &Value) -> Result<Filesystem, HandlerError> {
    let volume = str_arg(payload, "volume")?;
    Ok(match payload["subvolume"].as_str() {
        Some(sub) => image.open_btrfs_subvolume(volume, sub)?,
        None => image.open_filesystem(volume)?,
    })
}

fn kind(k: FileKind) -> &'static str {
    match k {
        FileKind::File => "file",
        FileKind::Directory => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Other => "other",
    }
}

/// Walks the whole tree: path -> (kind, size, host sha256 for files, link target).
fn walk(fs: &Filesystem, dir: &str, out: &mut serde_json::Map<String, Value>) -> Result<(), HandlerError> {
    let listing = fs.read_dir(dir, 10_000)?;
    for entry in listing.entries {
        let path = if dir == "/" {
            format!("/{}", entry.name)
        } else {
            format!("{dir}/{}", entry.name)
        };
        let st = fs.lstat(&path)?;
        let mut item = json!({"kind": kind(st.kind), "size": st.size, "mode": st.mode});
        match st.kind {
            FileKind::File => {
                item["sha256"] = json!(disk::checksum_file(fs, &path, Algorithm::Sha256)?);
            }
            FileKind::Symlink => item["target"] = json!(fs.read_link(&path)?),
            FileKind::Directory => walk(fs, &path, out)?,
            FileKind::Other => {}
        }
        out.insert(path, item);
    }
    Ok(())
}

impl Handler for DiskTool {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "test.disktool".into(),
            version: "0.1.0".into(),
            operations: [
                "disk.volumes",
                "disk.read",
                "disk.walk",
                "disk.checksum",
                "disk.abuse",
                "disk.btrfs-subvolumes",
            ]
                .map(String::from)
                .to_vec(),
            description: "Exercises the disk API (tests only).".into(),
            payload_schema: None,
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        let payload: Value = sdk::payload(&job)?;
        let image_name = payload["image"]
            .as_str()
            .map(String::from)
            .or_else(|| job.images.first().cloned())
            .ok_or_else(|| HandlerError::InvalidInput("no image".into()))?;
        match job.operation.as_str() {
            "disk.volumes" => {
                let image = disk::open(&image_name)?;
                let info = image.info();
                let volumes: Vec<Value> = image
                    .volumes()?
                    .into_iter()
                    .map(|v| {
                        json!({
                            "id": v.id, "size": v.size,
                            "partition_number": v.partition_number,
                            "partition_table": v.partition_table,
                            "partition_type": v.partition_type,
                            "partition_label": v.partition_label,
                            "partition_uuid": v.partition_uuid,
                            "fs_type": v.fs_type, "fs_label": v.fs_label, "fs_uuid": v.fs_uuid,
                        })
                    })
                    .collect();
                sdk::output(&json!({
                    "name": info.name, "format": info.format,
                    "virtual_size": info.virtual_size, "backing_depth": info.backing_depth,
                    "volumes": volumes,
                }))
            }
            "disk.read" => {
                let image = disk::open(&image_name)?;
                let fs = open_fs(&image, &payload)?;
                let path = str_arg(&payload, "path")?;
                let data = disk::read_to_end(&fs, path, 64 << 20)?;
                sdk::output(&json!({
                    "fs_type": fs.fs_type(), "label": fs.label(), "uuid": fs.uuid(),
                    "size": data.len(),
                    "text": String::from_utf8(data).ok(),
                }))
            }
            "disk.walk" => {
                let image = disk::open(&image_name)?;
                let fs = open_fs(&image, &payload)?;
                let mut out = serde_json::Map::new();
                walk(&fs, "/", &mut out)?;
                sdk::output(&out)
            }
            "disk.checksum" => {
                let image = disk::open(&image_name)?;
                let algo = algorithm(payload["algorithm"].as_str().unwrap_or("sha256"))?;
                let mut out = json!({"image": disk::checksum_image(&image, algo)?});
                if let Some(path) = payload["path"].as_str() {
                    let fs = open_fs(&image, &payload)?;
                    out["file"] = json!(disk::checksum_file(&fs, path, algo)?);
                }
                sdk::output(&out)
            }
            "disk.btrfs-subvolumes" => {
                // The list, and what each subvolume holds when opened by its path.
                let image = disk::open(&image_name)?;
                let volume = str_arg(&payload, "volume")?;
                let mut subvolumes = Vec::new();
                for sv in image.list_btrfs_subvolumes(volume)? {
                    let fs = image.open_btrfs_subvolume(volume, &sv.path)?;
                    let mut files = serde_json::Map::new();
                    walk(&fs, "/", &mut files)?;
                    subvolumes.push(json!({
                        "id": sv.id, "path": sv.path, "parent_id": sv.parent_id,
                        "default": sv.is_default, "read_only": sv.read_only, "files": files,
                    }));
                }
                sdk::output(&json!({"subvolumes": subvolumes}))
            }
            "disk.abuse" => {
                // Each attempt must come back as an error, never as data it should not see.
                let mut errors = serde_json::Map::new();
                let mut note = |what: &str, r: Result<(), disk::DiskError>| {
                    errors.insert(what.into(), json!(r.err().map(|e| e.to_string())));
                };
                note("ungranted", disk::open("/etc/passwd").map(drop));
                note("traversal", disk::open("../secret.img").map(drop));
                let image = disk::open(&image_name)?;
                note("huge_read", image.read(0, 64 << 20).map(drop));
                note("zero_read", image.read(0, 0).map(drop));
                note("past_end", image.read(u64::MAX - 10, 4096).and_then(|d| {
                    if d.is_empty() { Err(disk::DiskError::Invalid("empty".into())) } else { Ok(()) }
                }));
                note("no_volume", image.open_filesystem("p99").map(drop));
                if let Some(volume) = payload["volume"].as_str() {
                    let fs = image.open_filesystem(volume)?;
                    note("relative_path", fs.stat("etc/passwd").map(drop));
                    note("dotdot", fs.read_file("/../../../etc/passwd", 0, 100).map(drop));
                    note("huge_dir", fs.read_dir("/", 1_000_000).map(drop));
                    note("missing", fs.stat("/no/such/file").map(drop));
                }
                sdk::output(&errors)
            }
            other => Err(HandlerError::Unsupported(other.into())),
        }
    }
}

sdk::export_handler!(DiskTool);
