//! Image grants: which disk images a job may read, checked twice.
//!
//! At submission ([`resolve`]) every image a job names must resolve, symlinks followed, to a
//! regular file inside one of the configured image roots; anything else is refused with the
//! field that named it. The resolved path is what gets stored. At run time ([`prepare`]) each
//! image is opened once more, confined again, and the document's promises about it are
//! enforced on that same open file: its `format`, its `size_bytes` (virtual size), the job's
//! `maximum_disk_size_gb`, and its `checksum` (of the image file, as `sha256sum` prints it).

use crate::metrics::Metrics;
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
        Ok(ImagePolicy { roots: canonical })
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
    /// The canonical path inside an image root.
    pub path: PathBuf,
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
        let field = format!("images[{i}]");
        let refuse = |message: String| GrantRefused {
            field: field.clone(),
            message,
        };
        if image.path.contains("://") {
            return Err(refuse(format!(
                "{}: network images are not enabled on this worker",
                image.path
            )));
        }
        let given = Path::new(&image.path);
        let candidates: Vec<PathBuf> = if given.is_absolute() {
            vec![given.to_path_buf()]
        } else {
            policy.roots.iter().map(|r| r.join(given)).collect()
        };
        let Some(path) = candidates.iter().find_map(|c| policy.confine(c)) else {
            return Err(refuse(format!(
                "{}: no such image in the allowed image roots",
                image.path
            )));
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(refuse(format!("{}: not a regular file", image.path))),
            Err(e) => return Err(refuse(format!("{}: {e}", image.path))),
        }
        if grants.iter().any(|g| g.path == path) {
            return Err(refuse(format!(
                "{}: the same image is granted twice",
                image.path
            )));
        }
        grants.push(Grant {
            name: image.path.clone(),
            path,
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

/// Opens and checks every granted image; returns the names the handler is given.
pub async fn prepare(
    policy: &ImagePolicy,
    images: &Value,
    metrics: &Arc<Metrics>,
) -> Result<Vec<String>, GrantError> {
    if images.is_null() || images.as_array().is_some_and(|a| a.is_empty()) {
        return Ok(Vec::new());
    }
    let grants: Vec<Grant> =
        serde_json::from_value(images.clone()).map_err(|e| GrantError::Malformed(e.to_string()))?;
    let mut names = Vec::with_capacity(grants.len());
    for grant in grants {
        let policy = policy.clone();
        let metrics = metrics.clone();
        let name = grant.name.clone();
        tokio::task::spawn_blocking(move || check(&policy, &grant, &metrics))
            .await
            .map_err(|e| GrantError::Unavailable {
                name: name.clone(),
                message: format!("checking the image panicked: {e}"),
            })??;
        names.push(name);
    }
    Ok(names)
}

fn check(policy: &ImagePolicy, grant: &Grant, metrics: &Metrics) -> Result<(), GrantError> {
    let unavailable = |message: String| GrantError::Unavailable {
        name: grant.name.clone(),
        message,
    };
    let mismatch = |message: String| GrantError::Mismatch {
        name: grant.name.clone(),
        message,
    };
    if policy.confine(&grant.path).is_none() {
        return Err(unavailable(
            "no longer inside the allowed image roots".into(),
        ));
    }
    let file = std::fs::File::open(&grant.path).map_err(|e| unavailable(e.to_string()))?;
    // The checksum is taken through the same open file (a duplicate descriptor) the format reader uses, so the bytes
    // verified are the bytes read even if the path is swapped meanwhile.
    if let Some(expected) = &grant.checksum {
        let Some((algorithm, want)) = expected.split_once(':') else {
            return Err(GrantError::Malformed(format!("checksum {expected:?}")));
        };
        let dup = file.try_clone().map_err(|e| unavailable(e.to_string()))?;
        match hash_file(dup, algorithm) {
            Ok((found, bytes)) => {
                metrics
                    .disk_bytes_read
                    .with_label_values(&["file"])
                    .inc_by(bytes);
                let matches = found.eq_ignore_ascii_case(want);
                let result = if matches { "match" } else { "mismatch" };
                metrics
                    .checksum_verifications
                    .with_label_values(&[algorithm, result])
                    .inc();
                if !matches {
                    return Err(mismatch(format!(
                        "checksum mismatch: expected {algorithm}:{want}, found {algorithm}:{found}"
                    )));
                }
            }
            Err(e) => {
                metrics
                    .checksum_verifications
                    .with_label_values(&[algorithm, "error"])
                    .inc();
                return Err(unavailable(format!("checksum: {e}")));
            }
        }
    }
    if grant.format.is_none() && grant.size_bytes.is_none() && grant.max_virtual_size.is_none() {
        return Ok(());
    }
    let opts = guestkit_formats::OpenOptions {
        allowed_roots: policy.roots.clone(),
        ..Default::default()
    };
    let image = guestkit_formats::open_file(file, &grant.path, &opts)
        .map_err(|e| mismatch(format!("cannot be opened as a disk image: {e}")))?;
    let info = image.info();
    if let Some(want) = &grant.format {
        let found = info.format.qemu_name();
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

/// Hashes a whole file with `algorithm`; returns the lowercase hex digest and bytes read.
fn hash_file(mut file: std::fs::File, algorithm: &str) -> std::io::Result<(String, u64)> {
    use sha2::Digest as _;
    use std::io::Read as _;
    enum Hasher {
        Sha256(sha2::Sha256),
        Sha512(sha2::Sha512),
        Sha1(sha1::Sha1),
        Md5(md5::Md5),
        Blake3(Box<blake3::Hasher>),
    }
    let mut hasher = match algorithm {
        "sha256" => Hasher::Sha256(sha2::Sha256::new()),
        "sha512" => Hasher::Sha512(sha2::Sha512::new()),
        "sha1" => Hasher::Sha1(sha1::Sha1::new()),
        "md5" => Hasher::Md5(md5::Md5::new()),
        "blake3" => Hasher::Blake3(Box::default()),
        other => {
            return Err(std::io::Error::other(format!(
                "unknown checksum algorithm {other}"
            )));
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        let chunk = &buf[..n];
        match &mut hasher {
            Hasher::Sha256(h) => h.update(chunk),
            Hasher::Sha512(h) => h.update(chunk),
            Hasher::Sha1(h) => h.update(chunk),
            Hasher::Md5(h) => h.update(chunk),
            Hasher::Blake3(h) => {
                h.update(chunk);
            }
        }
    }
    let hex = match hasher {
        Hasher::Sha256(h) => hex::encode(h.finalize()),
        Hasher::Sha512(h) => hex::encode(h.finalize()),
        Hasher::Sha1(h) => hex::encode(h.finalize()),
        Hasher::Md5(h) => hex::encode(h.finalize()),
        Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
    };
    Ok((hex, total))
}
