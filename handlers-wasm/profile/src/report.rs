//! What the handler reports: the catalogue of checks (id, profile, severity, title,
//! remediation), findings with their evidence, the summary by severity and the risk score.
//! `docs/profile.md` describes the same catalogue; a unit test keeps the two in step.

use serde::Serialize;

/// How bad a finding is. Ordered: `Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The name used in payloads and output.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Points a finding of this severity adds to the risk score.
    pub fn weight(self) -> u32 {
        match self {
            Severity::Low => 2,
            Severity::Medium => 5,
            Severity::High => 10,
            Severity::Critical => 25,
        }
    }
}

/// A group of checks the payload can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Ssh,
    Accounts,
    Filesystem,
    Network,
    Mac,
    Services,
    Kernel,
}

impl Profile {
    /// Every profile, in the order they run.
    pub const ALL: [Profile; 7] = [
        Profile::Ssh,
        Profile::Accounts,
        Profile::Filesystem,
        Profile::Network,
        Profile::Mac,
        Profile::Services,
        Profile::Kernel,
    ];

    /// The name used in payloads and output.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Ssh => "ssh",
            Profile::Accounts => "accounts",
            Profile::Filesystem => "filesystem",
            Profile::Network => "network",
            Profile::Mac => "mac",
            Profile::Services => "services",
            Profile::Kernel => "kernel",
        }
    }
}

/// One check: its stable id and what it reports.
#[derive(Debug)]
pub struct Check {
    pub id: &'static str,
    pub profile: Profile,
    pub severity: Severity,
    pub title: &'static str,
    pub remediation: &'static str,
}

macro_rules! checks {
    ($($name:ident = $id:literal, $profile:ident, $sev:ident, $title:literal, $fix:literal;)*) => {
        $(
            #[doc = $title]
            pub const $name: Check = Check {
                id: $id,
                profile: Profile::$profile,
                severity: Severity::$sev,
                title: $title,
                remediation: $fix,
            };
        )*
        /// Every check, in id order.
        pub const CATALOG: &[Check] = &[$($name),*];
    };
}

checks! {
    SSH_001 = "SSH-001", Ssh, High, "SSH permits root login",
        "Set `PermitRootLogin no` (or `prohibit-password`) in /etc/ssh/sshd_config before any Match block and any Include that sets it, then reload sshd.";
    SSH_002 = "SSH-002", Ssh, Medium, "SSH allows password authentication",
        "Set `PasswordAuthentication no` and use public-key authentication; the first value sshd reads wins, so check the drop-ins under /etc/ssh/sshd_config.d too.";
    SSH_003 = "SSH-003", Ssh, High, "SSH permits empty passwords",
        "Set `PermitEmptyPasswords no` (the default) in /etc/ssh/sshd_config.";
    SSH_004 = "SSH-004", Ssh, Low, "SSH X11 forwarding is enabled",
        "Set `X11Forwarding no` unless users need X11 forwarding.";
    ACC_001 = "ACC-001", Accounts, Critical, "Account other than root has UID 0",
        "Give the account its own non-zero UID or remove it; grant administrative rights through sudo instead.";
    ACC_002 = "ACC-002", Accounts, Critical, "Account has an empty password",
        "Set a password or lock the account (`passwd -l NAME`); an empty password field lets anyone log in as that account.";
    ACC_003 = "ACC-003", Accounts, Medium, "Password maximum age is over 365 days",
        "Set `PASS_MAX_DAYS 365` or less in /etc/login.defs, and `chage -M` for existing accounts.";
    ACC_004 = "ACC-004", Accounts, Low, "Password minimum age is zero",
        "Set `PASS_MIN_DAYS 1` or more in /etc/login.defs so a new password cannot be changed straight back.";
    ACC_005 = "ACC-005", Accounts, Low, "Account password never expires",
        "Set a maximum password age for the account (`chage -M 365 NAME`) or lock the password if it is not used.";
    FS_001 = "FS-001", Filesystem, High, "World-writable file under /etc",
        "Remove write permission for others (`chmod o-w PATH`) and find out how it was granted.";
    FS_002 = "FS-002", Filesystem, High, "SUID/SGID binary outside the usual set",
        "Check where the binary came from; remove it, or clear the bits (`chmod u-s,g-s PATH`) if it does not need them.";
    FS_003 = "FS-003", Filesystem, High, "/etc/shadow is readable by others",
        "Restrict /etc/shadow to `0640` owned by root and group shadow (or `0000` as on Red Hat systems).";
    NET_001 = "NET-001", Network, Medium, "No host firewall is configured",
        "Configure a firewall that drops unsolicited inbound traffic (nftables, iptables, ufw or firewalld) and enable it at boot.";
    MAC_001 = "MAC-001", Mac, High, "SELinux is disabled",
        "Set `SELINUX=enforcing` in /etc/selinux/config, relabel (`touch /.autorelabel`) and reboot.";
    MAC_002 = "MAC-002", Mac, Medium, "SELinux is in permissive mode",
        "Set `SELINUX=enforcing` in /etc/selinux/config once the audit log shows no denials that matter.";
    MAC_003 = "MAC-003", Mac, High, "Kernel command line disables mandatory access control",
        "Remove `apparmor=0`, `selinux=0` and `enforcing=0` from the GRUB_CMDLINE_LINUX variables in /etc/default/grub and regenerate the GRUB configuration.";
    MAC_004 = "MAC-004", Mac, Medium, "No mandatory access control is configured",
        "Install and enable SELinux or AppArmor, with profiles for the services the system exposes.";
    SVC_001 = "SVC-001", Services, High, "Telnet server is enabled",
        "Disable and remove the telnet server (inetd.conf, xinetd.d, systemd units); use SSH instead.";
    SVC_002 = "SVC-002", Services, High, "rsh, rlogin or rexec server is enabled",
        "Disable and remove the r-services (inetd.conf, xinetd.d, systemd units); use SSH instead.";
    SVC_003 = "SVC-003", Services, Medium, "TFTP server is enabled",
        "Disable the TFTP server unless the system serves network boot; if it does, confine it to a read-only directory and a trusted network.";
    KRN_001 = "KRN-001", Kernel, High, "Newest installed kernel is outdated",
        "Install a kernel from a maintained series (5.10 or later longterm, or the distribution's current kernel) and remove the old ones.";
}

/// Where a finding was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Absolute path inside the guest filesystem.
    pub path: String,
    /// 1-based line number, for evidence that is a line of a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The line itself (trimmed), or what was seen about the path.
    pub text: String,
}

impl Evidence {
    /// Evidence that is line `line` of `path`.
    pub fn line(path: &str, line: u32, text: &str) -> Self {
        Evidence {
            path: path.to_string(),
            line: Some(line),
            text: text.trim().to_string(),
        }
    }

    /// Evidence about `path` as a whole.
    pub fn file(path: &str, text: impl Into<String>) -> Self {
        Evidence {
            path: path.to_string(),
            line: None,
            text: text.into(),
        }
    }
}

/// A check that fired on one root filesystem.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub profile: Profile,
    /// The image and volume of the root filesystem it was found on.
    pub image: String,
    pub volume: String,
    pub evidence: Vec<Evidence>,
    pub remediation: &'static str,
}

/// A finding before it is tied to a root filesystem.
#[derive(Clone, Debug)]
pub struct Hit {
    pub check: &'static Check,
    pub evidence: Vec<Evidence>,
}

impl Hit {
    /// A hit of `check` with `evidence`.
    pub fn new(check: &'static Check, evidence: Vec<Evidence>) -> Self {
        Hit { check, evidence }
    }
}

/// Findings counted by severity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub total: u32,
}

impl Summary {
    /// Counts `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let mut s = Summary::default();
        for f in findings {
            match f.severity {
                Severity::Critical => s.critical += 1,
                Severity::High => s.high += 1,
                Severity::Medium => s.medium += 1,
                Severity::Low => s.low += 1,
            }
            s.total += 1;
        }
        s
    }
}

/// The risk score: the sum of the findings' severity weights (critical 25, high 10, medium 5,
/// low 2), capped at 100. Documented in `docs/profile.md`.
pub fn risk_score(findings: &[Finding]) -> u32 {
    findings
        .iter()
        .map(|f| f.severity.weight())
        .sum::<u32>()
        .min(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_ids_are_unique_and_sorted_within_profiles() {
        let mut ids: Vec<&str> = CATALOG.iter().map(|c| c.id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    /// Every check is documented with the same profile, severity, title and remediation.
    #[test]
    fn docs_describe_every_check() {
        let doc = include_str!("../../../docs/profile.md");
        for c in CATALOG {
            let head = format!("### {}", c.id);
            let start = doc
                .find(&head)
                .unwrap_or_else(|| panic!("{} is not documented", c.id));
            let section = &doc[start..];
            let section = &section[..section[4..].find("\n### ").map_or(section.len(), |i| i + 4)];
            for (what, want) in [
                ("title", c.title.to_string()),
                ("profile", format!("`{}`", c.profile.name())),
                ("severity", format!("`{}`", c.severity.name())),
                ("remediation", c.remediation.to_string()),
            ] {
                let line = format!("- {what}: {want}\n");
                assert!(section.contains(&line), "{}: docs lack {line:?}", c.id);
            }
        }
    }

    /// The published output schema lists exactly the catalogue's ids.
    #[test]
    fn schema_lists_every_check() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../../docs/schemas/profile-output.schema.json"
        ))
        .unwrap();
        let ids: Vec<&str> = schema["$defs"]["finding"]["properties"]["id"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(ids, CATALOG.iter().map(|c| c.id).collect::<Vec<_>>());
    }

    #[test]
    fn risk_score_is_capped() {
        let f = |severity| Finding {
            id: "X",
            title: "",
            severity,
            profile: Profile::Ssh,
            image: String::new(),
            volume: String::new(),
            evidence: Vec::new(),
            remediation: "",
        };
        assert_eq!(risk_score(&[]), 0);
        assert_eq!(risk_score(&[f(Severity::High), f(Severity::Low)]), 12);
        assert_eq!(risk_score(&vec![f(Severity::Critical); 5]), 100);
    }
}
