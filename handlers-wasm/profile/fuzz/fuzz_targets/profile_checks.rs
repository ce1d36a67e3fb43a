//! Every guest file the profile checks parse, taken from the fuzzer's input: the input is
//! split at 0x1e bytes into the contents of the files below, in order, and every profile runs
//! over the resulting tree. The checks must never panic, loop or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profile::checks;
use profile::report::Profile;
use profile::tree::{Scan, mem::MemTree};

const FILES: &[&str] = &[
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/a.conf",
    "/etc/passwd",
    "/etc/shadow",
    "/etc/login.defs",
    "/etc/nftables.conf",
    "/etc/iptables/rules.v4",
    "/etc/ufw/ufw.conf",
    "/etc/selinux/config",
    "/etc/default/grub",
    "/etc/inetd.conf",
    "/etc/xinetd.d/x",
    "/etc/fstab",
];

fuzz_target!(|data: &[u8]| {
    let mut tree = MemTree::new();
    for (path, content) in FILES.iter().zip(data.split(|&b| b == 0x1e)) {
        let mode = content.first().map_or(0o644, |&b| u32::from(b) << 4);
        tree.file_mode(path, content, mode);
    }
    tree.link("/etc/ssh/sshd_config.d/loop.conf", "/etc/ssh/sshd_config");
    let mut scan = Scan::new(&tree);
    for profile in Profile::ALL {
        let _ = checks::run(profile, &mut scan);
    }
    if let Some(text) = scan.read_text("/etc/fstab") {
        let _ = profile::mounts::parse_fstab(&text);
    }
});
