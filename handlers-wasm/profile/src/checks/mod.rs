//! The checks, one module per profile. Each `check` reads what it needs through a [`Scan`]
//! and returns the checks that fired, with their evidence.

pub mod accounts;
pub mod filesystem;
pub mod kernel;
pub mod mac;
pub mod network;
pub mod services;
pub mod ssh;

use crate::report::{Hit, Profile};
use crate::tree::Scan;

/// Runs the checks of `profile` on one root filesystem.
pub fn run(profile: Profile, scan: &mut Scan) -> Vec<Hit> {
    match profile {
        Profile::Ssh => ssh::check(scan),
        Profile::Accounts => accounts::check(scan),
        Profile::Filesystem => filesystem::check(scan),
        Profile::Network => network::check(scan),
        Profile::Mac => mac::check(scan),
        Profile::Services => services::check(scan),
        Profile::Kernel => kernel::check(scan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    /// Every file a check reads, filled with pseudo-random bytes, text and near-text: the
    /// checks must neither panic nor loop, whatever the guest holds.
    #[test]
    fn checks_survive_arbitrary_file_contents() {
        const FILES: &[&str] = &[
            "/etc/ssh/sshd_config",
            "/etc/ssh/sshd_config.d/a.conf",
            "/etc/passwd",
            "/etc/shadow",
            "/etc/login.defs",
            "/etc/nftables.conf",
            "/etc/iptables/rules.v4",
            "/etc/ufw/ufw.conf",
            "/etc/firewalld/firewalld.conf",
            "/etc/selinux/config",
            "/etc/default/grub",
            "/etc/inetd.conf",
            "/etc/xinetd.d/x",
            "/etc/fstab",
        ];
        const ALPHABET: &[u8] = b"ab:= \t\n#{}\"'\\*?/.0-9yesnoIncludeMatchservicedisable\x00\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..200 {
            let mut t = MemTree::new();
            for path in FILES {
                let mut data = Vec::new();
                for _ in 0..(round * 7 % 300) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mostly text (two rounds in three), so parsers get past the text check.
                    let b = if round % 3 == 0 {
                        (state >> 24) as u8
                    } else {
                        ALPHABET[(state >> 24) as usize % (ALPHABET.len() - 2)]
                    };
                    data.push(b);
                }
                t.file_mode(path, &data, (state & 0o7777) as u32);
            }
            t.link("/etc/ssh/sshd_config.d/loop.conf", "/etc/ssh/sshd_config");
            let mut scan = Scan::new(&t);
            for profile in Profile::ALL {
                for hit in run(profile, &mut scan) {
                    assert!(!hit.evidence.is_empty(), "{}", hit.check.id);
                }
            }
            if let Some(text) = scan.read_text("/etc/fstab") {
                crate::mounts::parse_fstab(&text);
            }
        }
    }
}
