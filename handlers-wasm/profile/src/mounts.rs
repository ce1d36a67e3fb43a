//! The filesystems a root's /etc/fstab mounts from the same image (a separate /boot, /usr,
//! /var, ...), so the checks see the paths the booted system would see: a kernel in a /boot
//! partition is at /boot/vmlinuz-*, as on the running system.

use crate::tree::{Entry, FsError, Meta, Text, Tree};

/// How an fstab line names the filesystem it mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Uuid(String),
    Label(String),
    PartUuid(String),
    PartLabel(String),
}

/// One fstab entry worth following.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FstabEntry {
    pub spec: Spec,
    /// Absolute mount point, never `/`.
    pub target: String,
    /// Btrfs `subvol=` option, without a leading `/`.
    pub subvol: Option<String>,
    /// Btrfs `subvolid=` option, when there is no `subvol=`.
    pub subvolid: Option<u64>,
}

/// Most mounts followed per root.
pub const MAX_MOUNTS: usize = 16;

/// fstab's octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3
                && let Ok(v) = u8::from_str_radix(&digits, 8)
            {
                out.push(char::from(v));
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn spec(field: &str) -> Option<Spec> {
    let field = unescape(field);
    let (kind, value) = if let Some((k, v)) = field.split_once('=') {
        (k.to_ascii_uppercase(), v.trim_matches('"').to_string())
    } else {
        let rest = field.strip_prefix("/dev/disk/")?;
        let (dir, value) = rest.split_once('/')?;
        let kind = match dir {
            "by-uuid" => "UUID",
            "by-label" => "LABEL",
            "by-partuuid" => "PARTUUID",
            "by-partlabel" => "PARTLABEL",
            _ => return None,
        };
        (kind.to_string(), value.to_string())
    };
    match kind.as_str() {
        "UUID" => Some(Spec::Uuid(value)),
        "LABEL" => Some(Spec::Label(value)),
        "PARTUUID" => Some(Spec::PartUuid(value)),
        "PARTLABEL" => Some(Spec::PartLabel(value)),
        _ => None,
    }
}

/// The entries of an fstab that mount a local Linux filesystem somewhere below `/`. Entries
/// naming a device node (`/dev/sda1`) cannot be tied to a volume and are left out.
pub fn parse_fstab(text: &Text) -> Vec<FstabEntry> {
    let mut out = Vec::new();
    for (_, line) in text.numbered() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let target = unescape(f[1]);
        let fs_type = f[2];
        let linux = matches!(fs_type, "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "auto");
        if !linux || !target.starts_with('/') || target == "/" || target.contains("/../") {
            continue;
        }
        let Some(spec) = spec(f[0]) else {
            continue;
        };
        let subvol = f.get(3).and_then(|opts| {
            opts.split(',')
                .find_map(|o| o.strip_prefix("subvol="))
                .map(|s| s.trim_start_matches('/').to_string())
                .filter(|s| !s.is_empty())
        });
        let subvolid = f
            .get(3)
            .filter(|_| subvol.is_none())
            .and_then(|opts| opts.split(',').find_map(|o| o.strip_prefix("subvolid=")))
            .and_then(|id| id.parse().ok());
        out.push(FstabEntry {
            spec,
            target: target.trim_end_matches('/').to_string(),
            subvol,
            subvolid,
        });
        if out.len() == MAX_MOUNTS {
            break;
        }
    }
    out
}

/// True when `volume` is the one `spec` names.
pub fn matches(spec: &Spec, volume: &guestkit_handler_sdk::disk::Volume) -> bool {
    let same = |a: &Option<String>, b: &str, fold: bool| {
        a.as_deref().is_some_and(|a| {
            if fold {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        })
    };
    match spec {
        Spec::Uuid(u) => same(&volume.fs_uuid, u, true),
        Spec::Label(l) => same(&volume.fs_label, l, false),
        Spec::PartUuid(u) => same(&volume.partition_uuid, u, true),
        Spec::PartLabel(l) => same(&volume.partition_label, l, false),
    }
}

/// A root tree with other trees mounted on it.
pub struct Mounted<'a> {
    root: &'a dyn Tree,
    /// (mount point, tree), longest mount point first.
    mounts: Vec<(String, &'a dyn Tree)>,
}

impl<'a> Mounted<'a> {
    /// `root` with `mounts` (mount point, tree) on it.
    pub fn new(root: &'a dyn Tree, mut mounts: Vec<(String, &'a dyn Tree)>) -> Self {
        mounts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Mounted { root, mounts }
    }

    /// The tree holding `path` and the path inside it.
    fn route(&self, path: &str) -> (&'a dyn Tree, String) {
        for (point, tree) in &self.mounts {
            if path == point {
                return (*tree, "/".into());
            }
            if let Some(rest) = path.strip_prefix(point.as_str())
                && rest.starts_with('/')
            {
                return (*tree, rest.to_string());
            }
        }
        (self.root, path.to_string())
    }
}

impl Tree for Mounted<'_> {
    fn stat(&self, path: &str) -> Result<Meta, FsError> {
        let (t, p) = self.route(path);
        t.stat(&p)
    }
    fn lstat(&self, path: &str) -> Result<Meta, FsError> {
        let (t, p) = self.route(path);
        t.lstat(&p)
    }
    fn read_dir(&self, path: &str, limit: u32) -> Result<(Vec<Entry>, bool), FsError> {
        let (t, p) = self.route(path);
        t.read_dir(&p, limit)
    }
    fn read_at(&self, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, FsError> {
        let (t, p) = self.route(path);
        t.read_at(&p, offset, len)
    }
    fn read_link(&self, path: &str) -> Result<String, FsError> {
        let (t, p) = self.route(path);
        t.read_link(&p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;
    use crate::tree::{Scan, text_lines};

    fn text(s: &str) -> Text {
        Text {
            path: "/etc/fstab".into(),
            lines: text_lines(s.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn fstab_entries() {
        let got = parse_fstab(&text(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             UUID=abc / ext4 errors=remount-ro 0 1\n\
             UUID=3F1D /boot ext4 defaults 0 2\n\
             LABEL=my\\040data /srv/my\\040data xfs defaults 0 0\n\
             PARTUUID=9e8d /boot/efi vfat umask=0077 0 1\n\
             /dev/sdb1 none swap sw 0 0\n\
             /dev/disk/by-partlabel/var /var/ auto defaults\n\
             UUID=b /home btrfs subvol=/@home,compress=zstd 0 0\n\
             UUID=b /var/log btrfs compress=zstd,subvolid=257 0 0\n\
             proc /proc proc defaults 0 0\n\
             short line\n",
        ));
        assert_eq!(
            got,
            [
                FstabEntry {
                    spec: Spec::Uuid("3F1D".into()),
                    target: "/boot".into(),
                    subvol: None,
                    subvolid: None
                },
                FstabEntry {
                    spec: Spec::Label("my data".into()),
                    target: "/srv/my data".into(),
                    subvol: None,
                    subvolid: None
                },
                FstabEntry {
                    spec: Spec::PartLabel("var".into()),
                    target: "/var".into(),
                    subvol: None,
                    subvolid: None
                },
                FstabEntry {
                    spec: Spec::Uuid("b".into()),
                    target: "/home".into(),
                    subvol: Some("@home".into()),
                    subvolid: None
                },
                FstabEntry {
                    spec: Spec::Uuid("b".into()),
                    target: "/var/log".into(),
                    subvol: None,
                    subvolid: Some(257)
                },
            ]
        );
    }

    #[test]
    fn mounted_trees_route_by_longest_prefix() {
        let mut root = MemTree::new();
        root.file("/etc/os-release", "ID=x\n");
        root.dir("/boot", 0o755);
        let mut boot = MemTree::new();
        boot.file("/vmlinuz-6.1.0", "k");
        boot.file("/efi/EFI/x", "e");
        let mut efi = MemTree::new();
        efi.file("/EFI/y", "e");
        let m = Mounted::new(
            &root,
            vec![
                ("/boot".into(), &boot as &dyn Tree),
                ("/boot/efi".into(), &efi),
            ],
        );
        let mut scan = Scan::new(&m);
        let names = |e: Option<Vec<Entry>>| -> Vec<String> {
            e.unwrap().into_iter().map(|e| e.name).collect()
        };
        assert_eq!(names(scan.list_dir("/boot")), ["efi", "vmlinuz-6.1.0"]);
        assert_eq!(names(scan.list_dir("/boot/efi/EFI")), ["y"]);
        assert!(scan.exists("/etc/os-release"));
        assert!(!scan.exists("/bootx"));
    }
}
