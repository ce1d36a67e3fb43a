//! Unix-like roots: recognising one, and everything read from its files once the guest's
//! filesystems are mounted by its fstab.

use crate::etc::{self, Interface};
use crate::guest::Guest;
use crate::pkg::{self, Listing};
use crate::release;
use crate::report::{
    CloudInit, Kernel, Network, OsReport, PackageDatabase, Services, SystemdUnit, SysvService,
};
use guestkit_handler_sdk::disk::FileKind;
use std::collections::BTreeMap;

/// Most bytes read from a text package database (dpkg status, apk installed).
const MAX_TEXT_DB: u64 = 128 << 20;
/// Most pacman packages read.
const MAX_PACMAN: usize = 50_000;

/// What kind of root a filesystem is, by libguestfs' rules; `None` if it is not one.
pub fn root_type(g: &Guest) -> Option<&'static str> {
    // A /boot filesystem holding GRUB's files is never a root.
    if ["/grub/menu.lst", "/grub/grub.conf", "/grub2/grub.cfg"]
        .iter()
        .any(|p| g.is_file(p))
    {
        return None;
    }
    if !g.is_dir("/etc") {
        return None;
    }
    let bin = g.is_dir("/bin");
    let fstab = g.is_file("/etc/fstab");
    if bin && fstab && g.is_file("/etc/freebsd-update.conf") {
        Some("freebsd")
    } else if bin && fstab && g.is_file("/netbsd") && g.is_file("/etc/release") {
        Some("netbsd")
    } else if bin && fstab && g.is_file("/bsd") && g.is_file("/etc/motd") {
        Some("openbsd")
    } else if bin && (fstab || g.is_file("/etc/hosts")) {
        Some("linux")
    } else {
        None
    }
}

/// Distribution, product name and version, by libguestfs' release-file tests.
pub fn release(g: &Guest, os: &mut OsReport) {
    let read = |path: &str| g.read_small(path);
    let r = release::check_tests(&read, &|| g.is_file("/usr/share/cirros/logo"));
    set_release(g, os, r);
}

fn set_release(g: &Guest, os: &mut OsReport, r: release::Release) {
    os.distro = r.distro.unwrap_or("unknown").to_string();
    os.product_name = r.product_name;
    let (major, minor) = r.version.unwrap_or((0, 0));
    os.major_version = major;
    os.minor_version = minor;
    os.package_format = release::package_format(&os.distro).map(String::from);
    let has_dnf = os.distro == "fedora" && g.is_file("/usr/bin/dnf");
    os.package_management =
        release::package_management(&os.distro, os.major_version, has_dnf).map(String::from);
}

/// FreeBSD, NetBSD, OpenBSD: libguestfs reads the version from `/etc/motd` (FreeBSD,
/// OpenBSD) or `/etc/release` (NetBSD) and the hostname from `/etc/rc.conf`.
pub fn bsd_release(g: &Guest, os: &mut OsReport, kind: &'static str) {
    let mut r = release::Release::default();
    let (file, rex) = match kind {
        "netbsd" => ("/etc/release", Some(release::Rex::NetBsd)),
        _ => ("/etc/motd", None),
    };
    if let Some(data) = g.read_small(file) {
        release::parse_generic(&data, kind, rex, &mut r);
    }
    r.distro = Some(kind);
    set_release(g, os, r);
}

/// `hostname=` in `/etc/rc.conf` (the BSDs).
pub fn bsd_hostname(g: &Guest) -> Option<String> {
    let data = g.read_small("/etc/rc.conf")?;
    let text = String::from_utf8_lossy(&data);
    text.lines().find_map(|l| {
        let v = l.strip_prefix("hostname=")?;
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// Architecture of the first of libguestfs' probe binaries that exists.
pub fn arch(g: &Guest) -> Option<String> {
    for path in ["/bin/bash", "/bin/ls", "/bin/echo", "/bin/rm", "/bin/sh"] {
        if let Some(head) = g.head(path, 64)
            && let Some(arch) = etc::binary_arch(&head)
        {
            return Some(arch.into());
        }
    }
    None
}

fn first_line(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    Some(line.to_string())
}

/// libguestfs' hostname sources: /etc/HOSTNAME, /etc/hostname, /etc/sysconfig/network.
pub fn hostname(g: &Guest) -> Option<String> {
    for path in ["/etc/HOSTNAME", "/etc/hostname"] {
        if let Some(h) = g.read_small(path).as_deref().and_then(first_line) {
            return Some(h);
        }
    }
    let kv = release::parse_kv(&g.read_small("/etc/sysconfig/network")?);
    kv.into_iter()
        .rev()
        .find(|(k, _)| k == "HOSTNAME")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `/etc/machine-id`, when set (an empty or `uninitialized` id is none).
pub fn machine_id(g: &Guest) -> Option<String> {
    let id = first_line(&g.read_small("/etc/machine-id")?)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Installed packages, from the database the package format names.
pub fn applications(g: &Guest, os: &mut OsReport) -> Vec<pkg::Application> {
    let mut listing = Listing::default();
    let mut db = None;
    match os.package_format.as_deref() {
        Some("deb") => {
            let path = "/var/lib/dpkg/status";
            match g.read(path, MAX_TEXT_DB) {
                Ok(Some(data)) => {
                    listing = pkg::dpkg::parse_status(&data);
                    db = Some(("dpkg", path.to_string()));
                }
                Ok(None) => listing.warnings.push(format!("{path} not found")),
                Err(e) => listing.warnings.push(e),
            }
        }
        Some("rpm") => {
            let sqlite = [
                "/var/lib/rpm/rpmdb.sqlite",
                "/usr/lib/sysimage/rpm/rpmdb.sqlite",
            ];
            let bdb = ["/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages"];
            if let Some(path) = sqlite.iter().find(|p| g.is_file(p)) {
                if let Some(reader) = g.reader(path) {
                    listing = pkg::rpm::read_sqlite(&reader);
                }
                if g.file_size(&format!("{path}-wal")).is_some_and(|n| n > 0) {
                    listing.warnings.push(format!(
                        "{path}-wal is not empty: changes not yet checkpointed are not listed"
                    ));
                }
                db = Some(("rpm-sqlite", path.to_string()));
            } else if let Some(path) = bdb.iter().find(|p| g.is_file(p)) {
                if let Some(reader) = g.reader(path) {
                    listing = pkg::rpm::read_bdb(&reader);
                }
                db = Some(("rpm-bdb", path.to_string()));
            } else {
                listing
                    .warnings
                    .push("no rpm database found (rpmdb.sqlite or Packages)".into());
            }
        }
        Some("apk") => {
            let path = ["/lib/apk/db/installed", "/usr/lib/apk/db/installed"]
                .into_iter()
                .find(|p| g.is_file(p));
            match path.map(|p| (p, g.read(p, MAX_TEXT_DB))) {
                Some((p, Ok(Some(data)))) => {
                    listing = pkg::apk::parse_installed(&data);
                    db = Some(("apk", p.to_string()));
                }
                Some((_, Err(e))) => listing.warnings.push(e),
                _ => listing
                    .warnings
                    .push("/lib/apk/db/installed not found".into()),
            }
        }
        Some("pacman") => {
            let dir = "/var/lib/pacman/local";
            if g.is_dir(dir) {
                for entry in g
                    .list(dir)
                    .into_iter()
                    .filter(|e| e.kind == FileKind::Directory)
                    .take(MAX_PACMAN)
                {
                    let path = format!("{dir}/{}/desc", entry.name);
                    match g.read(&path, 1 << 20) {
                        Ok(Some(data)) => match pkg::pacman::parse_desc(&data) {
                            Some(app) => listing.applications.push(app),
                            None => listing.warnings.push(format!(
                                "{path}: no complete entry (name, version-release, arch)"
                            )),
                        },
                        Ok(None) => listing.warnings.push(format!("{path} not found")),
                        Err(e) => listing.warnings.push(e),
                    }
                }
                db = Some(("pacman", dir.to_string()));
            } else {
                listing.warnings.push(format!("{dir} not found"));
            }
        }
        other => {
            if let Some(f) = other {
                listing
                    .warnings
                    .push(format!("listing {f} packages is not supported"));
            }
        }
    }
    os.package_database = db.map(|(format, path)| PackageDatabase { format, path });
    listing.warnings.truncate(100);
    os.warnings.extend(listing.warnings);
    let mut apps = listing.applications;
    apps.sort_by(|a, b| {
        (&a.name, a.epoch, &a.version, &a.release, &a.arch)
            .cmp(&(&b.name, b.epoch, &b.version, &b.release, &b.arch))
    });
    apps
}

/// Units enabled through `.wants`/`.requires` links under /etc/systemd/system, and SysV
/// services started (`S` links) in /etc/rc?.d.
pub fn services(g: &Guest) -> Services {
    let mut units: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let base = "/etc/systemd/system";
    for dir in g.list(base) {
        let Some(target) = dir
            .name
            .strip_suffix(".wants")
            .or_else(|| dir.name.strip_suffix(".requires"))
        else {
            continue;
        };
        for unit in g.list(&format!("{base}/{}", dir.name)) {
            units.entry(unit.name).or_default().push(target.to_string());
        }
    }
    let mut sysv: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for level in ["0", "1", "2", "3", "4", "5", "6", "S"] {
        for dir in [
            format!("/etc/rc{level}.d"),
            format!("/etc/rc.d/rc{level}.d"),
        ] {
            for e in g.list(&dir) {
                let name = e.name.as_str();
                if name.len() > 3
                    && name.starts_with('S')
                    && name.as_bytes()[1..3].iter().all(u8::is_ascii_digit)
                {
                    let runlevels = sysv.entry(name[3..].to_string()).or_default();
                    if !runlevels.iter().any(|l| l == level) {
                        runlevels.push(level.to_string());
                    }
                }
            }
        }
    }
    Services {
        systemd: units
            .into_iter()
            .map(|(name, mut wanted_by)| {
                wanted_by.sort();
                wanted_by.dedup();
                SystemdUnit { name, wanted_by }
            })
            .collect(),
        sysv: sysv
            .into_iter()
            .map(|(name, runlevels)| SysvService { name, runlevels })
            .collect(),
    }
}

/// Interfaces from ifupdown, ifcfg, NetworkManager keyfiles and systemd-networkd; nameservers
/// from resolv.conf.
pub fn network(g: &Guest) -> Network {
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut ifupdown = vec!["/etc/network/interfaces".to_string()];
    for e in g.list("/etc/network/interfaces.d") {
        ifupdown.push(format!("/etc/network/interfaces.d/{}", e.name));
    }
    for path in ifupdown {
        if let Some(data) = g.read_small(&path) {
            interfaces.extend(etc::parse_ifupdown(&data, &path));
        }
    }
    for dir in ["/etc/sysconfig/network-scripts", "/etc/sysconfig/network"] {
        for e in g.list(dir) {
            if e.name.starts_with("ifcfg-") {
                let path = format!("{dir}/{}", e.name);
                if let Some(data) = g.read_small(&path) {
                    interfaces.push(etc::parse_ifcfg(&data, &path, &e.name));
                }
            }
        }
    }
    let nm = "/etc/NetworkManager/system-connections";
    for e in g.list(nm) {
        let path = format!("{nm}/{}", e.name);
        if let Some(data) = g.read_small(&path) {
            interfaces.push(etc::parse_nmconnection(&data, &path));
        }
    }
    let nd = "/etc/systemd/network";
    for e in g
        .list(nd)
        .into_iter()
        .filter(|e| e.name.ends_with(".network"))
    {
        let path = format!("{nd}/{}", e.name);
        if let Some(data) = g.read_small(&path) {
            interfaces.push(etc::parse_networkd(&data, &path));
        }
    }
    let nameservers = g
        .read_small("/etc/resolv.conf")
        .map(|d| etc::parse_resolv_conf(&d))
        .unwrap_or_default();
    Network {
        interfaces,
        nameservers,
    }
}

/// Kernels: /boot/vmlinuz-VERSION images and /lib/modules/VERSION trees.
pub fn kernels(g: &Guest) -> Vec<Kernel> {
    let mut found: BTreeMap<String, Kernel> = BTreeMap::new();
    for e in g.list("/boot") {
        let Some(version) = e
            .name
            .strip_prefix("vmlinuz-")
            .or_else(|| e.name.strip_prefix("vmlinux-"))
        else {
            continue;
        };
        if e.kind == FileKind::Directory || version.is_empty() {
            continue;
        }
        found
            .entry(version.to_string())
            .or_insert_with(|| Kernel {
                version: version.to_string(),
                path: None,
                modules_path: None,
            })
            .path = Some(format!("/boot/{}", e.name));
    }
    for base in ["/lib/modules", "/usr/lib/modules"] {
        for e in g
            .list(base)
            .into_iter()
            .filter(|e| e.kind == FileKind::Directory)
        {
            let k = found.entry(e.name.clone()).or_insert_with(|| Kernel {
                version: e.name.clone(),
                path: None,
                modules_path: None,
            });
            if k.modules_path.is_none() {
                k.modules_path = Some(format!("{base}/{}", e.name));
            }
            // A vmlinuz inside the modules tree (Fedora's layout) counts as the image.
            if k.path.is_none() && g.is_file(&format!("{base}/{}/vmlinuz", e.name)) {
                k.path = Some(format!("{base}/{}/vmlinuz", e.name));
            }
        }
    }
    // Arch names the image on /boot after the package (`vmlinuz-linux`); the modules tree
    // says which package it belongs to.
    let versions: Vec<String> = found.keys().cloned().collect();
    for version in versions {
        let Some(dir) = found.get(&version).and_then(|k| k.modules_path.clone()) else {
            continue;
        };
        let Some(base) = g
            .read_small(&format!("{dir}/pkgbase"))
            .as_deref()
            .and_then(first_line)
        else {
            continue;
        };
        let named = found
            .get(&base)
            .filter(|k| k.modules_path.is_none())
            .and_then(|k| k.path.clone());
        if let Some(path) = named {
            found.remove(&base);
            if let Some(k) = found.get_mut(&version) {
                k.path = Some(path);
            }
        }
    }
    found.into_values().collect()
}

/// Whether cloud-init is installed and enabled.
pub fn cloud_init(g: &Guest, apps: Option<&[pkg::Application]>) -> CloudInit {
    let installed = g.is_file("/etc/cloud/cloud.cfg")
        || g.is_file("/usr/bin/cloud-init")
        || apps.is_some_and(|a| a.iter().any(|a| a.name == "cloud-init"));
    CloudInit {
        installed,
        disabled: g.kind("/etc/cloud/cloud-init.disabled").is_some(),
        version: apps.and_then(|a| {
            a.iter()
                .find(|a| a.name == "cloud-init")
                .map(|a| a.version.clone())
        }),
    }
}
