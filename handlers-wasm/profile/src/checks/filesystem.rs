//! `filesystem`: world-writable files under /etc, SUID/SGID binaries outside a known set, and
//! the mode of /etc/shadow. Walks use `lstat` (symlinks are never followed) under depth caps and
//! the scan's entry budget.

use crate::report::{self, Evidence, Hit};
use crate::tree::{Kind, Meta, Scan, join};

/// How deep the walk of /etc goes.
const ETC_DEPTH: u32 = 12;

/// Directories searched for SUID/SGID files, with how deep each walk goes. A directory that is
/// a symlink (merged /usr: /bin -> usr/bin) is skipped; its target is walked on its own.
pub const SUID_DIRS: &[(&str, u32)] = &[
    ("/bin", 2),
    ("/sbin", 2),
    ("/usr/bin", 2),
    ("/usr/sbin", 2),
    ("/usr/local/bin", 2),
    ("/usr/local/sbin", 2),
    ("/usr/games", 2),
    ("/lib", 6),
    ("/lib64", 6),
    ("/usr/lib", 6),
    ("/usr/lib64", 6),
    ("/usr/libexec", 6),
    ("/usr/local/lib", 6),
];

/// SUID/SGID programs that distributions ship, by name, when they sit directly in a `bin` or
/// `sbin` directory (`/bin`, `/sbin`, `/usr/bin`, `/usr/sbin`).
pub const SUID_ALLOWED_PROGRAMS: &[&str] = &[
    "at",
    "bsd-write",
    "chage",
    "chfn",
    "chsh",
    "crontab",
    "dotlockfile",
    "expiry",
    "fusermount",
    "fusermount3",
    "gpasswd",
    "locate",
    "mlocate",
    "mount",
    "mount.cifs",
    "mount.nfs",
    "newgidmap",
    "newgrp",
    "newuidmap",
    "ntfs-3g",
    "pam_extrausers_chkpwd",
    "pam_timestamp_check",
    "passwd",
    "ping",
    "ping6",
    "pkexec",
    "plocate",
    "postdrop",
    "postqueue",
    "pppd",
    "screen",
    "ssh-agent",
    "staprun",
    "su",
    "sudo",
    "traceroute6.iputils",
    "umount",
    "unix_chkpwd",
    "userhelper",
    "usernetctl",
    "wall",
    "write",
    "Xorg",
];

/// SUID/SGID helpers that distributions ship under lib directories, as paths with `/usr`
/// dropped (`/usr/lib/x` and `/lib/x` are the same entry).
pub const SUID_ALLOWED_HELPERS: &[&str] = &[
    "/lib/dbus-1.0/dbus-daemon-launch-helper",
    "/libexec/dbus-1/dbus-daemon-launch-helper",
    "/lib/eject/dmcrypt-get-device",
    "/lib/openssh/ssh-keysign",
    "/libexec/openssh/ssh-keysign",
    "/lib/policykit-1/polkit-agent-helper-1",
    "/lib/polkit-1/polkit-agent-helper-1",
    "/libexec/polkit-1/polkit-agent-helper-1",
    "/libexec/polkit-agent-helper-1",
    "/lib/snapd/snap-confine",
    "/libexec/snapd/snap-confine",
    "/lib/x86_64-linux-gnu/utempter/utempter",
    "/lib/aarch64-linux-gnu/utempter/utempter",
    "/libexec/utempter/utempter",
    "/lib/xorg/Xorg.wrap",
    "/libexec/Xorg.wrap",
    "/libexec/pt_chown",
    "/lib/qemu/qemu-bridge-helper",
    "/libexec/qemu-bridge-helper",
];

/// True when a SUID/SGID file at `path` is one distributions ship.
pub fn suid_allowed(path: &str) -> bool {
    let short = path.strip_prefix("/usr").unwrap_or(path);
    if let Some((dir, name)) = short.rsplit_once('/')
        && (dir == "/bin" || dir == "/sbin")
    {
        return SUID_ALLOWED_PROGRAMS.contains(&name);
    }
    SUID_ALLOWED_HELPERS.contains(&short)
}

fn describe(meta: &Meta) -> String {
    format!("mode {:04o} uid {} gid {}", meta.mode, meta.uid, meta.gid)
}

/// Walks `dir` up to `depth` levels, calling `visit` with every entry's path and metadata
/// (symlinks included, never followed).
fn walk(scan: &mut Scan, dir: &str, depth: u32, visit: &mut dyn FnMut(&str, &Meta)) {
    let Some(entries) = scan.list_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = join(dir, &entry.name);
        let Some(meta) = scan.lstat(&path) else {
            continue;
        };
        visit(&path, &meta);
        if meta.kind == Kind::Dir {
            if depth > 1 {
                walk(scan, &path, depth - 1, visit);
            } else {
                scan.warn(
                    &path,
                    None,
                    "directory deeper than the walk goes; not searched",
                );
            }
        }
    }
}

/// Walks `dir` looking only at regular files' metadata, to keep host calls down.
fn walk_files(scan: &mut Scan, dir: &str, depth: u32, visit: &mut dyn FnMut(&str, &Meta)) {
    let Some(entries) = scan.list_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = join(dir, &entry.name);
        match entry.kind {
            Kind::File => {
                if let Some(meta) = scan.lstat(&path) {
                    visit(&path, &meta);
                }
            }
            Kind::Dir if depth > 1 => walk_files(scan, &path, depth - 1, visit),
            _ => {}
        }
    }
}

/// Runs the `filesystem` checks.
pub fn check(scan: &mut Scan) -> Vec<Hit> {
    let mut hits = Vec::new();

    walk(scan, "/etc", ETC_DEPTH, &mut |path, meta| {
        let sticky_dir = meta.kind == Kind::Dir && meta.mode & 0o1000 != 0;
        if meta.kind != Kind::Symlink && meta.mode & 0o002 != 0 && !sticky_dir {
            hits.push(Hit::new(
                &report::FS_001,
                vec![Evidence::file(path, describe(meta))],
            ));
        }
    });

    for &(dir, depth) in SUID_DIRS {
        if scan.lstat(dir).is_none_or(|m| m.kind != Kind::Dir) {
            continue;
        }
        walk_files(scan, dir, depth, &mut |path, meta| {
            if meta.mode & 0o6000 != 0 && !suid_allowed(path) {
                hits.push(Hit::new(
                    &report::FS_002,
                    vec![Evidence::file(path, describe(meta))],
                ));
            }
        });
    }

    if let Some(meta) = scan.stat("/etc/shadow")
        && meta.kind == Kind::File
        && meta.mode & 0o004 != 0
    {
        hits.push(Hit::new(
            &report::FS_003,
            vec![Evidence::file("/etc/shadow", describe(&meta))],
        ));
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    #[test]
    fn world_writable_suid_and_shadow() {
        let mut t = MemTree::new();
        t.file_mode("/etc/ok", b"", 0o644);
        t.file_mode("/etc/cron.d/open", b"", 0o666);
        t.dir("/etc/tmpdir", 0o1777);
        t.dir("/etc/opendir", 0o777);
        t.link("/etc/link", "/etc/ok");
        t.file_mode("/etc/shadow", b"", 0o644);
        t.file_mode("/usr/bin/passwd", b"", 0o4755);
        t.file_mode("/usr/bin/evil", b"", 0o4755);
        t.file_mode("/usr/lib/openssh/ssh-keysign", b"", 0o4755);
        t.file_mode("/usr/lib/x/y/sneaky", b"", 0o2755);
        t.link("/bin", "/usr/bin");
        let mut scan = Scan::new(&t);
        let hits = check(&mut scan);
        let got: Vec<(&str, &str, &str)> = hits
            .iter()
            .map(|h| {
                (
                    h.check.id,
                    h.evidence[0].path.as_str(),
                    h.evidence[0].text.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("FS-001", "/etc/cron.d/open", "mode 0666 uid 0 gid 0"),
                ("FS-001", "/etc/opendir", "mode 0777 uid 0 gid 0"),
                ("FS-002", "/usr/bin/evil", "mode 4755 uid 0 gid 0"),
                ("FS-002", "/usr/lib/x/y/sneaky", "mode 2755 uid 0 gid 0"),
                ("FS-003", "/etc/shadow", "mode 0644 uid 0 gid 0"),
            ]
        );
    }

    #[test]
    fn allow_list_normalises_usr() {
        assert!(suid_allowed("/bin/su"));
        assert!(suid_allowed("/usr/sbin/unix_chkpwd"));
        assert!(suid_allowed("/lib/openssh/ssh-keysign"));
        assert!(!suid_allowed("/usr/local/bin/su"));
        assert!(!suid_allowed("/usr/lib/su"));
    }
}
