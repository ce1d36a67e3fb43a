//! Windows inspection facts from the SOFTWARE and SYSTEM hives, following the rules of libguestfs'
//! `daemon/inspect_fs_windows.ml` and `lib/inspect-apps.c` (re-implemented, not translated).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::hive::{Error, Hive, Key, Value};

/// Most applications listed (native and WOW64 together).
pub const MAX_APPLICATIONS: usize = 10_000;
/// Most warnings kept; further ones are counted in a last warning.
pub const MAX_WARNINGS: usize = 100;

/// What the registry says about a Windows installation. Every field is optional: a damaged or
/// unusual hive gives the facts that could be read plus `warnings` for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WindowsFacts {
    /// `ProductName`, e.g. "Windows 10 Pro".
    pub product_name: Option<String>,
    /// `InstallationType`: "Client", "Server", "Server Core", ...
    pub product_variant: Option<String>,
    /// `EditionID`, e.g. "Professional", "ServerStandard".
    pub edition: Option<String>,
    /// `CurrentMajorVersionNumber`, else the major part of `CurrentVersion`.
    pub major_version: Option<u32>,
    /// `CurrentMinorVersionNumber`, else the minor part of `CurrentVersion`.
    pub minor_version: Option<u32>,
    /// `CurrentBuildNumber`, else a numeric `CurrentBuild`.
    pub build: Option<String>,
    /// TCP/IP `Hostname` of the current control set, else its NetBIOS `ComputerName`.
    pub hostname: Option<String>,
    /// From `PROCESSOR_ARCHITECTURE` in the system environment, in libguestfs' names
    /// ("x86_64", "i386", "aarch64", ...).
    pub arch: Option<String>,
    /// `SystemRoot`, e.g. `C:\Windows`.
    pub system_root: Option<String>,
    /// The control set in use, e.g. "ControlSet001" (from `Select\Current`).
    pub current_control_set: Option<String>,
    /// Drive letter ("C") to the disk location `MountedDevices` records for it.
    pub drive_mappings: BTreeMap<String, DriveMapping>,
    /// Entries of the `Uninstall` keys (native, then WOW6432Node) that have a `DisplayName`.
    pub applications: Vec<Application>,
    /// What could not be read, one sentence each.
    pub warnings: Vec<String>,
}

/// Where a drive letter lives, as `HKLM\SYSTEM\MountedDevices` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriveMapping {
    /// A partition on an MBR disk: the disk's 32-bit signature (at byte 0x1B8 of the MBR) as 8
    /// lowercase hex digits, as blkid prints PTUUID, and the partition's start in bytes.
    Mbr { disk_signature: String, offset: u64 },
    /// A GPT partition, by its unique partition GUID (lowercase, hyphenated).
    Gpt { partition_guid: String },
}

/// One installed application (an `Uninstall` subkey).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Application {
    /// The subkey's name: language-independent, often a product GUID.
    pub name: String,
    /// `DisplayName`.
    pub display_name: String,
    /// `DisplayVersion`.
    pub version: Option<String>,
    /// `Publisher`.
    pub publisher: Option<String>,
    /// `InstallLocation`, as stored (environment variables are not expanded).
    pub install_location: Option<String>,
}

/// Reads the Windows facts from the SOFTWARE and SYSTEM hive files (their whole contents). Never
/// fails and never panics: whatever cannot be read becomes a warning.
pub fn inspect_windows(software: &[u8], system: &[u8]) -> WindowsFacts {
    let mut facts = WindowsFacts::default();
    let mut w = Warnings::default();
    if let Some((hive, root)) = open_root(software, "SOFTWARE", &mut w) {
        read_software(&hive, &root, &mut facts, &mut w);
    }
    if let Some((hive, root)) = open_root(system, "SYSTEM", &mut w) {
        read_system(&hive, &root, &mut facts, &mut w);
    }
    facts.warnings = w.finish();
    facts
}

#[derive(Default)]
struct Warnings {
    list: Vec<String>,
    dropped: usize,
}

impl Warnings {
    fn push(&mut self, msg: String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(msg);
        } else {
            self.dropped += 1;
        }
    }
    fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.list
                .push(format!("{} further warnings not shown", self.dropped));
        }
        self.list
    }
}

fn open_root<'a>(data: &'a [u8], hive_name: &str, w: &mut Warnings) -> Option<(Hive<'a>, Key)> {
    let hive = match Hive::new(data) {
        Ok(h) => h,
        Err(e) => {
            w.push(format!("{hive_name} hive unreadable: {e}"));
            return None;
        }
    };
    for note in hive.notes() {
        w.push(format!("{hive_name} hive: {note}"));
    }
    match hive.root() {
        Ok(root) => Some((hive, root)),
        Err(e) => {
            w.push(format!("{hive_name} hive: root key unreadable: {e}"));
            None
        }
    }
}

/// The key at `path`; a read error becomes a warning, a missing key is `None` (and a warning
/// when `required`).
fn key(
    hive: &Hive,
    root: &Key,
    ctx: &str,
    path: &str,
    required: bool,
    w: &mut Warnings,
) -> Option<Key> {
    match hive.open(root, path) {
        Ok(Some(k)) => Some(k),
        Ok(None) => {
            if required {
                w.push(format!("{ctx}\\{path} not found"));
            }
            None
        }
        Err(e) => {
            w.push(format!("{ctx}\\{path}: {e}"));
            None
        }
    }
}

/// A string value; absent is `None`, unreadable or not a string is `None` plus a warning.
fn string(hive: &Hive, key: &Key, ctx: &str, name: &str, w: &mut Warnings) -> Option<String> {
    typed(hive, key, ctx, name, w, |v| hive.value_string(v))
}

/// A DWORD value, with the same rules as [`string`].
fn dword(hive: &Hive, key: &Key, ctx: &str, name: &str, w: &mut Warnings) -> Option<u32> {
    typed(hive, key, ctx, name, w, |v| hive.value_dword(v))
}

/// Value `name` of `key` read by `read`; absent is `None`, an error is `None` plus a warning.
fn typed<T>(
    hive: &Hive,
    key: &Key,
    ctx: &str,
    name: &str,
    w: &mut Warnings,
    read: impl FnOnce(&Value) -> Result<T, Error>,
) -> Option<T> {
    let value = match hive.value(key, name) {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(e) => {
            w.push(format!("{ctx}: reading {name}: {e}"));
            return None;
        }
    };
    match read(&value) {
        Ok(v) => Some(v),
        Err(e) => {
            w.push(format!("{ctx}: {e}"));
            None
        }
    }
}

const CURRENT_VERSION: &str = r"Microsoft\Windows NT\CurrentVersion";
const UNINSTALL_PATHS: [&str; 2] = [
    r"Microsoft\Windows\CurrentVersion\Uninstall",
    r"WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
];

fn read_software(hive: &Hive, root: &Key, facts: &mut WindowsFacts, w: &mut Warnings) {
    if let Some(cv) = key(hive, root, "SOFTWARE", CURRENT_VERSION, true, w) {
        let ctx = format!("SOFTWARE\\{CURRENT_VERSION}");
        let ctx = ctx.as_str();
        facts.product_name = string(hive, &cv, ctx, "ProductName", w);
        facts.product_variant = string(hive, &cv, ctx, "InstallationType", w);
        facts.edition = string(hive, &cv, ctx, "EditionID", w);
        facts.system_root = string(hive, &cv, ctx, "SystemRoot", w);
        // Windows 10 and later keep "6.3" in CurrentVersion for old programs' sake; the real
        // numbers are in the two DWORDs, which older versions do not have.
        let major = dword(hive, &cv, ctx, "CurrentMajorVersionNumber", w);
        let minor = dword(hive, &cv, ctx, "CurrentMinorVersionNumber", w);
        match (major, minor) {
            (Some(major), Some(minor)) => {
                facts.major_version = Some(major);
                facts.minor_version = Some(minor);
            }
            _ => {
                if let Some(v) = string(hive, &cv, ctx, "CurrentVersion", w) {
                    match parse_major_minor(&v) {
                        Some((major, minor)) => {
                            facts.major_version = Some(major);
                            facts.minor_version = Some(minor);
                        }
                        None => w.push(format!("{ctx}: cannot parse CurrentVersion {v:?}")),
                    }
                }
            }
        }
        // On Windows XP CurrentBuild held something else ("1.511.1 () (Obsolete data - do not
        // use)"), so it is only a fallback, and only when it is a plain number.
        facts.build = string(hive, &cv, ctx, "CurrentBuildNumber", w).or_else(|| {
            string(hive, &cv, ctx, "CurrentBuild", w)
                .filter(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
        });
    }
    for path in UNINSTALL_PATHS {
        // A missing Uninstall key is normal (no WOW6432Node on 32-bit Windows): no warning.
        if let Some(uninstall) = key(hive, root, "SOFTWARE", path, false, w) {
            read_applications(hive, &uninstall, path, &mut facts.applications, w);
        }
    }
}

fn read_applications(
    hive: &Hive,
    uninstall: &Key,
    path: &str,
    apps: &mut Vec<Application>,
    w: &mut Warnings,
) {
    let (children, errors) = match hive.subkeys_partial(uninstall) {
        Ok(found) => found,
        Err(e) => {
            w.push(format!("SOFTWARE\\{path}: listing subkeys: {e}"));
            return;
        }
    };
    for e in errors {
        w.push(format!(
            "SOFTWARE\\{path}: skipped an unreadable subkey: {e}"
        ));
    }
    for child in children {
        if apps.len() >= MAX_APPLICATIONS {
            w.push(format!(
                "more than {MAX_APPLICATIONS} applications; the rest are not listed"
            ));
            return;
        }
        let ctx = format!("SOFTWARE\\{path}\\{}", child.name());
        let ctx = ctx.as_str();
        // Entries without a DisplayName (updates, components) are not shown as applications.
        let Some(display_name) = string(hive, &child, ctx, "DisplayName", w) else {
            continue;
        };
        apps.push(Application {
            name: child.name().to_string(),
            display_name,
            version: string(hive, &child, ctx, "DisplayVersion", w),
            publisher: string(hive, &child, ctx, "Publisher", w),
            install_location: string(hive, &child, ctx, "InstallLocation", w),
        });
    }
}

fn read_system(hive: &Hive, root: &Key, facts: &mut WindowsFacts, w: &mut Warnings) {
    read_drive_mappings(hive, root, &mut facts.drive_mappings, w);

    let current = key(hive, root, "SYSTEM", "Select", true, w)
        .and_then(|select| dword(hive, &select, r"SYSTEM\Select", "Current", w));
    let name = match current {
        Some(n) => format!("ControlSet{n:03}"),
        None => {
            // Not libguestfs' rule (it gives up): ControlSet001 is the set nearly every
            // installation runs from, and it is only used if it exists.
            w.push(r"SYSTEM\Select\Current unreadable; trying ControlSet001".to_string());
            "ControlSet001".to_string()
        }
    };
    let Some(ccs) = key(hive, root, "SYSTEM", &name, true, w) else {
        return;
    };
    facts.current_control_set = Some(name.clone());

    let set = format!(r"SYSTEM\{name}");
    let set = set.as_str();
    let tcpip = format!(r"SYSTEM\{name}\Services\Tcpip\Parameters");
    let netbios = format!(r"SYSTEM\{name}\Control\ComputerName\ComputerName");
    facts.hostname = key(hive, &ccs, set, r"Services\Tcpip\Parameters", false, w)
        .and_then(|k| string(hive, &k, &tcpip, "Hostname", w))
        .filter(|h| !h.is_empty())
        .or_else(|| {
            key(
                hive,
                &ccs,
                set,
                r"Control\ComputerName\ComputerName",
                false,
                w,
            )
            .and_then(|k| string(hive, &k, &netbios, "ComputerName", w))
            .filter(|h| !h.is_empty())
        });

    let env = format!(r"SYSTEM\{name}\Control\Session Manager\Environment");
    facts.arch = key(
        hive,
        &ccs,
        set,
        r"Control\Session Manager\Environment",
        false,
        w,
    )
    .and_then(|k| string(hive, &k, &env, "PROCESSOR_ARCHITECTURE", w))
    .map(|a| arch_name(&a));
}

/// `\DosDevices\X:` values of `MountedDevices`: a 12-byte blob is an MBR disk signature plus
/// the partition's byte offset; a blob starting "DMIO:ID:" carries a GPT partition GUID. Other
/// blobs (CD-ROMs, removable devices: UTF-16 device paths) are not disk partitions and skipped.
fn read_drive_mappings(
    hive: &Hive,
    root: &Key,
    out: &mut BTreeMap<String, DriveMapping>,
    w: &mut Warnings,
) {
    let Some(mounted) = key(hive, root, "SYSTEM", "MountedDevices", false, w) else {
        return;
    };
    let values = match hive.values(&mounted) {
        Ok(v) => v,
        Err(e) => {
            w.push(format!(r"SYSTEM\MountedDevices: {e}"));
            return;
        }
    };
    for value in values {
        let Some(letter) = drive_letter(value.name()) else {
            continue;
        };
        if value.value_type() != crate::ValueType::Binary {
            continue;
        }
        let blob = match hive.value_bytes(&value) {
            Ok(b) => b,
            Err(e) => {
                w.push(format!(r"SYSTEM\MountedDevices\{}: {e}", value.name()));
                continue;
            }
        };
        if let Some(mapping) = parse_mounted_device(&blob) {
            out.insert(letter, mapping);
        }
    }
}

/// "C" for a value named `\DosDevices\C:` (any case).
fn drive_letter(name: &str) -> Option<String> {
    let rest = name.get(..12)?;
    if !rest.eq_ignore_ascii_case(r"\DosDevices\") {
        return None;
    }
    let tail = name.get(12..)?.as_bytes();
    match tail {
        [l, b':', ..] if l.is_ascii_alphabetic() => {
            Some(char::from(l.to_ascii_uppercase()).to_string())
        }
        _ => None,
    }
}

/// Decodes a `MountedDevices` blob that names a disk partition.
pub fn parse_mounted_device(blob: &[u8]) -> Option<DriveMapping> {
    if blob.len() >= 24 && blob.starts_with(b"DMIO:ID:") {
        let g = &blob[8..24];
        let data1 = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
        let data2 = u16::from_le_bytes([g[4], g[5]]);
        let data3 = u16::from_le_bytes([g[6], g[7]]);
        let tail: String = g[8..].iter().map(|b| format!("{b:02x}")).collect();
        return Some(DriveMapping::Gpt {
            partition_guid: format!(
                "{data1:08x}-{data2:04x}-{data3:04x}-{}-{}",
                &tail[..4],
                &tail[4..]
            ),
        });
    }
    if blob.len() == 12 {
        let signature = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&blob[4..12]);
        return Some(DriveMapping::Mbr {
            disk_signature: format!("{signature:08x}"),
            offset: u64::from_le_bytes(offset),
        });
    }
    None
}

/// "6.1" -> (6, 1); "10" -> (10, 0); anything after the minor number is ignored.
fn parse_major_minor(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = match parts.next() {
        Some(m) => m.parse().ok()?,
        None => 0,
    };
    Some((major, minor))
}

/// Windows' PROCESSOR_ARCHITECTURE names to libguestfs' architecture names.
fn arch_name(windows: &str) -> String {
    match windows.trim().to_ascii_uppercase().as_str() {
        "AMD64" | "X64" => "x86_64".into(),
        "X86" => "i386".into(),
        "ARM64" => "aarch64".into(),
        "ARM" => "arm".into(),
        "IA64" => "ia64".into(),
        _ => windows.trim().to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounted_device_blobs() {
        assert_eq!(
            parse_mounted_device(&[0x31, 0x32, 0x33, 0x34, 0, 0, 0, 0x10, 0, 0, 0, 0]),
            Some(DriveMapping::Mbr {
                disk_signature: "34333231".into(),
                offset: 0x1000_0000
            })
        );
        let mut gpt = b"DMIO:ID:".to_vec();
        gpt.extend_from_slice(&[
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        assert_eq!(
            parse_mounted_device(&gpt),
            Some(DriveMapping::Gpt {
                partition_guid: "00112233-4455-6677-8899-aabbccddeeff".into()
            })
        );
        assert_eq!(parse_mounted_device(b"DMIO:ID:short"), None);
        assert_eq!(parse_mounted_device(&[0; 11]), None);
        assert_eq!(parse_mounted_device(&[0; 13]), None);
        assert_eq!(parse_mounted_device(&gpt[..23]), None);
        // A CD-ROM's blob: a UTF-16LE device path.
        let cdrom: Vec<u8> = r"\??\IDE#CdRomQEMU"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(parse_mounted_device(&cdrom), None);
        assert_eq!(parse_mounted_device(&[]), None);
    }

    #[test]
    fn drive_letters() {
        assert_eq!(drive_letter(r"\DosDevices\C:"), Some("C".into()));
        assert_eq!(drive_letter(r"\dosdevices\d:"), Some("D".into()));
        assert_eq!(drive_letter(r"\??\Volume{1234}"), None);
        assert_eq!(drive_letter(r"\DosDevices\1:"), None);
        assert_eq!(drive_letter(r"\DosDevices\"), None);
        assert_eq!(drive_letter("\\DosDevices\\\u{e9}:"), None);
        assert_eq!(
            drive_letter("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"),
            None
        );
    }

    #[test]
    fn versions_and_arches() {
        assert_eq!(parse_major_minor("6.1"), Some((6, 1)));
        assert_eq!(parse_major_minor("10"), Some((10, 0)));
        assert_eq!(parse_major_minor("5.2.3790"), Some((5, 2)));
        assert_eq!(parse_major_minor("x.1"), None);
        assert_eq!(parse_major_minor(""), None);
        assert_eq!(arch_name("AMD64"), "x86_64");
        assert_eq!(arch_name("x86"), "i386");
        assert_eq!(arch_name("ARM64"), "aarch64");
        assert_eq!(arch_name("MIPS"), "mips");
    }
}
