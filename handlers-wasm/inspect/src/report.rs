//! The output document; `docs/schemas/inspect-output.schema.json` describes it field by field.

use crate::etc::{Group, Interface, User};
use crate::pkg::Application;
use serde::Serialize;
use std::collections::BTreeMap;

/// Version of the output schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: &str = "1.0";

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: &'static str,
    pub images: Vec<ImageReport>,
    pub operating_systems: Vec<OsReport>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub name: String,
    pub format: String,
    pub virtual_size: u64,
    pub backing_depth: u32,
    pub filesystems: Vec<FilesystemReport>,
}

/// A volume holding a filesystem (or swap), as the host's probe found it.
#[derive(Debug, Clone, Serialize)]
pub struct FilesystemReport {
    pub volume: String,
    /// `whole-disk`, `partition` or `logical-volume`.
    pub kind: &'static str,
    pub size: u64,
    #[serde(rename = "type")]
    pub fs_type: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub partition_label: Option<String>,
    pub partition_uuid: Option<String>,
}

/// Where an OS root is: image, volume and, for Btrfs, subvolume.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Location {
    pub image: String,
    pub volume: String,
    /// Path from the top level (`/` for the top level itself when it is not the default);
    /// `None` for other filesystems and for a Btrfs whose default is the top level.
    pub subvolume: Option<String>,
    /// The subvolume's id, when the host listed it (added in schema 1.0 without a bump: absent
    /// when unknown, so older readers see the same documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subvolume_id: Option<u64>,
}

impl Location {
    /// Volume `volume` of image `image`, with no subvolume.
    pub fn on(image: &str, volume: &str) -> Location {
        Location {
            image: image.to_string(),
            volume: volume.to_string(),
            ..Location::default()
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct OsReport {
    pub root: Option<Location>,
    #[serde(rename = "type")]
    pub os_type: String,
    pub distro: String,
    pub product_name: Option<String>,
    pub product_variant: Option<String>,
    pub major_version: u32,
    pub minor_version: u32,
    pub build: Option<String>,
    pub arch: Option<String>,
    pub hostname: Option<String>,
    pub machine_id: Option<String>,
    pub package_format: Option<String>,
    pub package_management: Option<String>,
    pub package_database: Option<PackageDatabase>,
    pub windows_systemroot: Option<String>,
    pub windows_current_control_set: Option<String>,
    pub drive_mappings: BTreeMap<String, DriveMapping>,
    pub mountpoints: Vec<Mountpoint>,
    pub filesystems: Vec<OsFilesystem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applications: Option<Vec<Application>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Services>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<User>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<Kernel>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,
    pub warnings: Vec<String>,
}

/// Where a Windows drive letter lives, as the registry's `MountedDevices` records it, and
/// the granted volume that matches.
#[derive(Debug, Serialize)]
pub struct DriveMapping {
    #[serde(flatten)]
    pub registry: winreg::DriveMapping,
    pub location: Option<Location>,
}

#[derive(Debug, Serialize)]
pub struct PackageDatabase {
    /// `dpkg`, `rpm-sqlite`, `rpm-bdb`, `apk`, `pacman`, `windows-registry`.
    pub format: &'static str,
    pub path: String,
}

/// One fstab line that mounts something on a path, and the volume it resolved to.
#[derive(Debug, Clone, Serialize)]
pub struct Mountpoint {
    pub mountpoint: String,
    /// The device as fstab names it: `UUID=...`, `LABEL=...`, `/dev/...`.
    pub spec: String,
    pub fs_type: String,
    pub options: String,
    /// Where it resolved to; `null` when no granted volume matches.
    pub location: Option<Location>,
}

/// A filesystem that belongs to this OS: its root and whatever its fstab mounts.
#[derive(Debug, Clone, Serialize)]
pub struct OsFilesystem {
    pub mountpoint: String,
    pub location: Location,
    #[serde(rename = "type")]
    pub fs_type: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Services {
    pub systemd: Vec<SystemdUnit>,
    pub sysv: Vec<SysvService>,
}

#[derive(Debug, Serialize)]
pub struct SystemdUnit {
    pub name: String,
    pub wanted_by: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SysvService {
    pub name: String,
    pub runlevels: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Network {
    pub interfaces: Vec<Interface>,
    pub nameservers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Kernel {
    pub version: String,
    pub path: Option<String>,
    pub modules_path: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CloudInit {
    pub installed: bool,
    pub disabled: bool,
    pub version: Option<String>,
}
