//! `kernel`: the newest installed kernel, from /boot/vmlinuz-* (and vmlinux-*) and the module
//! trees in /lib/modules and /usr/lib/modules, compared with the oldest kernel series still
//! maintained upstream.

use crate::report::{self, Evidence, Hit};
use crate::tree::{Kind, Scan, join};

/// The oldest upstream longterm series still maintained when this version of the handler was
/// released (kernel.org, November 2026: 5.10, end of life December 2026). A newest installed
/// kernel below it is outdated.
pub const OLDEST_MAINTAINED: (u32, u32) = (5, 10);

/// The numeric head of a kernel release string: `4.19.0-27-amd64` -> (4, 19, 0).
pub fn parse_version(release: &str) -> Option<(u32, u32, u32)> {
    let head: String = release
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = head.split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// Runs the `kernel` checks.
pub fn check(scan: &mut Scan) -> Vec<Hit> {
    // (release, where it was seen)
    let mut kernels: Vec<(String, String)> = Vec::new();
    for e in scan.list_dir("/boot").unwrap_or_default() {
        let release = e
            .name
            .strip_prefix("vmlinuz-")
            .or_else(|| e.name.strip_prefix("vmlinux-"));
        if let Some(release) = release
            && matches!(e.kind, Kind::File | Kind::Symlink)
        {
            kernels.push((release.to_string(), join("/boot", &e.name)));
        }
    }
    let mut module_dirs = vec!["/usr/lib/modules"];
    // With a merged /usr, /lib/modules is the same directory again.
    if scan.lstat("/lib").is_some_and(|m| m.kind == Kind::Dir) {
        module_dirs.insert(0, "/lib/modules");
    }
    for dir in module_dirs {
        for e in scan.list_dir(dir).unwrap_or_default() {
            if e.kind == Kind::Dir {
                kernels.push((e.name.clone(), join(dir, &e.name)));
            }
        }
    }
    let newest = kernels
        .iter()
        .filter_map(|(release, _)| parse_version(release).map(|v| (v, release)))
        .max();
    let Some(((major, minor, _), release)) = newest else {
        return Vec::new();
    };
    if (major, minor) >= OLDEST_MAINTAINED {
        return Vec::new();
    }
    let evidence = kernels
        .iter()
        .filter(|(r, _)| r == release)
        .map(|(r, path)| Evidence::file(path, r.clone()))
        .collect();
    vec![Hit::new(&report::KRN_001, evidence)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    #[test]
    fn versions() {
        assert_eq!(parse_version("4.19.0-27-amd64"), Some((4, 19, 0)));
        assert_eq!(parse_version("5.14.0-427.el9.x86_64"), Some((5, 14, 0)));
        assert_eq!(parse_version("6.1"), Some((6, 1, 0)));
        assert_eq!(parse_version("rescue"), None);
        assert_eq!(parse_version("6"), None);
    }

    #[test]
    fn newest_kernel_decides() {
        let mut t = MemTree::new();
        t.file("/boot/vmlinuz-4.9.0-13-amd64", "k");
        t.file("/boot/vmlinuz-3.16.0-4-amd64", "k");
        t.file("/boot/config-4.9.0-13-amd64", "c");
        t.dir("/lib/modules/4.9.0-13-amd64", 0o755);
        let hits = check(&mut Scan::new(&t));
        assert_eq!(hits.len(), 1);
        assert_eq!(
            hits[0].evidence,
            [
                Evidence::file("/boot/vmlinuz-4.9.0-13-amd64", "4.9.0-13-amd64"),
                Evidence::file("/lib/modules/4.9.0-13-amd64", "4.9.0-13-amd64"),
            ]
        );
        t.dir("/usr/lib/modules/6.1.0-18-amd64", 0o755);
        assert!(check(&mut Scan::new(&t)).is_empty());
    }
}
