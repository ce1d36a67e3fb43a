//! Finds OS roots on the granted images and inspects each one.

use crate::etc;
use crate::guest::Guest;
use crate::linux;
use crate::report::{
    FilesystemReport, ImageReport, Location, Mountpoint, OsFilesystem, OsReport, Report,
    SCHEMA_VERSION,
};
use crate::windows;
use crate::{Options, Section};
use guestkit_handler_sdk::disk::{
    self, BTRFS_TOP_LEVEL, BtrfsSubvolume, DiskError, FileKind, Filesystem, Image, Volume,
    VolumeKind,
};
use guestkit_handler_sdk::{self as sdk, HandlerError};

/// Filesystem types the host can open.
const OPENABLE: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "ntfs"];
/// Most Btrfs subvolumes tried per filesystem.
const MAX_SUBVOLUMES: usize = 64;

struct Opened {
    name: String,
    image: Image,
    volumes: Vec<Volume>,
    /// The subvolumes of each Btrfs volume the host could list, by volume id.
    subvolumes: Vec<(String, Vec<BtrfsSubvolume>)>,
}

impl Opened {
    fn subvolumes(&self, volume: &str) -> Option<&[BtrfsSubvolume]> {
        self.subvolumes
            .iter()
            .find(|(v, _)| v == volume)
            .map(|(_, l)| l.as_slice())
    }

    fn is_btrfs(&self, volume: &str) -> bool {
        self.volumes
            .iter()
            .any(|v| v.id == volume && v.fs_type.as_deref() == Some("btrfs"))
    }

    /// Opens the filesystem `loc` names on this image.
    fn open(&self, loc: &Location) -> Result<Filesystem, DiskError> {
        match &loc.subvolume {
            Some(sub) => self.image.open_btrfs_subvolume(&loc.volume, sub),
            None => self.image.open_filesystem(&loc.volume),
        }
    }
}

/// Which Btrfs subvolume an fstab line (or a candidate root) means.
#[derive(Debug, Clone, Copy)]
enum Subvol<'a> {
    /// No `subvol=`/`subvolid=`: the default subvolume.
    Default,
    /// `subvol=PATH`, from the top level.
    Path(&'a str),
    /// `subvolid=ID`.
    Id(u64),
}

impl<'a> Subvol<'a> {
    /// What the mount options of an fstab line select (`subvol=` before `subvolid=`, which
    /// Linux requires to agree).
    fn from_options(options: &'a str) -> Self {
        let opts = || options.split(',');
        if let Some(p) = opts().find_map(|o| o.strip_prefix("subvol=")) {
            return Subvol::Path(p);
        }
        match opts().find_map(|o| o.strip_prefix("subvolid=")) {
            Some(id) => id.parse().map_or(Subvol::Default, Subvol::Id),
            None => Subvol::Default,
        }
    }
}

/// The location of subvolume `sel` of Btrfs volume `volume` on `img`, always spelled the same
/// way, so a root and the fstab line naming it compare equal: a listed subvolume by its path
/// and id; the top level as no subvolume when it is the default, else as `/` (id 5). `None`
/// for a `subvolid=` the listing does not have, or any but 5 when there is no listing.
fn btrfs_location(img: &Opened, volume: &str, sel: Subvol<'_>) -> Option<Location> {
    locate_subvolume(&img.name, volume, img.subvolumes(volume), sel)
}

/// [`btrfs_location`] given the volume's listing, if there is one.
fn locate_subvolume(
    image: &str,
    volume: &str,
    list: Option<&[BtrfsSubvolume]>,
    sel: Subvol<'_>,
) -> Option<Location> {
    let base = Location::on(image, volume);
    let Some(list) = list else {
        // Not listed: keep what the line says. An id other than the top level's cannot be
        // spelled as a path, and the default in its place would be the wrong filesystem.
        let subvolume = match sel {
            Subvol::Path(p) => Some(p.trim_matches('/').to_string()).filter(|p| !p.is_empty()),
            Subvol::Default | Subvol::Id(BTRFS_TOP_LEVEL) => None,
            Subvol::Id(_) => return None,
        };
        return Some(Location { subvolume, ..base });
    };
    let top = || {
        if list.iter().any(|s| s.is_default) {
            Location {
                subvolume: Some("/".into()),
                subvolume_id: Some(BTRFS_TOP_LEVEL),
                ..base.clone()
            }
        } else {
            base.clone()
        }
    };
    let found = match sel {
        Subvol::Default => list.iter().find(|s| s.is_default),
        Subvol::Id(BTRFS_TOP_LEVEL) => None,
        Subvol::Id(id) => Some(list.iter().find(|s| s.id == id)?),
        Subvol::Path(p) => {
            let p = p.trim_matches('/');
            if p.is_empty() {
                None
            } else {
                let Some(s) = list.iter().find(|s| s.path == p) else {
                    return Some(Location {
                        subvolume: Some(p.to_string()),
                        ..base
                    });
                };
                Some(s)
            }
        }
    };
    Some(match found {
        Some(s) => Location {
            subvolume: Some(s.path.clone()),
            subvolume_id: Some(s.id),
            ..base
        },
        None => top(),
    })
}

/// The candidate roots of a Btrfs volume whose subvolumes the host could not list: the default
/// subvolume and each directory at its root that opens as a subvolume (`@`, `root`, ...), so a
/// root in `@` is still found.
fn unlisted_btrfs_candidates(img: &Opened, volume: &str) -> Vec<Location> {
    let base = Location::on(&img.name, volume);
    let tops = img
        .image
        .open_filesystem(volume)
        .and_then(|fs| fs.read_dir("/", 1000))
        .map(|l| l.entries)
        .unwrap_or_default();
    let subvolumes = tops
        .into_iter()
        .filter(|e| e.kind == FileKind::Directory)
        .filter(|e| img.image.open_btrfs_subvolume(volume, &e.name).is_ok())
        .take(MAX_SUBVOLUMES)
        .map(|e| Location {
            subvolume: Some(e.name),
            ..base.clone()
        });
    std::iter::once(base.clone()).chain(subvolumes).collect()
}

fn kind_name(k: VolumeKind) -> &'static str {
    match k {
        VolumeKind::WholeDisk => "whole-disk",
        VolumeKind::Partition => "partition",
        VolumeKind::LogicalVolume => "logical-volume",
    }
}

/// Inspects `names` (granted images) into a report.
pub fn run(names: &[String], options: &Options) -> Result<Report, HandlerError> {
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        images: Vec::new(),
        operating_systems: Vec::new(),
        warnings: Vec::new(),
    };
    let mut opened = Vec::new();
    for name in names {
        let image = disk::open(name)?;
        let info = image.info();
        let volumes = match image.volumes() {
            Ok(v) => v,
            Err(e) => {
                report.warnings.push(format!("{name}: volumes: {e}"));
                Vec::new()
            }
        };
        report.images.push(ImageReport {
            name: name.clone(),
            format: info.format,
            virtual_size: info.virtual_size,
            backing_depth: info.backing_depth,
            filesystems: volumes
                .iter()
                .filter(|v| v.fs_type.as_deref().is_some_and(|t| t != "LVM2_member"))
                .map(|v| FilesystemReport {
                    volume: v.id.clone(),
                    kind: kind_name(v.kind),
                    size: v.size,
                    fs_type: v.fs_type.clone().unwrap_or_default(),
                    label: v.fs_label.clone(),
                    uuid: v.fs_uuid.clone(),
                    partition_label: v.partition_label.clone(),
                    partition_uuid: v.partition_uuid.clone(),
                })
                .collect(),
        });
        let mut subvolumes = Vec::new();
        for v in volumes
            .iter()
            .filter(|v| v.fs_type.as_deref() == Some("btrfs"))
        {
            match image.list_btrfs_subvolumes(&v.id) {
                Ok(list) => subvolumes.push((v.id.clone(), list)),
                Err(e) => report.warnings.push(format!(
                    "{name} {}: btrfs subvolumes: {e}; trying the default subvolume and the \
                     directories at its root instead",
                    v.id
                )),
            }
        }
        opened.push(Opened {
            name: name.clone(),
            image,
            volumes,
            subvolumes,
        });
    }

    let total = opened.iter().map(|o| o.volumes.len() as u64).sum();
    let mut done = 0;
    for (index, img) in opened.iter().enumerate() {
        for vol in &img.volumes {
            done += 1;
            sdk::progress(done, total, &format!("{} {}", img.name, vol.id));
            let Some(fs_type) = vol.fs_type.as_deref().filter(|t| OPENABLE.contains(t)) else {
                continue;
            };
            // Like libguestfs: on Btrfs the top level and every subvolume is a candidate root.
            let candidates: Vec<Location> = match img.subvolumes(&vol.id) {
                Some(list) if fs_type == "btrfs" => std::iter::once(Subvol::Path("/"))
                    .chain(
                        list.iter()
                            .take(MAX_SUBVOLUMES)
                            .map(|s| Subvol::Path(&s.path)),
                    )
                    .filter_map(|sel| btrfs_location(img, &vol.id, sel))
                    .collect(),
                None if fs_type == "btrfs" => unlisted_btrfs_candidates(img, &vol.id),
                _ => vec![Location::on(&img.name, &vol.id)],
            };
            for loc in candidates {
                let fs = match img.open(&loc) {
                    Ok(fs) => fs,
                    Err(e) => {
                        let sub = loc.subvolume.as_deref().unwrap_or_default();
                        report
                            .warnings
                            .push(format!("{} {} {sub}: {e}", img.name, vol.id));
                        continue;
                    }
                };
                if let Some(os) = inspect_fs(fs, loc, index, &opened, options) {
                    report.operating_systems.push(os);
                }
            }
        }
    }
    Ok(report)
}

/// The OS whose root is `fs`, if it is one.
fn inspect_fs(
    fs: Filesystem,
    location: Location,
    image_index: usize,
    images: &[Opened],
    options: &Options,
) -> Option<OsReport> {
    let mut guest = Guest::new(fs);
    if let Some(os_type) = linux::root_type(&guest) {
        return Some(inspect_root(
            &mut guest,
            os_type,
            location,
            image_index,
            images,
            options,
        ));
    }
    let system_root = windows::system_root(&guest)?;
    Some(inspect_windows(
        &guest,
        &system_root,
        location,
        image_index,
        images,
        options,
    ))
}

fn inspect_root(
    g: &mut Guest,
    os_type: &'static str,
    root: Location,
    image_index: usize,
    images: &[Opened],
    options: &Options,
) -> OsReport {
    let mut os = OsReport {
        os_type: os_type.into(),
        ..OsReport::default()
    };
    sdk::log::info(&format!("{os_type} root on {} {}", root.image, root.volume));
    match os_type {
        "linux" => linux::release(g, &mut os),
        other => linux::bsd_release(g, &mut os, other),
    }
    os.arch = linux::arch(g);
    os.hostname = match os_type {
        "linux" => linux::hostname(g),
        _ => linux::bsd_hostname(g),
    };
    os.machine_id = linux::machine_id(g);

    // The root itself, then what fstab mounts.
    let root_vol = find_volume(images, &root);
    os.filesystems.push(OsFilesystem {
        mountpoint: "/".into(),
        location: root.clone(),
        fs_type: root_vol.and_then(|v| v.fs_type.clone()),
        label: root_vol.and_then(|v| v.fs_label.clone()),
        uuid: root_vol.and_then(|v| v.fs_uuid.clone()),
    });
    match g.read("/etc/fstab", 1 << 20) {
        Ok(Some(data)) => {
            for entry in etc::parse_fstab(&data) {
                let subvol = Subvol::from_options(&entry.options);
                // `/dev/root`, and `/` on the BSDs (whose device names do not translate),
                // are the root itself.
                let is_root =
                    entry.spec == "/dev/root" || (os_type != "linux" && entry.mountpoint == "/");
                let resolved = if is_root {
                    Some(root.clone())
                } else {
                    resolve(&entry.spec, image_index, images).and_then(|(i, v)| {
                        let img = &images[i];
                        if img.is_btrfs(&v.id) {
                            btrfs_location(img, &v.id, subvol)
                        } else {
                            Some(Location::on(&img.name, &v.id))
                        }
                    })
                };
                if let Some(loc) = &resolved {
                    let same_as_root = loc.image == root.image
                        && loc.volume == root.volume
                        && loc.subvolume == root.subvolume;
                    if entry.mountpoint != "/" && !same_as_root {
                        mount(g, images, loc, &entry.mountpoint, &mut os);
                    }
                    if entry.mountpoint != "/" {
                        let v = find_volume(images, loc);
                        os.filesystems.push(OsFilesystem {
                            mountpoint: entry.mountpoint.clone(),
                            location: loc.clone(),
                            fs_type: v.and_then(|v| v.fs_type.clone()),
                            label: v.and_then(|v| v.fs_label.clone()),
                            uuid: v.and_then(|v| v.fs_uuid.clone()),
                        });
                    }
                }
                os.mountpoints.push(Mountpoint {
                    mountpoint: entry.mountpoint,
                    spec: entry.spec,
                    fs_type: entry.fs_type,
                    options: entry.options,
                    location: resolved,
                });
            }
        }
        Ok(None) => {}
        Err(e) => os.warnings.push(e),
    }
    // libguestfs orders mountpoints by path length, so a parent comes before its children.
    os.mountpoints.sort_by(|a, b| {
        (a.mountpoint.len(), &a.mountpoint).cmp(&(b.mountpoint.len(), &b.mountpoint))
    });
    os.filesystems.sort_by(|a, b| {
        (a.mountpoint.len(), &a.mountpoint).cmp(&(b.mountpoint.len(), &b.mountpoint))
    });

    let want = |s: Section| options.wants(s);
    if want(Section::Applications) {
        os.applications = Some(linux::applications(g, &mut os));
    }
    if want(Section::Services) {
        os.services = Some(linux::services(g));
    }
    if want(Section::Users) {
        os.users = Some(etc_entries(
            g,
            "/etc/passwd",
            etc::parse_passwd,
            &mut os.warnings,
        ));
    }
    if want(Section::Groups) {
        os.groups = Some(etc_entries(
            g,
            "/etc/group",
            etc::parse_group,
            &mut os.warnings,
        ));
    }
    if want(Section::Network) {
        os.network = Some(linux::network(g));
    }
    if want(Section::Kernels) {
        os.kernels = Some(linux::kernels(g));
    }
    if want(Section::CloudInit) {
        os.cloud_init = Some(linux::cloud_init(g, os.applications.as_deref()));
    }
    os.root = Some(root);
    os
}

/// The entries of the passwd-style file `path` parsed by `parse` (none if it cannot be
/// read), with a warning when lines were skipped.
fn etc_entries<T>(
    g: &Guest,
    path: &str,
    parse: fn(&[u8]) -> (Vec<T>, usize),
    warnings: &mut Vec<String>,
) -> Vec<T> {
    let (entries, bad) = g.read_small(path).map(|d| parse(&d)).unwrap_or_default();
    if bad > 0 {
        warnings.push(format!("{path}: {bad} malformed lines skipped"));
    }
    entries
}

fn inspect_windows(
    g: &Guest,
    system_root: &str,
    root: Location,
    image_index: usize,
    images: &[Opened],
    options: &Options,
) -> OsReport {
    sdk::log::info(&format!("windows root on {} {}", root.image, root.volume));
    let mut os = OsReport::default();
    let root_vol = find_volume(images, &root);
    os.filesystems.push(OsFilesystem {
        mountpoint: "/".into(),
        location: root.clone(),
        fs_type: root_vol.and_then(|v| v.fs_type.clone()),
        label: root_vol.and_then(|v| v.fs_label.clone()),
        uuid: root_vol.and_then(|v| v.fs_uuid.clone()),
    });
    let resolve = |m: &winreg::DriveMapping| resolve_drive(m, image_index, images);
    windows::inspect(g, system_root, &mut os, options, &resolve);
    // libguestfs' only Windows mountpoint: the root as `/`. Windows names it by the drive
    // letter MountedDevices maps to it (C: when none does).
    let letter = os
        .drive_mappings
        .iter()
        .find(|(_, m)| {
            m.location
                .as_ref()
                .is_some_and(|l| l.image == root.image && l.volume == root.volume)
        })
        .map_or("C", |(letter, _)| letter.as_str());
    os.mountpoints.push(Mountpoint {
        mountpoint: "/".into(),
        spec: format!("{letter}:"),
        fs_type: root_vol.and_then(|v| v.fs_type.clone()).unwrap_or_default(),
        options: String::new(),
        location: Some(root.clone()),
    });
    os.root = Some(root);
    os
}

/// The granted volume a Windows drive mapping names: the MBR partition starting at `offset` on
/// the disk with that signature, or the GPT partition with that GUID.
fn resolve_drive(
    m: &winreg::DriveMapping,
    image_index: usize,
    images: &[Opened],
) -> Option<Location> {
    let order = std::iter::once(image_index).chain((0..images.len()).filter(|i| *i != image_index));
    for i in order {
        let img = images.get(i)?;
        let volume = match m {
            winreg::DriveMapping::Gpt { partition_guid } => img
                .volumes
                .iter()
                .find(|v| {
                    v.partition_uuid
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(partition_guid))
                })
                .map(|v| v.id.clone()),
            winreg::DriveMapping::Mbr {
                disk_signature,
                offset,
            } => {
                let Ok(mbr) = img.image.read(0, 512) else {
                    continue;
                };
                if mbr.len() < 512 || mbr[510..512] != [0x55, 0xaa] {
                    continue;
                }
                let signature =
                    u32::from_le_bytes([mbr[0x1b8], mbr[0x1b9], mbr[0x1ba], mbr[0x1bb]]);
                if format!("{signature:08x}") != disk_signature.to_ascii_lowercase() {
                    continue;
                }
                (0..4).find_map(|n| {
                    let e = &mbr[0x1be + 16 * n..0x1be + 16 * (n + 1)];
                    let start = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]])) * 512;
                    (e[4] != 0 && start == *offset).then(|| format!("p{}", n + 1))
                })
            }
        };
        if let Some(volume) = volume.filter(|id| img.volumes.iter().any(|v| &v.id == id)) {
            return Some(Location::on(&img.name, &volume));
        }
    }
    None
}

fn mount(g: &mut Guest, images: &[Opened], loc: &Location, point: &str, os: &mut OsReport) {
    let Some(img) = images.iter().find(|i| i.name == loc.image) else {
        return;
    };
    let vol = img.volumes.iter().find(|v| v.id == loc.volume);
    if !vol
        .and_then(|v| v.fs_type.as_deref())
        .is_some_and(|t| OPENABLE.contains(&t))
    {
        return;
    }
    match img.open(loc) {
        Ok(fs) => g.mount(point, fs),
        Err(e) => os.warnings.push(format!(
            "mounting {point} from {} {}: {e}",
            loc.image, loc.volume
        )),
    }
}

fn find_volume<'a>(images: &'a [Opened], loc: &Location) -> Option<&'a Volume> {
    images
        .iter()
        .find(|i| i.name == loc.image)?
        .volumes
        .iter()
        .find(|v| v.id == loc.volume)
}

/// `/dev/mapper/VG-LV` (a `-` inside a name is doubled) as (VG, LV).
fn split_mapper(name: &str) -> Option<(String, String)> {
    let b: Vec<char> = name.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '-' {
            if b.get(i + 1) == Some(&'-') {
                i += 2;
                continue;
            }
            let vg: String = b[..i].iter().collect();
            let lv: String = b[i + 1..].iter().collect();
            return Some((vg.replace("--", "-"), lv.replace("--", "-")));
        }
        i += 1;
    }
    None
}

/// Which image index and partition a Linux device name points at: `/dev/sda2` -> (0, 2),
/// `/dev/vdb` -> (1, 0), `/dev/nvme0n1p3` -> (0, 3).
fn device_index(dev: &str) -> Option<(usize, u32)> {
    let name = dev.strip_prefix("/dev/")?;
    for prefix in ["xvd", "sd", "hd", "vd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let letters: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            let digits = &rest[letters.len()..];
            if letters.is_empty() || letters.len() > 2 {
                return None;
            }
            let index = letters
                .bytes()
                .fold(0usize, |acc, c| acc * 26 + usize::from(c - b'a') + 1)
                - 1;
            let part = if digits.is_empty() {
                0
            } else {
                digits.parse().ok()?
            };
            return Some((index, part));
        }
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        let (ctrl, rest) = rest.split_once('n')?;
        let index: usize = ctrl.parse().ok()?;
        let part = match rest.split_once('p') {
            Some((_, p)) => p.parse().ok()?,
            None => 0,
        };
        return Some((index, part));
    }
    None
}

/// The volume an fstab spec names: by filesystem UUID/label, partition UUID/label, LVM name or
/// device name. The root's own image is searched first (the same disk may be granted twice,
/// in two formats, with the same UUIDs).
fn resolve<'a>(
    spec: &str,
    image_index: usize,
    images: &'a [Opened],
) -> Option<(usize, &'a Volume)> {
    let eq = |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
    let strip = |p: &str| {
        spec.strip_prefix(p)
            .map(|s| s.trim_matches('"').to_string())
    };
    let test: Box<dyn Fn(&Volume) -> bool> =
        if let Some(u) = strip("UUID=").or_else(|| strip("/dev/disk/by-uuid/")) {
            Box::new(move |v| eq(&v.fs_uuid, &u))
        } else if let Some(l) = strip("LABEL=").or_else(|| strip("/dev/disk/by-label/")) {
            Box::new(move |v| v.fs_label.as_deref() == Some(l.as_str()))
        } else if let Some(u) = strip("PARTUUID=").or_else(|| strip("/dev/disk/by-partuuid/")) {
            Box::new(move |v| eq(&v.partition_uuid, &u))
        } else if let Some(l) = strip("PARTLABEL=").or_else(|| strip("/dev/disk/by-partlabel/")) {
            Box::new(move |v| v.partition_label.as_deref() == Some(l.as_str()))
        } else if let Some((vg, lv)) = spec.strip_prefix("/dev/mapper/").and_then(split_mapper) {
            let id = format!("lvm/{vg}/{lv}");
            Box::new(move |v| v.id == id)
        } else if let Some((index, part)) = device_index(spec) {
            let img = images.get(index)?;
            let id = if part == 0 {
                "disk".to_string()
            } else {
                format!("p{part}")
            };
            return img.volumes.iter().find(|v| v.id == id).map(|v| (index, v));
        } else if let Some(rest) = spec.strip_prefix("/dev/") {
            // /dev/VG/LV
            let id = format!("lvm/{rest}");
            Box::new(move |v| v.id == id)
        } else {
            return None;
        };
    let order = std::iter::once(image_index).chain((0..images.len()).filter(|i| *i != image_index));
    for i in order {
        if let Some(v) = images.get(i)?.volumes.iter().find(|v| test(v)) {
            return Some((i, v));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subvolume(id: u64, path: &str, is_default: bool) -> BtrfsSubvolume {
        BtrfsSubvolume {
            id,
            path: path.into(),
            parent_id: BTRFS_TOP_LEVEL,
            is_default,
            read_only: false,
        }
    }

    fn located(
        list: Option<&[BtrfsSubvolume]>,
        sel: Subvol<'_>,
    ) -> Option<(Option<String>, Option<u64>)> {
        locate_subvolume("img", "p1", list, sel).map(|l| (l.subvolume, l.subvolume_id))
    }

    #[test]
    fn subvolid_is_never_the_default_in_disguise() {
        let list = [subvolume(256, "@", true), subvolume(257, "@home", false)];
        assert_eq!(
            located(Some(&list), Subvol::Id(257)),
            Some((Some("@home".into()), Some(257)))
        );
        assert_eq!(located(Some(&list), Subvol::Id(300)), None);
        assert_eq!(
            located(Some(&list), Subvol::Id(BTRFS_TOP_LEVEL)),
            Some((Some("/".into()), Some(5)))
        );
        assert_eq!(
            located(Some(&list), Subvol::Default),
            Some((Some("@".into()), Some(256)))
        );
        // Without a listing an id cannot be spelled: no location rather than the default.
        assert_eq!(located(None, Subvol::Id(257)), None);
        assert_eq!(
            located(None, Subvol::Id(BTRFS_TOP_LEVEL)),
            Some((None, None))
        );
        assert_eq!(
            located(None, Subvol::Path("/@home")),
            Some((Some("@home".into()), None))
        );
    }

    #[test]
    fn device_names() {
        assert_eq!(device_index("/dev/sda2"), Some((0, 2)));
        assert_eq!(device_index("/dev/vdb"), Some((1, 0)));
        assert_eq!(device_index("/dev/xvdc1"), Some((2, 1)));
        assert_eq!(device_index("/dev/nvme0n1p3"), Some((0, 3)));
        assert_eq!(device_index("/dev/mapper/x"), None);
        assert_eq!(
            split_mapper("vg--data-lv--root"),
            Some(("vg-data".into(), "lv-root".into()))
        );
        assert_eq!(
            split_mapper("rhel-root"),
            Some(("rhel".into(), "root".into()))
        );
    }
}
