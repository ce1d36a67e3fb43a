//! Image grants: which disk images a job may read, checked twice.
//!
//! At submission ([`resolve`]) every image a job names must resolve, symlinks followed, to a
//! regular file inside one of the configured image roots; anything else is refused with the
//! field that named it. The resolved path is what gets stored. At run time ([`prepare`]) each
//! image is opened once more, confined again, and the document's promises about it are
//! enforced on that same open file: its `format`, its `size_bytes` (virtual size), the job's
//! `maximum_disk_size_gb`, and its `checksum` (of the image file, as `sha256sum` prints it).

use crate::metrics::Metrics;
use guestkit_block::{BlockSource, FileSource};
use guestkit_host_api::GrantedImage;
use guestkit_protocol::ImageRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where images may come from.
#[derive(Debug, Clone, Default)]
pub struct ImagePolicy {
    /// Directories whose files jobs may be granted (canonical paths). Relative image paths
    /// are looked up in them in order. Empty: no image can be granted.
    pub roots: Vec<PathBuf>,
    /// NBD servers jobs may name: `HOST:PORT` for TCP, or a directory (absolute path) whose
    /// unix sockets are allowed. Empty: no NBD image can be granted (a job must not make the
    /// worker connect anywhere it likes).
    pub nbd_allow: Vec<String>,
}

impl ImagePolicy {
    /// A policy over `roots`, canonicalized (each must exist).
    pub fn new(roots: &[PathBuf]) -> anyhow::Result<Self> {
        let mut canonical = Vec::with_capacity(roots.len());
        for root in roots {
            let c = std::fs::canonicalize(root)
                .map_err(|e| anyhow::anyhow!("image root {}: {e}", root.display()))?;
            canonical.push(c);
        }
        Ok(ImagePolicy {
            roots: canonical,
            nbd_allow: Vec::new(),
        })
    }

    /// Whether `uri` names an allowed NBD server.
    fn nbd_allowed(&self, uri: &guestkit_nbd::NbdUri) -> bool {
        match &uri.address {
            guestkit_nbd::Address::Tcp { host, port } => {
                let want = format!("{host}:{port}");
                self.nbd_allow.contains(&want)
            }
            guestkit_nbd::Address::Unix(socket) => {
                let socket = Path::new(socket);
                let plain = socket
                    .components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir));
                plain
                    && self
                        .nbd_allow
                        .iter()
                        .any(|a| a.starts_with('/') && socket.starts_with(a))
            }
        }
    }

    fn confine(&self, path: &Path) -> Option<PathBuf> {
        let real = std::fs::canonicalize(path).ok()?;
        self.roots
            .iter()
            .any(|root| real.starts_with(root))
            .then_some(real)
    }
}

/// One granted image as stored with the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// The name the job used (and the handler sees).
    pub name: String,
    /// The canonical path inside an image root (empty for an NBD image).
    pub path: PathBuf,
    /// The NBD URI, for an image served over NBD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd: Option<String>,
    /// Required image format, if the document named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Required checksum of the image file, `algo:hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Required virtual size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Largest virtual size the job accepts (`constraints.maximum_disk_size_gb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_virtual_size: Option<u64>,
}

/// Why an image of a submitted job was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRefused {
    /// Dotted path of the field (e.g. `images[1]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Checks the images of a submitted job and returns what to store.
pub fn resolve(
    policy: &ImagePolicy,
    images: &[ImageRef],
    max_disk_bytes: Option<u64>,
) -> Result<Vec<Grant>, GrantRefused> {
    let mut grants: Vec<Grant> = Vec::with_capacity(images.len());
    for (i, image) in images.iter().enumerate() {
        let refuse = |message: String| GrantRefused {
            field: format!("images[{i}]"),
            message,
        };
        let (path, nbd) = if image.path.contains("://") {
            (
                PathBuf::new(),
                Some(resolve_nbd(policy, image).map_err(refuse)?),
            )
        } else {
            (resolve_file(policy, image).map_err(refuse)?, None)
        };
        if grants.iter().any(|g| g.path == path && g.nbd == nbd) {
            return Err(refuse(format!(
                "{}: the same image is granted twice",
                image.path
            )));
        }
        grants.push(Grant {
            name: image.path.clone(),
            path,
            nbd,
            format: image.format.clone(),
            checksum: image
                .checksum
                .as_ref()
                .map(|c| format!("{}:{}", c.algorithm, c.hex)),
            size_bytes: image.size_bytes,
            max_virtual_size: max_disk_bytes,
        });
    }
    Ok(grants)
}

/// Finds an image file inside the roots; the canonical path, or the refusal message.
fn resolve_file(policy: &ImagePolicy, image: &ImageRef) -> Result<PathBuf, String> {
    let given = Path::new(&image.path);
    let candidates: Vec<PathBuf> = if given.is_absolute() {
        vec![given.to_path_buf()]
    } else {
        policy.roots.iter().map(|r| r.join(given)).collect()
    };
    let Some(path) = candidates.iter().find_map(|c| policy.confine(c)) else {
        return Err(format!(
            "{}: no such image in the allowed image roots",
            image.path
        ));
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(format!("{}: not a regular file", image.path)),
        Err(e) => Err(format!("{}: {e}", image.path)),
    }
}

/// Checks an NBD URI against the policy; the URI, or the refusal message.
fn resolve_nbd(policy: &ImagePolicy, image: &ImageRef) -> Result<String, String> {
    let uri =
        guestkit_nbd::NbdUri::parse(&image.path).map_err(|e| format!("{}: {}", image.path, e.0))?;
    if !policy.nbd_allowed(&uri) {
        let allowed = if policy.nbd_allow.is_empty() {
            "servers named with --nbd-allow (none are)".to_string()
        } else {
            policy.nbd_allow.join(", ")
        };
        return Err(format!(
            "{}: NBD images are allowed only from {allowed}",
            image.path
        ));
    }
    Ok(image.path.clone())
}

/// Why a granted image could not be handed to the job at run time.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GrantError {
    /// The stored grant list is not what [`resolve`] writes.
    #[error("stored image grants are malformed: {0}")]
    Malformed(String),
    /// The image is gone or now outside the roots.
    #[error("image {name}: {message}")]
    Unavailable {
        /// Name in the job.
        name: String,
        /// Why.
        message: String,
    },
    /// The image is not what the document promised (format, size, checksum).
    #[error("image {name}: {message}")]
    Mismatch {
        /// Name in the job.
        name: String,
        /// What differs.
        message: String,
    },
}

impl GrantError {
    /// Stable code for the job's error.
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::Malformed(_) => "invalid_input",
            GrantError::Unavailable { .. } => "image_unavailable",
            GrantError::Mismatch { .. } => "image_mismatch",
        }
    }

    /// A vanished image may come back (a remount); a mismatch will not change.
    pub fn retryable(&self) -> bool {
        matches!(self, GrantError::Unavailable { .. })
    }
}

/// Opens and checks every granted image; returns them ready for the `disk` interface.
pub async fn prepare(
    policy: &ImagePolicy,
    images: &Value,
    metrics: &Arc<Metrics>,
) -> Result<Vec<GrantedImage>, GrantError> {
    if images.is_null() || images.as_array().is_some_and(|a| a.is_empty()) {
        return Ok(Vec::new());
    }
    let grants: Vec<Grant> =
        serde_json::from_value(images.clone()).map_err(|e| GrantError::Malformed(e.to_string()))?;
    let mut opened = Vec::with_capacity(grants.len());
    for grant in grants {
        let policy = policy.clone();
        let metrics = metrics.clone();
        let name = grant.name.clone();
        let image = tokio::task::spawn_blocking(move || open(&policy, &grant, &metrics))
            .await
            .map_err(|e| GrantError::Unavailable {
                name: name.clone(),
                message: format!("opening the image panicked: {e}"),
            })??;
        opened.push(image);
    }
    Ok(opened)
}

/// Opens one granted image and enforces what the job document promised about it.
pub fn open(
    policy: &ImagePolicy,
    grant: &Grant,
    metrics: &Metrics,
) -> Result<GrantedImage, GrantError> {
    let unavailable = |message: String| GrantError::Unavailable {
        name: grant.name.clone(),
        message,
    };
    if let Some(uri) = &grant.nbd {
        return open_nbd(policy, grant, uri, metrics);
    }
    if policy.confine(&grant.path).is_none() {
        return Err(unavailable(
            "no longer inside the allowed image roots".into(),
        ));
    }
    let file = std::fs::File::open(&grant.path).map_err(|e| unavailable(e.to_string()))?;
    // Everything below reads through this one open file (duplicated descriptors share it):
    // the bytes verified are the bytes the handler reads, even if the path is swapped.
    let dup = || file.try_clone().map_err(|e| unavailable(e.to_string()));
    if grant.checksum.is_some() {
        let source = FileSource::from_file(dup()?).map_err(|e| unavailable(e.to_string()))?;
        verify(grant, &source, metrics)?;
    }
    let opts = guestkit_formats::OpenOptions {
        allowed_roots: policy.roots.clone(),
        ..Default::default()
    };
    let image = guestkit_formats::open_file(dup()?, &grant.path, &opts);
    granted(grant, image, Some(Arc::new(file)))
}

/// Checks the opened image against the grant and hands it over.
fn granted(
    grant: &Grant,
    image: guestkit_formats::Result<guestkit_formats::Image>,
    file: Option<Arc<std::fs::File>>,
) -> Result<GrantedImage, GrantError> {
    let image = image.map_err(|e| GrantError::Mismatch {
        name: grant.name.clone(),
        message: format!("cannot be read as a disk image: {e}"),
    })?;
    let info = image.info().clone();
    check_info(grant, &info)?;
    Ok(GrantedImage {
        name: grant.name.clone(),
        disk: Arc::new(image),
        file,
        format: info.format.qemu_name().to_string(),
        backing_depth: info.backing_chain.len() as u32,
    })
}

/// Opens an image served over NBD (allowed by the policy at submission, checked again).
fn open_nbd(
    policy: &ImagePolicy,
    grant: &Grant,
    uri: &str,
    metrics: &Metrics,
) -> Result<GrantedImage, GrantError> {
    let unavailable = |message: String| GrantError::Unavailable {
        name: grant.name.clone(),
        message,
    };
    let parsed = guestkit_nbd::NbdUri::parse(uri).map_err(|e| unavailable(e.0))?;
    if !policy.nbd_allowed(&parsed) {
        return Err(unavailable("no longer allowed by --nbd-allow".into()));
    }
    let client = guestkit_nbd::NbdClient::open(uri).map_err(|e| unavailable(e.to_string()))?;
    let export: Arc<dyn BlockSource> = Arc::new(client);
    if grant.checksum.is_some() {
        verify(grant, &*export, metrics)?;
    }
    // The export is usually the decoded disk (qemu-nbd -f qcow2), but may be an image file
    // served as is; the format reader probes which.
    granted(grant, guestkit_formats::open_source(export, None), None)
}

/// Verifies the grant's checksum over `source` (the image file, or the NBD export).
fn verify(grant: &Grant, source: &dyn BlockSource, metrics: &Metrics) -> Result<(), GrantError> {
    let Some(expected) = &grant.checksum else {
        return Ok(());
    };
    let expected = guestkit_checksum::Expected::parse(expected)
        .map_err(|e| GrantError::Malformed(e.to_string()))?;
    let name = expected.algorithm.name();
    let verified = guestkit_checksum::verify(source, &expected, &Default::default());
    metrics
        .disk_bytes_read
        .with_label_values(&["verify"])
        .inc_by(source.size());
    let (result, outcome) = match verified {
        Ok(v) if v.matches => ("match", Ok(())),
        Ok(v) => (
            "mismatch",
            Err(GrantError::Mismatch {
                name: grant.name.clone(),
                message: format!(
                    "checksum mismatch: expected {name}:{}, found {name}:{}",
                    v.expected, v.actual
                ),
            }),
        ),
        Err(e) => (
            "error",
            Err(GrantError::Unavailable {
                name: grant.name.clone(),
                message: format!("checksum: {e}"),
            }),
        ),
    };
    metrics
        .checksum_verifications
        .with_label_values(&[name, result])
        .inc();
    outcome
}

/// Enforces the grant's `format`, `size_bytes` and `maximum_disk_size_gb`.
fn check_info(grant: &Grant, info: &guestkit_formats::ImageInfo) -> Result<(), GrantError> {
    let mismatch = |message: String| GrantError::Mismatch {
        name: grant.name.clone(),
        message,
    };
    let found = info.format.qemu_name();
    if let Some(want) = &grant.format {
        let same = want == found || (want == "vhd" && found == "vpc");
        if !same {
            return Err(mismatch(format!("format is {found}, the job says {want}")));
        }
    }
    if let Some(size) = grant.size_bytes
        && size != info.virtual_size
    {
        return Err(mismatch(format!(
            "virtual size is {} bytes, the job says {size}",
            info.virtual_size
        )));
    }
    if let Some(max) = grant.max_virtual_size
        && info.virtual_size > max
    {
        return Err(mismatch(format!(
            "virtual size {} bytes exceeds the job's maximum_disk_size_gb ({max} bytes)",
            info.virtual_size
        )));
    }
    Ok(())
}
