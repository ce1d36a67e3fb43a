//! Image grants: `images` entries and a v1.0 document's `payload.data.image`.

use crate::error::{Result, deserialize_at, fail, join};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

/// Most images one job may be granted, `payload.data.image` included.
pub const MAX_IMAGES: usize = 16;

/// Longest image path or URI, in bytes.
const MAX_PATH_BYTES: usize = 4096;

const FORMATS: [&str; 7] = ["raw", "qcow2", "vmdk", "vdi", "vhdx", "vhd", "vpc"];

/// Checksum algorithms and the length of their hex digests.
const ALGORITHMS: [(&str, usize); 5] = [
    ("sha256", 64),
    ("sha512", 128),
    ("sha1", 40),
    ("md5", 32),
    ("blake3", 64),
];

/// An image the job asks to be granted. Images are always attached read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// A path (resolved by the caller against its allowed image roots) or an `nbd://` /
    /// `nbd+unix://` URI.
    pub path: String,
    /// The format the image must have: `raw`, `qcow2`, `vmdk`, `vdi`, `vhdx`, `vhd` or `vpc`.
    pub format: Option<String>,
    /// The checksum the image file must have.
    pub checksum: Option<Checksum>,
    /// The size the client says the image has, in bytes.
    pub size_bytes: Option<u64>,
}

impl ImageRef {
    /// The normalized document's form of this image.
    pub(crate) fn to_document(&self) -> Value {
        json!({
            "path": self.path,
            "format": self.format,
            "checksum": self.checksum.as_ref().map(ToString::to_string),
            "size_bytes": self.size_bytes,
            "read_only": true,
        })
    }
}

/// An expected digest of an image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `sha256`, `sha512`, `sha1`, `md5` or `blake3`.
    pub algorithm: String,
    /// The digest in lowercase hex, of the algorithm's length.
    pub hex: String,
}

impl fmt::Display for Checksum {
    /// `<algorithm>:<hex>`, as in documents.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

/// An image given as an object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
struct ImageObject {
    path: Option<String>,
    format: Option<String>,
    checksum: Option<String>,
    size_bytes: Option<u64>,
    read_only: Option<bool>,
}

/// The images granted so far, in order.
#[derive(Default)]
pub(crate) struct Grants {
    images: Vec<ImageRef>,
}

impl Grants {
    /// Adds the entries of an `images` list.
    pub(crate) fn add_list(&mut self, list: Option<Vec<Value>>) -> Result<()> {
        let list = list.unwrap_or_default();
        if list.len() > MAX_IMAGES {
            return fail("images", format!("at most {MAX_IMAGES} images"));
        }
        for (i, entry) in list.into_iter().enumerate() {
            let field = format!("images[{i}]");
            match entry {
                Value::String(path) => {
                    check_path(&path, &field)?;
                    let image = ImageRef {
                        path,
                        format: None,
                        checksum: None,
                        size_bytes: None,
                    };
                    self.add(image, &field)?;
                }
                Value::Object(_) => {
                    let image = image_object(entry, &field)?;
                    self.add(image, &join(&field, "path"))?;
                }
                _ => {
                    return fail(
                        field,
                        "must be an image path or an object {path, format, checksum, size_bytes, read_only}",
                    );
                }
            }
        }
        Ok(())
    }

    /// Adds a v1.0 document's `payload.data.image`.
    pub(crate) fn add_payload_image(&mut self, image: Value) -> Result<()> {
        const FIELD: &str = "payload.data.image";
        let image = image_object(image, FIELD)?;
        if self.images.len() >= MAX_IMAGES {
            return fail(
                FIELD,
                format!("at most {MAX_IMAGES} images, this one included"),
            );
        }
        self.add(image, &join(FIELD, "path"))
    }

    /// The images granted so far.
    pub(crate) fn images(&self) -> &[ImageRef] {
        &self.images
    }

    /// The images, in the order granted.
    pub(crate) fn into_images(self) -> Vec<ImageRef> {
        self.images
    }

    fn add(&mut self, image: ImageRef, path_field: &str) -> Result<()> {
        if self.images.iter().any(|other| other.path == image.path) {
            return fail(path_field, "the same image is listed twice");
        }
        self.images.push(image);
        Ok(())
    }
}

/// Validates an image given as an object, at `field`.
fn image_object(value: Value, field: &str) -> Result<ImageRef> {
    if !value.is_object() {
        return fail(
            field,
            "must be an object {path, format, checksum, size_bytes, read_only}",
        );
    }
    let object: ImageObject = deserialize_at(value, field)?;
    let Some(path) = object.path else {
        return fail(join(field, "path"), "is required");
    };
    check_path(&path, &join(field, "path"))?;
    if let Some(format) = &object.format
        && !FORMATS.contains(&format.as_str())
    {
        return fail(
            join(field, "format"),
            format!("must be one of {}", FORMATS.join(", ")),
        );
    }
    let checksum = match &object.checksum {
        Some(s) => Some(parse_checksum(s, &join(field, "checksum"))?),
        None => None,
    };
    if object.read_only == Some(false) {
        return fail(
            join(field, "read_only"),
            "must be true: images are always attached read-only",
        );
    }
    Ok(ImageRef {
        path,
        format: object.format,
        checksum,
        size_bytes: object.size_bytes,
    })
}

/// Paths are opaque here (the caller resolves them against its image roots), but bounded,
/// NUL-free, and URIs only of the schemes the worker serves.
fn check_path(path: &str, field: &str) -> Result<()> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return fail(field, format!("must be 1-{MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') {
        return fail(field, "must not contain NUL");
    }
    if let Some((scheme, rest)) = path.split_once("://") {
        if scheme != "nbd" && scheme != "nbd+unix" {
            return fail(field, "must be a path or an nbd:// or nbd+unix:// URI");
        }
        if rest.is_empty() {
            return fail(field, format!("the {scheme}:// URI names nothing"));
        }
    }
    Ok(())
}

/// Parses `<algorithm>:<hex>` (or bare hex, taken as sha256), lowercasing the hex.
fn parse_checksum(s: &str, field: &str) -> Result<Checksum> {
    let names = || {
        ALGORITHMS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Bare hex is a sha256, as in the original protocol's examples.
    let (algorithm, hex) = s.split_once(':').unwrap_or(("sha256", s));
    let Some(&(_, len)) = ALGORITHMS.iter().find(|(name, _)| *name == algorithm) else {
        return fail(
            field,
            format!("unknown algorithm {algorithm:?}; use one of {}", names()),
        );
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return fail(field, format!("a {algorithm} digest is {len} hex digits"));
    }
    Ok(Checksum {
        algorithm: algorithm.to_string(),
        hex: hex.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        let c = parse_checksum(&format!("sha256:{}", "AB".repeat(32)), "f").unwrap();
        assert_eq!(c.algorithm, "sha256");
        assert_eq!(c.hex, "ab".repeat(32));
        assert_eq!(c.to_string(), format!("sha256:{}", "ab".repeat(32)));
        assert!(parse_checksum(&format!("md5:{}", "0".repeat(32)), "f").is_ok());
        let bare = parse_checksum(&"CD".repeat(32), "f").unwrap();
        assert_eq!(
            (bare.algorithm.as_str(), bare.hex.as_str()),
            ("sha256", "cd".repeat(32).as_str())
        );
        assert!(parse_checksum(&format!("blake3:{}", "f".repeat(64)), "f").is_ok());
        for bad in [
            "sha256".to_string(),
            "sha256:abc".to_string(),
            format!("sha256:{}", "g".repeat(64)),
            format!("sha1:{}", "0".repeat(64)),
            format!("SHA256:{}", "0".repeat(64)),
            format!("crc32:{}", "0".repeat(8)),
        ] {
            assert_eq!(parse_checksum(&bad, "f").unwrap_err().field, "f", "{bad}");
        }
    }

    #[test]
    fn paths() {
        for ok in [
            "disk.qcow2",
            "/images/a.raw",
            "nbd://host:10809/export",
            "nbd+unix:///e?socket=/s",
        ] {
            assert!(check_path(ok, "f").is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_PATH_BYTES + 1);
        for bad in [
            "",
            "a\0b",
            "http://x/y",
            "file:///etc/passwd",
            "nbd://",
            &long,
        ] {
            assert!(check_path(bad, "f").is_err(), "{bad}");
        }
    }
}
