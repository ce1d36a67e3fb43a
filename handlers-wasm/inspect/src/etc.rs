//! Parsers for small configuration files: fstab, passwd, group, network configuration; and
//! the machine type of an ELF or PE binary.

use serde::Serialize;

/// One `/etc/fstab` line.
#[derive(Debug, Clone, PartialEq)]
pub struct FstabEntry {
    pub spec: String,
    pub mountpoint: String,
    pub fs_type: String,
    pub options: String,
}

/// fstab's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `///usr//local//` -> `/usr/local`.
fn canonical_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// Entries of `/etc/fstab` that libguestfs considers: a block device (`/dev/...`) or a
/// filesystem named by `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`, mounted on an absolute
/// path (canonicalised) outside `/dev`, `/media`, `/proc`, `/selinux` and `/sys`; floppy and
/// CD-ROM devices, swap and pseudo filesystems (`proc`, `tmpfs`, NFS, ...) are left out.
pub fn parse_fstab(data: &[u8]) -> Vec<FstabEntry> {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        let spec = unescape(f[0]);
        let mountpoint = unescape(f[1]);
        if !mountpoint.starts_with('/') {
            continue;
        }
        let mountpoint = canonical_path(&mountpoint);
        let ignored_mount = ["/dev", "/media", "/proc", "/selinux", "/sys"]
            .iter()
            .any(|p| mountpoint == *p || mountpoint.starts_with(&format!("{p}/")))
            && mountpoint != "/media";
        let numbered = |prefix: &str| {
            spec.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        };
        let ignored_spec = numbered("/dev/fd")
            || numbered("/dev/cd")
            || spec == "/dev/floppy"
            || spec == "/dev/cdrom"
            || spec.starts_with("/dev/iso9660/");
        let device = ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "/dev/"]
            .iter()
            .any(|p| spec.starts_with(p));
        if ignored_mount || ignored_spec || !device {
            continue;
        }
        out.push(FstabEntry {
            spec,
            mountpoint,
            fs_type: f.get(2).copied().unwrap_or("").to_string(),
            options: f.get(3).copied().unwrap_or("").to_string(),
        });
    }
    out
}

/// A user from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// A group from `/etc/group`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Lines of `/etc/passwd`; malformed lines are counted, not fatal.
pub fn parse_passwd(data: &[u8]) -> (Vec<User>, usize) {
    let text = String::from_utf8_lossy(data);
    let mut bad = 0;
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split(':').collect();
        match (
            f.len(),
            f.get(2).and_then(|u| u.parse().ok()),
            f.get(3).and_then(|g| g.parse().ok()),
        ) {
            (7, Some(uid), Some(gid)) => out.push(User {
                name: f[0].into(),
                uid,
                gid,
                gecos: f[4].into(),
                home: f[5].into(),
                shell: f[6].into(),
            }),
            _ => bad += 1,
        }
    }
    (out, bad)
}

/// Lines of `/etc/group`.
pub fn parse_group(data: &[u8]) -> (Vec<Group>, usize) {
    let text = String::from_utf8_lossy(data);
    let mut bad = 0;
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split(':').collect();
        match (f.len(), f.get(2).and_then(|g| g.parse().ok())) {
            (4, Some(gid)) => out.push(Group {
                name: f[0].into(),
                gid,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            }),
            _ => bad += 1,
        }
    }
    (out, bad)
}

/// The architecture of an ELF or PE binary from its header, named as libguestfs does.
pub fn binary_arch(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x7fELF") && head.len() >= 20 {
        let class64 = head[4] == 2;
        let big = head[5] == 2;
        let machine = if big {
            u16::from_be_bytes([head[18], head[19]])
        } else {
            u16::from_le_bytes([head[18], head[19]])
        };
        return Some(match machine {
            2 => "sparc",
            3 => "i386",
            8 if class64 => "mips64",
            8 => "mips",
            20 => "ppc",
            21 if big => "ppc64",
            21 => "ppc64le",
            22 if class64 => "s390x",
            22 => "s390",
            40 => "arm",
            43 => "sparc64",
            50 => "ia64",
            62 => "x86_64",
            183 => "aarch64",
            243 if class64 => "riscv64",
            243 => "riscv32",
            258 => "loongarch64",
            _ => return None,
        });
    }
    if head.starts_with(b"MZ") && head.len() >= 0x40 {
        let pe = u32::from_le_bytes([head[0x3c], head[0x3d], head[0x3e], head[0x3f]]) as usize;
        let sig = head.get(pe..pe + 6)?;
        if &sig[..4] != b"PE\0\0" {
            return None;
        }
        return Some(match u16::from_le_bytes([sig[4], sig[5]]) {
            0x014c => "i386",
            0x8664 => "x86_64",
            0xaa64 => "aarch64",
            0x01c4 => "arm",
            0x0200 => "ia64",
            _ => return None,
        });
    }
    None
}

/// A network interface's configuration, whichever tool wrote it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interface {
    /// Interface name (`eth0`), or the connection name when the file names no interface.
    pub name: String,
    /// The file it was read from.
    pub source: String,
    /// `dhcp`, `static`, `manual`, `loopback`, `auto`, `disabled`, ... as the file says.
    pub method: String,
    /// `inet` or `inet6`.
    pub family: String,
    /// Addresses, with a `/prefix` when the file gives one.
    pub addresses: Vec<String>,
    pub gateway: Option<String>,
    /// Brought up at boot.
    pub start_on_boot: Option<bool>,
    pub mac_address: Option<String>,
}

fn netmask_prefix(mask: &str) -> Option<u32> {
    let octets: Vec<u8> = mask
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    (octets.len() == 4).then(|| octets.iter().map(|o| o.count_ones()).sum())
}

/// Debian's `/etc/network/interfaces` (ifupdown).
pub fn parse_ifupdown(data: &[u8], source: &str) -> Vec<Interface> {
    let text = String::from_utf8_lossy(data);
    let mut auto: Vec<String> = Vec::new();
    let mut out: Vec<Interface> = Vec::new();
    let mut netmask: Option<String> = None;
    let finish = |out: &mut Vec<Interface>, netmask: &mut Option<String>| {
        if let (Some(last), Some(mask)) = (out.last_mut(), netmask.take())
            && let (Some(addr), Some(p)) = (last.addresses.last_mut(), netmask_prefix(&mask))
            && !addr.contains('/')
        {
            addr.push_str(&format!("/{p}"));
        }
    };
    let mut in_iface = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            None => {}
            Some("auto") | Some("allow-auto") | Some("allow-hotplug") => {
                finish(&mut out, &mut netmask);
                in_iface = false;
                auto.extend(w[1..].iter().map(|s| s.to_string()));
            }
            Some("iface") if w.len() >= 4 => {
                finish(&mut out, &mut netmask);
                in_iface = true;
                out.push(Interface {
                    name: w[1].into(),
                    source: source.into(),
                    family: w[2].into(),
                    method: w[3].into(),
                    ..Interface::default()
                });
            }
            Some("mapping") | Some("source") | Some("source-directory") | Some("iface") => {
                finish(&mut out, &mut netmask);
                in_iface = false;
            }
            Some(key) if in_iface && w.len() >= 2 => {
                let Some(iface) = out.last_mut() else {
                    continue;
                };
                match key {
                    "address" => iface.addresses.push(w[1].into()),
                    "netmask" => netmask = Some(w[1].into()),
                    "gateway" => iface.gateway = Some(w[1].into()),
                    "hwaddress" => iface.mac_address = Some(w[w.len() - 1].to_ascii_lowercase()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    finish(&mut out, &mut netmask);
    for iface in &mut out {
        iface.start_on_boot = Some(auto.contains(&iface.name));
    }
    out
}

/// A Red Hat `ifcfg-NAME` file (shell variables).
pub fn parse_ifcfg(data: &[u8], source: &str, file_name: &str) -> Interface {
    let kv = crate::release::parse_kv(data);
    let get = |k: &str| {
        kv.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut iface = Interface {
        name: get("DEVICE").unwrap_or_else(|| file_name.trim_start_matches("ifcfg-").to_string()),
        source: source.into(),
        family: "inet".into(),
        method: get("BOOTPROTO")
            .unwrap_or_else(|| "none".into())
            .to_ascii_lowercase(),
        gateway: get("GATEWAY"),
        start_on_boot: get("ONBOOT").map(|v| v.eq_ignore_ascii_case("yes")),
        mac_address: get("HWADDR").map(|m| m.to_ascii_lowercase()),
        ..Interface::default()
    };
    for suffix in ["", "0", "1", "2", "3"] {
        if let Some(addr) = get(&format!("IPADDR{suffix}")) {
            let prefix = get(&format!("PREFIX{suffix}")).or_else(|| {
                get(&format!("NETMASK{suffix}"))
                    .and_then(|m| netmask_prefix(&m))
                    .map(|p| p.to_string())
            });
            iface.addresses.push(match prefix {
                Some(p) => format!("{addr}/{p}"),
                None => addr,
            });
        }
    }
    iface
}

/// INI-style files: NetworkManager keyfiles and systemd-networkd `.network` units.
fn parse_ini(data: &[u8]) -> Vec<(String, String, String)> {
    let text = String::from_utf8_lossy(data);
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// A NetworkManager keyfile (`*.nmconnection`).
pub fn parse_nmconnection(data: &[u8], source: &str) -> Interface {
    let ini = parse_ini(data);
    let get = |s: &str, k: &str| {
        ini.iter()
            .find(|(sec, key, _)| sec == s && key == k)
            .map(|(_, _, v)| v.clone())
    };
    let mut iface = Interface {
        name: get("connection", "interface-name")
            .or_else(|| get("connection", "id"))
            .unwrap_or_default(),
        source: source.into(),
        family: "inet".into(),
        method: get("ipv4", "method").unwrap_or_else(|| "auto".into()),
        start_on_boot: Some(get("connection", "autoconnect").is_none_or(|v| v != "false")),
        mac_address: get("ethernet", "mac-address").map(|m| m.to_ascii_lowercase()),
        ..Interface::default()
    };
    for (sec, key, value) in &ini {
        if sec == "ipv4" && key.starts_with("address") {
            let mut parts = value.split(',');
            if let Some(a) = parts.next() {
                iface.addresses.push(a.trim().to_string());
            }
            if let Some(g) = parts.next() {
                iface.gateway = Some(g.trim().to_string());
            }
        }
        if sec == "ipv4" && key == "gateway" {
            iface.gateway = Some(value.clone());
        }
    }
    iface
}

/// A systemd-networkd `.network` unit.
pub fn parse_networkd(data: &[u8], source: &str) -> Interface {
    let ini = parse_ini(data);
    let get = |s: &str, k: &str| {
        ini.iter()
            .find(|(sec, key, _)| sec == s && key == k)
            .map(|(_, _, v)| v.clone())
    };
    let dhcp = get("Network", "DHCP").unwrap_or_else(|| "no".into());
    let addresses: Vec<String> = ini
        .iter()
        .filter(|(s, k, _)| k == "Address" && (s == "Network" || s == "Address"))
        .map(|(_, _, v)| v.clone())
        .collect();
    Interface {
        name: get("Match", "Name").unwrap_or_default(),
        source: source.into(),
        family: "inet".into(),
        method: if matches!(dhcp.as_str(), "yes" | "ipv4" | "true") {
            "dhcp".into()
        } else if addresses.is_empty() {
            "manual".into()
        } else {
            "static".into()
        },
        addresses,
        gateway: get("Network", "Gateway").or_else(|| get("Route", "Gateway")),
        start_on_boot: Some(true),
        mac_address: get("Match", "MACAddress").map(|m| m.to_ascii_lowercase()),
    }
}

/// `nameserver` lines of resolv.conf.
pub fn parse_resolv_conf(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next().map(String::from))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab() {
        let f = parse_fstab(b"# c\nUUID=abc / ext4 defaults 0 1\nLABEL=my\\040disk /mnt\\040x xfs ro 0 0\n/dev/sda3 none swap sw 0 0\nproc /proc proc defaults\n\\777\n/dev/sdb1 //usr//local// ext4 defaults\n/dev/cdrom /media/cdrom auto ro\n/dev/fd0 /mnt/floppy auto ro\ntmpfs /tmp tmpfs defaults\n/dev/sdc1 /sys/x ext4 defaults\n");
        assert_eq!(f.len(), 3);
        assert_eq!(f[2].mountpoint, "/usr/local");
        assert_eq!(f[1].spec, "LABEL=my disk");
        assert_eq!(f[1].mountpoint, "/mnt x");
    }

    #[test]
    fn ifupdown() {
        let i = parse_ifupdown(b"auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet static\n address 192.0.2.10\n netmask 255.255.255.0\n gateway 192.0.2.1\n", "/etc/network/interfaces");
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].addresses, vec!["192.0.2.10/24".to_string()]);
        assert_eq!(i[1].gateway.as_deref(), Some("192.0.2.1"));
        assert_eq!(i[1].start_on_boot, Some(true));
    }

    #[test]
    fn arch() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(20, 0);
        elf[18] = 62;
        assert_eq!(binary_arch(&elf), Some("x86_64"));
        assert_eq!(binary_arch(b"MZ"), None);
        let mut pe = vec![0u8; 0x100];
        pe[0] = b'M';
        pe[1] = b'Z';
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        assert_eq!(binary_arch(&pe), Some("x86_64"));
        pe[0x3c] = 0xff;
        pe[0x3f] = 0xff;
        assert_eq!(binary_arch(&pe), None);
    }
}
