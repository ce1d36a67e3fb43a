//! Every parser of guest content in the inspect handler, fed the same bytes: package databases
//! (SQLite rpmdb, Berkeley DB Packages, rpm header, dpkg status, apk, pacman desc), release
//! files, fstab, passwd/group, network configuration and ELF/PE headers. None may panic, loop
//! or allocate without bound.
#![no_main]

use inspect::{etc, pkg, release};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pkg::rpm::read_sqlite(data);
    let _ = pkg::rpm::read_bdb(data);
    let _ = pkg::rpm::Header::parse(data).and_then(|h| h.application());
    let _ = pkg::dpkg::parse_status(data);
    let _ = pkg::apk::parse_installed(data);
    let _ = pkg::pacman::parse_desc(data);
    let _ = release::parse_os_release(data, &mut release::Release::default());
    let _ = release::parse_lsb_release(data, &mut release::Release::default());
    let _ = release::parse_suse_release(data, &mut release::Release::default());
    let line = String::from_utf8_lossy(data);
    for rex in [
        release::Rex::Update("Red Hat"),
        release::Rex::MajorMinor("CentOS"),
        release::Rex::Major("Rocky Linux"),
        release::Rex::Fedora,
        release::Rex::OpenMandriva,
        release::Rex::Frugalware,
        release::Rex::Pld,
        release::Rex::NetBsd,
    ] {
        let _ = release::parse_generic(data, "x", Some(rex), &mut release::Release::default());
        let _ = release::rex_match(rex, &line);
    }
    let _ = release::major_minor(&line);
    let _ = etc::parse_fstab(data);
    let _ = etc::parse_passwd(data);
    let _ = etc::parse_group(data);
    let _ = etc::parse_ifupdown(data, "/etc/network/interfaces");
    let _ = etc::parse_ifcfg(data, "/etc/sysconfig/network-scripts/ifcfg-x", "ifcfg-x");
    let _ = etc::parse_nmconnection(data, "x.nmconnection");
    let _ = etc::parse_networkd(data, "x.network");
    let _ = etc::parse_resolv_conf(data);
    let _ = etc::binary_arch(data);
});
