//! `guestkit.profile`: security, compliance and hardening checks of the Linux systems found on
//! a job's disk images. It looks for root filesystems itself (a filesystem with `/etc` and
//! `/etc/os-release` or `/etc/passwd`), parses the guest's configuration files here, inside the
//! sandbox, and reports findings with evidence, a summary by severity and a risk score.
//! `docs/profile.md` documents every check; `docs/schemas/profile-output.schema.json` the output.

pub mod checks;
pub mod mounts;
pub mod options;
pub mod report;
pub mod tree;

use guestkit_handler_sdk::disk::{self, BTRFS_TOP_LEVEL, DiskError, FileKind, Filesystem};
use guestkit_handler_sdk::{self as sdk, Handler, HandlerError, HandlerInfo, Job, Output};
use report::{Finding, Profile, Severity, Summary};
use serde::Serialize;
use std::collections::HashMap;
use tree::{Entry, FsError, Kind, Meta, Scan, Tree};

/// Version of the output document's shape.
pub const SCHEMA_VERSION: &str = "1.0";
/// Filesystem types a Linux root may have.
const ROOT_FS_TYPES: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs"];
/// Btrfs subvolumes distributions install the root into, tried when the top level is not one.
const BTRFS_ROOT_SUBVOLUMES: &[&str] = &["@", "root", "@rootfs"];

/// The WIT filesystem resource as a [`Tree`].
struct DiskTree(Filesystem);

fn fs_error(e: DiskError) -> FsError {
    match e {
        // Our paths are absolute and our sizes in range: `invalid` means a path component is
        // not a directory, which is as good as absent.
        DiskError::NotFound(_) | DiskError::Invalid(_) => FsError::Absent,
        other => FsError::Other(other.to_string()),
    }
}

fn kind(k: FileKind) -> Kind {
    match k {
        FileKind::File => Kind::File,
        FileKind::Directory => Kind::Dir,
        FileKind::Symlink => Kind::Symlink,
        FileKind::Other => Kind::Other,
    }
}

fn meta(s: disk::Stat) -> Meta {
    Meta {
        kind: kind(s.kind),
        size: s.size,
        mode: s.mode,
        uid: s.uid,
        gid: s.gid,
    }
}

impl Tree for DiskTree {
    fn stat(&self, path: &str) -> Result<Meta, FsError> {
        self.0.stat(path).map(meta).map_err(fs_error)
    }
    fn lstat(&self, path: &str) -> Result<Meta, FsError> {
        self.0.lstat(path).map(meta).map_err(fs_error)
    }
    fn read_dir(&self, path: &str, limit: u32) -> Result<(Vec<Entry>, bool), FsError> {
        let listing = self.0.read_dir(path, limit).map_err(fs_error)?;
        let entries = listing
            .entries
            .into_iter()
            .map(|e| Entry {
                name: e.name,
                kind: kind(e.kind),
            })
            .collect();
        Ok((entries, listing.truncated))
    }
    fn read_at(&self, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, FsError> {
        self.0.read_file(path, offset, len).map_err(fs_error)
    }
    fn read_link(&self, path: &str) -> Result<String, FsError> {
        self.0.read_link(path).map_err(fs_error)
    }
}

/// What `/etc/os-release` says about a root.
#[derive(Serialize, Default)]
struct OsInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pretty_name: Option<String>,
}

/// A Linux root filesystem that was profiled.
#[derive(Serialize)]
struct Root {
    image: String,
    volume: String,
    fs_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subvolume: Option<String>,
    os: OsInfo,
    /// Filesystems of the same image the root's /etc/fstab mounts, seen at their mount points.
    mounts: Vec<MountInfo>,
}

/// A filesystem mounted on a root for the checks.
#[derive(Serialize, Clone)]
struct MountInfo {
    path: String,
    volume: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subvolume: Option<String>,
}

/// A problem met on the way: the result is partial.
#[derive(Serialize)]
struct Warning {
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    message: String,
}

/// The output document (`docs/schemas/profile-output.schema.json`).
#[derive(Serialize)]
struct ProfileReport {
    schema_version: &'static str,
    profiles: Vec<Profile>,
    min_severity: Severity,
    roots: Vec<Root>,
    findings: Vec<Finding>,
    summary: Summary,
    risk_score: u32,
    partial: bool,
    warnings: Vec<Warning>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v)
        .to_string()
}

fn os_info(scan: &mut Scan) -> OsInfo {
    let mut info = OsInfo::default();
    let text = scan
        .read_text("/etc/os-release")
        .or_else(|| scan.read_text("/usr/lib/os-release"));
    for line in text.map(|t| t.lines).unwrap_or_default() {
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "ID" => info.id = Some(unquote(v)),
                "VERSION_ID" => info.version_id = Some(unquote(v)),
                "PRETTY_NAME" => info.pretty_name = Some(unquote(v)),
                _ => {}
            }
        }
    }
    info
}

fn is_root(tree: &dyn Tree) -> bool {
    let mut scan = Scan::new(tree);
    scan.is_dir("/etc") && (scan.exists("/etc/os-release") || scan.exists("/etc/passwd"))
}

/// A root filesystem found on an image.
struct Found {
    volume: String,
    fs_type: String,
    subvolume: Option<String>,
}

/// Everything found so far.
struct Run {
    options: options::Options,
    roots: Vec<Root>,
    findings: Vec<Finding>,
    warnings: Vec<Warning>,
}

impl Run {
    fn warn(&mut self, image: &str, volume: Option<&str>, message: String) {
        self.warnings.push(Warning {
            image: image.to_string(),
            volume: volume.map(String::from),
            path: None,
            line: None,
            message,
        });
    }

    /// Takes the warnings of a scan of `volume`.
    fn scan_warnings(&mut self, image: &str, volume: &str, scan: Scan) {
        for w in scan.into_warnings() {
            self.warnings.push(Warning {
                image: image.to_string(),
                volume: Some(volume.to_string()),
                path: Some(w.path),
                line: w.line,
                message: w.message,
            });
        }
    }

    /// Profiles one root filesystem (`tree`, with its mounts already on it).
    fn profile(&mut self, image: &str, found: &Found, tree: &dyn Tree, mounts: Vec<MountInfo>) {
        let volume = found.volume.as_str();
        let mut scan = Scan::new(tree);
        let os = os_info(&mut scan);
        let mut hits = Vec::new();
        for &profile in &self.options.profiles {
            hits.extend(checks::run(profile, &mut scan));
        }
        let mut findings: Vec<Finding> = hits
            .into_iter()
            .filter(|h| h.check.severity >= self.options.min_severity)
            .map(|h| Finding {
                id: h.check.id,
                title: h.check.title,
                severity: h.check.severity,
                profile: h.check.profile,
                image: image.to_string(),
                volume: volume.to_string(),
                evidence: h.evidence,
                remediation: h.check.remediation,
            })
            .collect();
        findings.sort_by(|a, b| {
            let at = |f: &Finding| {
                let e = f.evidence.first();
                (
                    report::CATALOG.iter().position(|c| c.id == f.id),
                    e.map(|e| e.path.clone()),
                    e.and_then(|e| e.line),
                )
            };
            at(a).cmp(&at(b))
        });
        self.findings.extend(findings);
        self.scan_warnings(image, volume, scan);
        self.roots.push(Root {
            image: image.to_string(),
            volume: volume.to_string(),
            fs_type: found.fs_type.clone(),
            subvolume: found.subvolume.clone(),
            os,
            mounts,
        });
    }

    /// Finds and profiles the Linux roots on one image.
    fn image(&mut self, name: &str) {
        let image = match disk::open(name) {
            Ok(image) => image,
            Err(e) => return self.warn(name, None, format!("cannot open image: {e}")),
        };
        let volumes = match image.volumes() {
            Ok(v) => v,
            Err(e) => return self.warn(name, None, format!("cannot list volumes: {e}")),
        };
        let mut roots = Vec::new();
        for volume in &volumes {
            let Some(fs_type) = volume.fs_type.as_deref() else {
                continue;
            };
            if !ROOT_FS_TYPES.contains(&fs_type) {
                continue;
            }
            let fs = match image.open_filesystem(&volume.id) {
                Ok(fs) => DiskTree(fs),
                Err(e) => {
                    let message = format!("cannot open {fs_type} filesystem: {e}");
                    self.warn(name, Some(&volume.id), message);
                    continue;
                }
            };
            let found = |subvolume: Option<&str>| Found {
                volume: volume.id.clone(),
                fs_type: fs_type.to_string(),
                subvolume: subvolume.map(String::from),
            };
            if is_root(&fs) {
                roots.push((found(None), fs));
            } else if fs_type == "btrfs" {
                let sub = BTRFS_ROOT_SUBVOLUMES.iter().find_map(|sub| {
                    let fs = DiskTree(image.open_btrfs_subvolume(&volume.id, sub).ok()?);
                    is_root(&fs).then_some((found(Some(sub)), fs))
                });
                roots.extend(sub);
            }
        }
        // Each volume's Btrfs subvolumes, listed when an fstab first names one by id.
        let mut subvolumes = HashMap::new();
        for (found, root) in roots {
            sdk::log::info(&format!(
                "profiling {name} {}{} ({})",
                found.volume,
                found
                    .subvolume
                    .as_deref()
                    .map(|s| format!(" subvolume {s}"))
                    .unwrap_or_default(),
                found.fs_type
            ));
            // The filesystems its fstab mounts from this image, opened and put in place.
            let mut scan = Scan::new(&root);
            let entries = scan
                .read_text("/etc/fstab")
                .map(|t| mounts::parse_fstab(&t))
                .unwrap_or_default();
            self.scan_warnings(name, &found.volume, scan);
            let mut trees = Vec::new();
            for entry in entries {
                let Some(volume) = volumes.iter().find(|v| mounts::matches(&entry.spec, v)) else {
                    continue;
                };
                // `subvolid=` names the subvolume by id: its path comes from the host's list,
                // read once per volume. An id it does not hold is not mounted at all: the
                // default subvolume in its place would show the wrong files.
                let subvol = match (&entry.subvol, entry.subvolid) {
                    (Some(path), _) => Some(path.clone()),
                    (None, None) => None,
                    (None, Some(BTRFS_TOP_LEVEL)) => Some("/".into()),
                    (None, Some(id)) => {
                        let listing = subvolumes.entry(volume.id.clone()).or_insert_with(|| {
                            image
                                .list_btrfs_subvolumes(&volume.id)
                                .map_err(|e| e.to_string())
                        });
                        let path = match listing {
                            Ok(list) => list.iter().find(|s| s.id == id).map(|s| s.path.clone()),
                            Err(_) => None,
                        };
                        let Some(path) = path else {
                            let why = match listing {
                                Ok(_) => "no such subvolume".to_string(),
                                Err(e) => format!("cannot list its subvolumes: {e}"),
                            };
                            let message = format!(
                                "not mounting {} (subvolid={id}) as /etc/fstab says: {why}",
                                entry.target
                            );
                            self.warn(name, Some(&volume.id), message);
                            continue;
                        };
                        Some(path)
                    }
                };
                let opened = match &subvol {
                    Some(sub) => image.open_btrfs_subvolume(&volume.id, sub),
                    None => image.open_filesystem(&volume.id),
                };
                match opened {
                    Ok(fs) => trees.push((
                        MountInfo {
                            path: entry.target.clone(),
                            volume: volume.id.clone(),
                            subvolume: subvol.clone(),
                        },
                        DiskTree(fs),
                    )),
                    Err(e) => self.warn(
                        name,
                        Some(&volume.id),
                        format!(
                            "cannot open the filesystem /etc/fstab mounts on {}: {e}",
                            entry.target
                        ),
                    ),
                }
            }
            let mounted = mounts::Mounted::new(
                &root,
                trees
                    .iter()
                    .map(|(m, t)| (m.path.clone(), t as &dyn Tree))
                    .collect(),
            );
            let infos = trees.iter().map(|(m, _)| m.clone()).collect();
            self.profile(name, &found, &mounted, infos);
        }
    }

    fn into_report(self) -> ProfileReport {
        let summary = Summary::of(&self.findings);
        let risk_score = report::risk_score(&self.findings);
        ProfileReport {
            schema_version: SCHEMA_VERSION,
            profiles: self.options.profiles,
            min_severity: self.options.min_severity,
            roots: self.roots,
            summary,
            risk_score,
            partial: !self.warnings.is_empty(),
            findings: self.findings,
            warnings: self.warnings,
        }
    }
}

struct ProfileHandler;

impl Handler for ProfileHandler {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "guestkit.profile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec!["profile".into()],
            description: "Security, compliance and hardening checks of the Linux systems on the \
                          job's images: findings with evidence and remediation, a summary by \
                          severity and a risk score."
                .into(),
            payload_schema: Some(options::PAYLOAD_SCHEMA.into()),
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        let options =
            options::parse(&job.payload, &job.images).map_err(HandlerError::InvalidInput)?;
        if options.images.is_empty() {
            return Err(HandlerError::InvalidInput(
                "images: the job grants no image to profile".into(),
            ));
        }
        let images = options.images.clone();
        let mut run = Run {
            options,
            roots: Vec::new(),
            findings: Vec::new(),
            warnings: Vec::new(),
        };
        for (i, name) in images.iter().enumerate() {
            sdk::progress(i as u64, images.len() as u64, &format!("profiling {name}"));
            run.image(name);
        }
        if run.roots.is_empty() {
            let why: Vec<String> = run
                .warnings
                .iter()
                .map(|w| format!("{}: {}", w.image, w.message))
                .collect();
            return Err(HandlerError::Unsupported(format!(
                "no Linux root filesystem (a filesystem with /etc and /etc/os-release or \
                 /etc/passwd) found on {}{}",
                images.join(", "),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            )));
        }
        sdk::progress(images.len() as u64, images.len() as u64, "done");
        sdk::output(&run.into_report())
    }
}

sdk::export_handler!(ProfileHandler);
