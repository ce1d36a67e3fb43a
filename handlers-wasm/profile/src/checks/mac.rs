//! `mac`: SELinux and AppArmor as their configuration files leave them: the `SELINUX=` mode in
//! /etc/selinux/config, AppArmor profiles in /etc/apparmor.d, and kernel parameters in
//! /etc/default/grub (and /etc/default/grub.d/*.cfg) that switch either off.

use crate::report::{self, Evidence, Hit};
use crate::tree::{Kind, Scan, Text, join};

const SELINUX_CONFIG: &str = "/etc/selinux/config";
const APPARMOR_DIR: &str = "/etc/apparmor.d";
const GRUB_DEFAULT: &str = "/etc/default/grub";
const GRUB_DIR: &str = "/etc/default/grub.d";
/// Kernel parameters that turn mandatory access control off.
pub const DISABLING_PARAMS: &[&str] = &["apparmor=0", "selinux=0", "enforcing=0"];

/// The first `SELINUX=` line (libselinux stops at the first): (line, text, mode).
fn selinux_mode(text: &Text) -> Option<(u32, &str, String)> {
    text.numbered().find_map(|(n, line)| {
        let value = line.trim_start().strip_prefix("SELINUX=")?;
        let mode = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        Some((n, line, mode.to_ascii_lowercase()))
    })
}

/// Lines of a grub defaults file whose kernel command line disables a MAC.
fn disabling_lines(text: &Text) -> Vec<Evidence> {
    text.numbered()
        .filter(|(_, line)| {
            let l = line.trim_start();
            let Some((name, value)) = l.split_once('=') else {
                return false;
            };
            matches!(name, "GRUB_CMDLINE_LINUX" | "GRUB_CMDLINE_LINUX_DEFAULT")
                && value
                    .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                    .any(|p| DISABLING_PARAMS.contains(&p))
        })
        .map(|(n, line)| Evidence::line(&text.path, n, line))
        .collect()
}

/// Runs the `mac` checks.
pub fn check(scan: &mut Scan) -> Vec<Hit> {
    let mut hits = Vec::new();
    let apparmor_profiles = scan
        .list_dir(APPARMOR_DIR)
        .is_some_and(|entries| entries.iter().any(|e| e.kind == Kind::File));
    let selinux_exists = scan.exists(SELINUX_CONFIG);
    if let Some(text) = scan.read_text(SELINUX_CONFIG)
        && !apparmor_profiles
        && let Some((n, line, mode)) = selinux_mode(&text)
    {
        let check = match mode.as_str() {
            "disabled" => Some(&report::MAC_001),
            "permissive" => Some(&report::MAC_002),
            _ => None,
        };
        if let Some(check) = check {
            hits.push(Hit::new(
                check,
                vec![Evidence::line(SELINUX_CONFIG, n, line)],
            ));
        }
    }
    if !selinux_exists && !apparmor_profiles {
        hits.push(Hit::new(
            &report::MAC_004,
            vec![
                Evidence::file(SELINUX_CONFIG, "absent"),
                Evidence::file(APPARMOR_DIR, "no AppArmor profiles"),
            ],
        ));
    }
    let mut grub_files = vec![GRUB_DEFAULT.to_string()];
    if let Some(entries) = scan.list_dir(GRUB_DIR) {
        grub_files.extend(
            entries
                .iter()
                .filter(|e| e.name.ends_with(".cfg"))
                .map(|e| join(GRUB_DIR, &e.name)),
        );
    }
    let mut disabling = Vec::new();
    for path in &grub_files {
        if let Some(text) = scan.read_text(path) {
            disabling.extend(disabling_lines(&text));
        }
    }
    if !disabling.is_empty() {
        hits.push(Hit::new(&report::MAC_003, disabling));
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    fn ids(t: &MemTree) -> Vec<&'static str> {
        check(&mut Scan::new(t))
            .iter()
            .map(|h| h.check.id)
            .collect()
    }

    #[test]
    fn selinux_modes_and_apparmor() {
        let mut t = MemTree::new();
        t.file(
            SELINUX_CONFIG,
            "# SELINUX=enforcing\nSELINUX=disabled\nSELINUXTYPE=targeted\n",
        );
        assert_eq!(ids(&t), ["MAC-001"]);
        t.file(SELINUX_CONFIG, "SELINUX=permissive # for now\n");
        assert_eq!(ids(&t), ["MAC-002"]);
        t.file(SELINUX_CONFIG, "SELINUX=enforcing\n");
        assert!(ids(&t).is_empty());
        // AppArmor systems often carry a disabled SELinux config: AppArmor is the MAC then.
        t.file(SELINUX_CONFIG, "SELINUX=disabled\n");
        t.file("/etc/apparmor.d/usr.sbin.sshd", "profile {}\n");
        assert!(ids(&t).is_empty());
        let mut t = MemTree::new();
        t.dir("/etc/apparmor.d", 0o755);
        assert_eq!(ids(&t), ["MAC-004"]);
    }

    #[test]
    fn kernel_parameters() {
        let mut t = MemTree::new();
        t.file(SELINUX_CONFIG, "SELINUX=enforcing\n");
        t.file(
            GRUB_DEFAULT,
            "#GRUB_CMDLINE_LINUX=\"selinux=0\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet apparmor=0\"\nGRUB_CMDLINE_LINUX=\"\"\n",
        );
        t.file(
            "/etc/default/grub.d/50-x.cfg",
            "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX enforcing=0\"\n",
        );
        let hits = check(&mut Scan::new(&t));
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].check.id, "MAC-003");
        assert_eq!(hits[0].evidence.len(), 2);
        assert_eq!(hits[0].evidence[0].line, Some(2));
    }
}
