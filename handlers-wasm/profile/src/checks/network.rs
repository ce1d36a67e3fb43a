//! `network`: is a host firewall configured? Read from configuration files, not from a running
//! system: nftables and iptables rule files count when they drop or reject something, ufw when
//! `ENABLED=yes`, firewalld when its unit is enabled.

use crate::report::{self, Evidence, Hit};
use crate::tree::{Scan, join};

const NFT_FILES: &[&str] = &["/etc/nftables.conf", "/etc/sysconfig/nftables.conf"];
const NFT_DIR: &str = "/etc/nftables";
const IPTABLES_FILES: &[&str] = &[
    "/etc/iptables/rules.v4",
    "/etc/iptables/rules.v6",
    "/etc/sysconfig/iptables",
    "/etc/sysconfig/ip6tables",
];
const UFW_CONF: &str = "/etc/ufw/ufw.conf";
const FIREWALLD_CONF: &str = "/etc/firewalld/firewalld.conf";
const FIREWALLD_UNIT: &str = "/etc/systemd/system/multi-user.target.wants/firewalld.service";

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
}

/// True when an nftables file has a `drop` or `reject` outside comments.
fn nft_filters(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        let code = l.split('#').next().unwrap_or("");
        words(code).any(|w| w.eq_ignore_ascii_case("drop") || w.eq_ignore_ascii_case("reject"))
    })
}

/// True when an iptables-save file has a DROP/REJECT policy or target.
fn iptables_filters(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        let l = l.trim();
        if l.starts_with('#') {
            return false;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        let policy = w.len() >= 2 && w[0].starts_with(':') && matches!(w[1], "DROP" | "REJECT");
        let target = w
            .windows(2)
            .any(|p| matches!(p[0], "-j" | "--jump") && matches!(p[1], "DROP" | "REJECT"));
        policy || target
    })
}

/// Runs the `network` checks.
pub fn check(scan: &mut Scan) -> Vec<Hit> {
    let mut evidence = Vec::new();

    let mut nft_files: Vec<String> = NFT_FILES.iter().map(|s| s.to_string()).collect();
    if let Some(entries) = scan.list_dir(NFT_DIR) {
        nft_files.extend(
            entries
                .iter()
                .filter(|e| e.name.ends_with(".nft"))
                .map(|e| join(NFT_DIR, &e.name)),
        );
    }
    for path in &nft_files {
        if let Some(text) = scan.read_text(path) {
            if nft_filters(&text.lines) {
                return Vec::new();
            }
            evidence.push(Evidence::file(path, "no drop or reject rule"));
        }
    }
    for path in IPTABLES_FILES {
        if let Some(text) = scan.read_text(path) {
            if iptables_filters(&text.lines) {
                return Vec::new();
            }
            evidence.push(Evidence::file(path, "no drop or reject rule"));
        }
    }
    if let Some(text) = scan.read_text(UFW_CONF) {
        let enabled = text
            .numbered()
            .find(|(_, l)| l.trim_start().starts_with("ENABLED="));
        match enabled {
            Some((_, l)) if l.trim().trim_start_matches("ENABLED=").trim_matches('"') == "yes" => {
                return Vec::new();
            }
            Some((n, l)) => evidence.push(Evidence::line(UFW_CONF, n, l)),
            None => evidence.push(Evidence::file(UFW_CONF, "ENABLED is not set")),
        }
    }
    if scan.exists(FIREWALLD_CONF) {
        if scan.lstat(FIREWALLD_UNIT).is_some() {
            return Vec::new();
        }
        evidence.push(Evidence::file(
            FIREWALLD_CONF,
            "firewalld.service is not enabled",
        ));
    }
    if evidence.is_empty() {
        evidence.push(Evidence::file(
            "/etc",
            "no nftables, iptables, ufw or firewalld configuration",
        ));
    }
    vec![Hit::new(&report::NET_001, evidence)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    fn run(t: &MemTree) -> Vec<Hit> {
        check(&mut Scan::new(t))
    }

    #[test]
    fn accept_all_nftables_and_disabled_ufw_are_no_firewall() {
        let mut t = MemTree::new();
        t.file(
            "/etc/nftables.conf",
            "flush ruleset\ntable inet filter {\n chain input {\n  type filter hook input priority filter; # drop later\n }\n}\n",
        );
        t.file("/etc/ufw/ufw.conf", "# comment\nENABLED=no\nLOGLEVEL=low\n");
        let hits = run(&t);
        assert_eq!(hits.len(), 1);
        assert_eq!(
            hits[0].evidence,
            [
                Evidence::file("/etc/nftables.conf", "no drop or reject rule"),
                Evidence::line("/etc/ufw/ufw.conf", 2, "ENABLED=no"),
            ]
        );
    }

    #[test]
    fn any_filtering_source_counts() {
        let mut t = MemTree::new();
        t.file("/etc/nftables.conf", "table inet f {\n chain input {\n  type filter hook input priority 0; policy drop;\n }\n}\n");
        assert!(run(&t).is_empty());
        let mut t = MemTree::new();
        t.file(
            "/etc/iptables/rules.v4",
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 23 -j REJECT\nCOMMIT\n",
        );
        assert!(run(&t).is_empty());
        let mut t = MemTree::new();
        t.file("/etc/ufw/ufw.conf", "ENABLED=yes\n");
        assert!(run(&t).is_empty());
        let mut t = MemTree::new();
        t.file(FIREWALLD_CONF, "DefaultZone=public\n");
        t.link(FIREWALLD_UNIT, "/usr/lib/systemd/system/firewalld.service");
        assert!(run(&t).is_empty());
    }

    #[test]
    fn nothing_at_all() {
        let t = MemTree::new();
        let hits = run(&t);
        assert_eq!(hits[0].evidence[0].path, "/etc");
    }
}
