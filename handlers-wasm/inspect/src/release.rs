//! Distribution, product name and version from `/etc/os-release` and the older release files,
//! tried in libguestfs' order with its rules (`daemon/inspect_fs_unix.ml`), re-implemented:
//! the first test whose file exists and whose parser succeeds wins; a parser that gives up
//! leaves what it already set for the later ones to overwrite.

/// What the release files say so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Release {
    pub distro: Option<&'static str>,
    pub product_name: Option<String>,
    pub version: Option<(u32, u32)>,
}

/// Parses `KEY=value` lines of os-release/lsb-release: shell-style quoting, comments.
pub fn parse_kv(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        out.push((k.trim().to_string(), unquote(v.trim())));
    }
    out
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let inner = &v[1..v.len() - 1];
        if b[0] == b'"' {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            return out;
        }
        return inner.to_string();
    }
    v.to_string()
}

/// libguestfs' distro for an os-release `ID` (its list exactly: an ID it does not know, such
/// as `almalinux` or `ol`, is left to the release files).
pub fn distro_for_id(id: &str) -> Option<&'static str> {
    Some(match id {
        "alpine" => "alpine",
        "altlinux" => "altlinux",
        "arch" => "archlinux",
        "centos" => "centos",
        "coreos" => "coreos",
        "debian" => "debian",
        "fedora" => "fedora",
        "frugalware" => "frugalware",
        "gentoo" => "gentoo",
        "kali" => "kalilinux",
        "kylin" => "kylin",
        "mageia" => "mageia",
        "neokylin" => "neokylin",
        "openmandriva" => "openmandriva",
        "opensuse" => "opensuse",
        s if s.starts_with("opensuse-") => "opensuse",
        "pardus" => "pardus",
        "pld" => "pldlinux",
        "rhel" => "rhel",
        "rocky" => "rocky",
        "sles" | "sled" => "sles",
        "ubuntu" => "ubuntu",
        "void" => "voidlinux",
        _ => return None,
    })
}

/// A run of ASCII digits at the start of `s` as a number (`None` if none, or too big, as
/// libguestfs' `int_of_string` would fail).
fn number(s: &str) -> Option<(u32, usize)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        return None;
    }
    Some((s[..len].parse().ok()?, len))
}

/// libguestfs' `parse_version_from_major_minor`: the first `N.M` anywhere in the string, else
/// the first `N` (minor 0).
pub fn major_minor(s: &str) -> Option<(u32, u32)> {
    let b = s.as_bytes();
    let mut first: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let run = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            first.get_or_insert(i);
            if b.get(i + run) == Some(&b'.') && b.get(i + run + 1).is_some_and(u8::is_ascii_digit) {
                let (major, _) = number(&s[i..])?;
                let (minor, _) = number(&s[i + run + 1..])?;
                return Some((major, minor));
            }
            i += run;
        } else {
            i += 1;
        }
    }
    first
        .and_then(|i| number(&s[i..]))
        .map(|(major, _)| (major, 0))
}

/// Distros without a version (rolling releases).
fn rolling(distro: &str) -> bool {
    matches!(distro, "archlinux" | "gentoo" | "voidlinux")
}

/// `/etc/os-release`: `ID`, `PRETTY_NAME`, `VERSION_ID`. Gives up (for the release files to
/// decide) without a known distro or product name, without a version unless rolling, or when
/// Debian, CentOS or Rocky have only a major version (their os-release leaves the minor out).
pub fn parse_os_release(data: &[u8], r: &mut Release) -> bool {
    for (key, value) in parse_kv(data) {
        match key.as_str() {
            "ID" => {
                if let Some(d) = distro_for_id(&value) {
                    r.distro = Some(d);
                }
            }
            "PRETTY_NAME" => r.product_name = Some(value),
            "VERSION_ID" => {
                if let Some(v) = neokylin_version(&value).or_else(|| major_minor(&value)) {
                    r.version = Some(v);
                }
            }
            _ => {}
        }
    }
    let (Some(distro), Some(_)) = (r.distro, &r.product_name) else {
        return false;
    };
    match r.version {
        Some((_, 0)) if matches!(distro, "debian" | "centos" | "rocky") => false,
        None if rolling(distro) => {
            r.version = Some((0, 0));
            true
        }
        None => false,
        Some(_) => true,
    }
}

/// NeoKylin's `V7Update6`.
fn neokylin_version(v: &str) -> Option<(u32, u32)> {
    let rest = v.strip_prefix('V')?;
    let (major, n) = number(rest)?;
    let (minor, m) = number(rest[n..].strip_prefix("Update")?)?;
    (n + "Update".len() + m == rest.len()).then_some((major, minor))
}

/// `/etc/lsb-release`: `DISTRIB_ID` (only the IDs libguestfs knows), `DISTRIB_RELEASE`,
/// `DISTRIB_DESCRIPTION`.
pub fn parse_lsb_release(data: &[u8], r: &mut Release) -> bool {
    let mut ok = false;
    for (key, value) in parse_kv(data) {
        match key.as_str() {
            "DISTRIB_ID" => {
                let d = match value.as_str() {
                    "CoreOS" => Some("coreos"),
                    "LinuxMint" => Some("linuxmint"),
                    "Mageia" => Some("mageia"),
                    "Ubuntu" => Some("ubuntu"),
                    _ => None,
                };
                if d.is_some() {
                    ok = true;
                    r.distro = d;
                }
            }
            "DISTRIB_RELEASE" => {
                if let Some(v) = major_minor(&value) {
                    r.version = Some(v);
                }
            }
            "DISTRIB_DESCRIPTION" => {
                ok = true;
                r.product_name = Some(value);
            }
            _ => {}
        }
    }
    ok
}

/// Version patterns of release lines, as libguestfs' regular expressions match them.
#[derive(Debug, Clone, Copy)]
pub enum Rex {
    /// `NAME.*release (\d+).*Update (\d+)`
    Update(&'static str),
    /// `NAME.*release (\d+)\.(\d+)`
    MajorMinor(&'static str),
    /// `NAME.*release (\d+)`
    Major(&'static str),
    /// `Fedora release (\d+)`
    Fedora,
    /// `OpenMandriva.*release (\d+)\.(\d+)\.?(\d+)? .*`
    OpenMandriva,
    /// `Frugalware (\d+)\.(\d+)`
    Frugalware,
    /// `(\d+)\.(\d+) PLD Linux`
    Pld,
    /// `^NetBSD (\d+)\.(\d+)`
    NetBsd,
}

/// `N.M` at the start of `s`: (major, minor, length).
fn dotted(s: &str) -> Option<(Option<u32>, Option<u32>, usize)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let rest = s[n..].strip_prefix('.')?;
    let m = rest.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || m == 0 {
        return None;
    }
    Some((number(s).map(|x| x.0), number(rest).map(|x| x.0), n + 1 + m))
}

/// The (major, minor) groups of a match.
type Groups = (Option<u32>, Option<u32>);

/// Does the line match, and with which (major, minor) groups? A group that does not fit a
/// number is `None`, as libguestfs' failed `int_of_string` is.
pub fn rex_match(rex: Rex, line: &str) -> Option<Groups> {
    let digits = |s: &str| -> Option<(Option<u32>, usize)> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| (number(s).map(|x| x.0), n))
    };
    // `NAME.*release ...`: the greedy `.*` takes the last "release " that fits.
    let after_release = |name: &str, fits: &dyn Fn(&str) -> Option<Groups>| {
        let start = line.find(name)? + name.len();
        let rest = &line[start..];
        let mut found = None;
        for (i, _) in rest.match_indices("release ") {
            if let Some(groups) = fits(&rest[i + "release ".len()..]) {
                found = Some(groups);
            }
        }
        found
    };
    match rex {
        Rex::Update(name) => after_release(name, &|s| {
            let (major, n) = digits(s)?;
            let rest = &s[n..];
            let update = rest
                .match_indices("Update ")
                .filter_map(|(i, _)| digits(&rest[i + 7..]))
                .last()?;
            Some((major, update.0))
        }),
        Rex::MajorMinor(name) => after_release(name, &|s| dotted(s).map(|(a, b, _)| (a, b))),
        Rex::Major(name) => after_release(name, &|s| digits(s).map(|(a, _)| (a, None))),
        Rex::Fedora => {
            let i = line.find("Fedora release ")?;
            digits(&line[i + 15..]).map(|(a, _)| (a, None))
        }
        Rex::OpenMandriva => after_release("OpenMandriva", &|s| {
            let (major, minor, mut n) = dotted(s)?;
            if s[n..].starts_with('.') {
                n += 1;
            }
            n += s[n..].bytes().take_while(u8::is_ascii_digit).count();
            s[n..].starts_with(' ').then_some((major, minor))
        }),
        Rex::Frugalware => line
            .match_indices("Frugalware ")
            .find_map(|(i, _)| dotted(&line[i + 11..]))
            .map(|(a, b, _)| (a, b)),
        Rex::Pld => line.match_indices(" PLD Linux").find_map(|(i, _)| {
            let head = &line[..i];
            let start = head.len()
                - head
                    .bytes()
                    .rev()
                    .take_while(|c| c.is_ascii_digit() || *c == b'.')
                    .count();
            // The digits just before must be exactly N.M.
            let cand = &head[start..];
            let (a, b, n) = dotted(cand.trim_start_matches('.'))?;
            (n == cand.trim_start_matches('.').len()).then_some((a, b))
        }),
        Rex::NetBsd => dotted(line.strip_prefix("NetBSD ")?).map(|(a, b, _)| (a, b)),
    }
}

/// libguestfs' `parse_generic`: the product name is the file's first line (an empty one
/// fails); with a pattern, it must match and gives the version; without one, a version is
/// taken from the line if it has one.
pub fn parse_generic(data: &[u8], distro: &'static str, rex: Option<Rex>, r: &mut Release) -> bool {
    let text = String::from_utf8_lossy(data);
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return false;
    }
    r.product_name = Some(line.clone());
    r.distro = Some(distro);
    match rex {
        Some(rex) => match rex_match(rex, &line) {
            Some((Some(major), minor)) => {
                r.version = Some((major, minor.unwrap_or(0)));
                true
            }
            Some((None, _)) => true,
            None => false,
        },
        None => {
            if let Some(v) = major_minor(&line) {
                r.version = Some(v);
            }
            true
        }
    }
}

/// `/etc/SuSE-release`: the product on line 1; SLES has `VERSION = N` and `PATCHLEVEL = M`
/// on lines 2 and 3, openSUSE its version on line 2.
pub fn parse_suse_release(data: &[u8], r: &mut Release) -> bool {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    let Some(first) = lines.first() else {
        return false;
    };
    r.product_name = Some(first.to_string());
    let field = |i: usize, key: &str| -> Option<u32> {
        let rest = lines.get(i)?.strip_prefix(key)?;
        number(rest.strip_prefix(" = ")?).map(|x| x.0)
    };
    let sles = first.starts_with("SUSE Linux Enterprise ")
        || first.starts_with("SUSE LINUX Enterprise ")
        || first.starts_with("Novell Linux Desktop ");
    if sles {
        r.distro = Some("sles");
        r.version = field(1, "VERSION").map(|major| (major, field(2, "PATCHLEVEL").unwrap_or(0)));
    } else if ["openSUSE ", "SuSE Linux ", "SUSE LINUX "]
        .iter()
        .any(|p| first.starts_with(p))
    {
        if let Some(v) = lines.get(1).and_then(|l| major_minor(l)) {
            r.version = Some(v);
        }
        r.distro = Some("opensuse");
    }
    true
}

/// One step of libguestfs' list of Linux release-file tests.
#[derive(Debug, Clone, Copy)]
pub enum Test {
    OsRelease,
    Lsb,
    Generic(&'static str, Option<Rex>),
    /// The file's existence alone names the distro.
    Distro(&'static str),
    Suse,
    /// Buildroot or CirrOS (`/usr/share/cirros/logo` tells them apart).
    BrVersion,
}

/// The tests, in libguestfs' order.
pub const LINUX_TESTS: &[(&str, Test)] = &[
    ("/etc/os-release", Test::OsRelease),
    ("/etc/lsb-release", Test::Lsb),
    (
        "/etc/openmandriva-release",
        Test::Generic("openmandriva", Some(Rex::OpenMandriva)),
    ),
    (
        "/etc/oracle-release",
        Test::Generic("oraclelinux", Some(Rex::Update("Oracle Linux"))),
    ),
    (
        "/etc/oracle-release",
        Test::Generic("oraclelinux", Some(Rex::MajorMinor("Oracle Linux"))),
    ),
    (
        "/etc/oracle-release",
        Test::Generic("oraclelinux", Some(Rex::Major("Oracle Linux"))),
    ),
    (
        "/etc/centos-release",
        Test::Generic("centos", Some(Rex::Update("CentOS"))),
    ),
    (
        "/etc/centos-release",
        Test::Generic("centos", Some(Rex::MajorMinor("CentOS"))),
    ),
    (
        "/etc/centos-release",
        Test::Generic("centos", Some(Rex::Major("CentOS"))),
    ),
    (
        "/etc/rocky-release",
        Test::Generic("rocky", Some(Rex::MajorMinor("Rocky Linux"))),
    ),
    (
        "/etc/rocky-release",
        Test::Generic("rocky", Some(Rex::Major("Rocky Linux"))),
    ),
    ("/etc/altlinux-release", Test::Generic("altlinux", None)),
    (
        "/etc/redhat-release",
        Test::Generic("fedora", Some(Rex::Fedora)),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rhel", Some(Rex::Update("Red Hat"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rhel", Some(Rex::MajorMinor("Red Hat"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rhel", Some(Rex::Major("Red Hat"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("centos", Some(Rex::Update("CentOS"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("centos", Some(Rex::MajorMinor("CentOS"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("centos", Some(Rex::Major("CentOS"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rocky", Some(Rex::MajorMinor("Rocky Linux"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rocky", Some(Rex::Major("Rocky Linux"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("scientificlinux", Some(Rex::Update("Scientific Linux"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("scientificlinux", Some(Rex::MajorMinor("Scientific Linux"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("scientificlinux", Some(Rex::Major("Scientific Linux"))),
    ),
    ("/etc/redhat-release", Test::Generic("redhat-based", None)),
    ("/etc/redhat-release", Test::Distro("redhat-based")),
    ("/etc/debian_version", Test::Generic("debian", None)),
    ("/etc/pardus-release", Test::Generic("pardus", None)),
    ("/etc/arch-release", Test::Distro("archlinux")),
    ("/etc/gentoo-release", Test::Generic("gentoo", None)),
    ("/etc/meego-release", Test::Generic("meego", None)),
    ("/etc/slackware-version", Test::Generic("slackware", None)),
    ("/etc/ttylinux-target", Test::Generic("ttylinux", None)),
    ("/etc/SuSE-release", Test::Suse),
    ("/etc/SuSE-release", Test::Distro("suse-based")),
    ("/etc/cirros/version", Test::Generic("cirros", None)),
    ("/etc/br-version", Test::BrVersion),
    ("/etc/alpine-release", Test::Generic("alpine", None)),
    (
        "/etc/frugalware-release",
        Test::Generic("frugalware", Some(Rex::Frugalware)),
    ),
    (
        "/etc/pld-release",
        Test::Generic("pldlinux", Some(Rex::Pld)),
    ),
];

/// Runs the tests over the guest's files (`read` gives a small regular file's bytes, or
/// `None` when there is no such file); `cirros_logo` says whether `/usr/share/cirros/logo`
/// exists.
pub fn check_tests(
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
    cirros_logo: &dyn Fn() -> bool,
) -> Release {
    let mut r = Release::default();
    for (path, test) in LINUX_TESTS {
        let Some(data) = read(path) else {
            continue;
        };
        let done = match test {
            Test::OsRelease => parse_os_release(&data, &mut r),
            Test::Lsb => parse_lsb_release(&data, &mut r),
            Test::Generic(distro, rex) => parse_generic(&data, distro, *rex, &mut r),
            Test::Distro(distro) => {
                r.distro = Some(distro);
                true
            }
            Test::Suse => parse_suse_release(&data, &mut r),
            Test::BrVersion => {
                let distro = if cirros_logo() { "cirros" } else { "buildroot" };
                parse_generic(&data, distro, None, &mut r)
            }
        };
        if done {
            break;
        }
    }
    r
}

/// libguestfs' package format for a distro.
pub fn package_format(distro: &str) -> Option<&'static str> {
    Some(match distro {
        "altlinux" | "centos" | "rocky" | "fedora" | "mageia" | "mandriva" | "meego"
        | "neokylin" | "openmandriva" | "opensuse" | "oraclelinux" | "redhat-based" | "rhel"
        | "scientificlinux" | "sles" | "suse-based" => "rpm",
        "debian" | "kalilinux" | "kylin" | "linuxmint" | "ubuntu" => "deb",
        "archlinux" => "pacman",
        "gentoo" => "ebuild",
        "pardus" => "pisi",
        "alpine" => "apk",
        "voidlinux" => "xbps",
        _ => return None,
    })
}

/// libguestfs' package management tool for a distro and major version (`has_dnf`: whether
/// `/usr/bin/dnf` exists, which decides for Fedora 22 and later).
pub fn package_management(distro: &str, major: u32, has_dnf: bool) -> Option<&'static str> {
    Some(match distro {
        "meego" => "yum",
        "fedora" if major >= 22 && has_dnf => "dnf",
        "fedora" if major >= 1 => "yum",
        "neokylin" => "dnf",
        "centos" | "rocky" | "oraclelinux" | "redhat-based" | "rhel" | "scientificlinux" => {
            match major {
                8.. => "dnf",
                5.. => "yum",
                2.. => "up2date",
                _ => return None,
            }
        }
        "altlinux" | "debian" | "kalilinux" | "kylin" | "linuxmint" | "ubuntu" => "apt",
        "archlinux" => "pacman",
        "gentoo" => "portage",
        "pardus" => "pisi",
        "mageia" | "mandriva" => "urpmi",
        "opensuse" | "sles" | "suse-based" => "zypper",
        "alpine" => "apk",
        "voidlinux" => "xbps",
        "openmandriva" => "dnf",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)]) -> Release {
        let read = |p: &str| {
            files
                .iter()
                .find(|(f, _)| *f == p)
                .map(|(_, d)| d.as_bytes().to_vec())
        };
        check_tests(&read, &|| false)
    }

    #[test]
    fn debian_takes_the_version_and_name_from_debian_version() {
        let r = run(&[
            (
                "/etc/os-release",
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
            ),
            ("/etc/debian_version", "12.15\n"),
        ]);
        assert_eq!(
            (r.distro, r.product_name.as_deref(), r.version),
            (Some("debian"), Some("12.15"), Some((12, 15)))
        );
    }

    #[test]
    fn os_release_cases() {
        let r = run(&[(
            "/etc/os-release",
            "ID=fedora\nVERSION_ID=39\nPRETTY_NAME='Fedora Linux 39'\n",
        )]);
        assert_eq!((r.distro, r.version), (Some("fedora"), Some((39, 0))));
        let r = run(&[(
            "/etc/os-release",
            "NAME=\"Arch Linux\"\nID=arch\nPRETTY_NAME=\"Arch Linux\"\n",
        )]);
        assert_eq!((r.distro, r.version), (Some("archlinux"), Some((0, 0))));
        // An ID libguestfs does not know falls through to redhat-release.
        let r = run(&[
            (
                "/etc/os-release",
                "ID=\"almalinux\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"AlmaLinux 9.3\"\n",
            ),
            (
                "/etc/redhat-release",
                "AlmaLinux release 9.3 (Shamrock Pampas Cat)\n",
            ),
        ]);
        assert_eq!((r.distro, r.version), (Some("redhat-based"), Some((9, 3))));
        let r = run(&[(
            "/etc/redhat-release",
            "Red Hat Enterprise Linux Server release 5 (Tikanga) Update 11\n",
        )]);
        assert_eq!((r.distro, r.version), (Some("rhel"), Some((5, 11))));
        let r = run(&[(
            "/etc/redhat-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
        )]);
        assert_eq!((r.distro, r.version), (Some("centos"), Some((7, 9))));
        let r = run(&[(
            "/etc/lsb-release",
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_DESCRIPTION=\"Ubuntu 22.04.3 LTS\"\n",
        )]);
        assert_eq!((r.distro, r.version), (Some("ubuntu"), Some((22, 4))));
        let r = run(&[("/etc/alpine-release", "3.19.1\n")]);
        assert_eq!((r.distro, r.version), (Some("alpine"), Some((3, 19))));
        assert_eq!(run(&[("/etc/arch-release", "")]).distro, Some("archlinux"));
        assert_eq!(major_minor("V 99999999999999999999.1"), None);
        assert_eq!(
            rex_match(Rex::Pld, "2.0 PLD Linux"),
            Some((Some(2), Some(0)))
        );
        assert_eq!(
            rex_match(Rex::NetBsd, "NetBSD 9.3 (GENERIC)"),
            Some((Some(9), Some(3)))
        );
    }
}
