//! `ssh`: the OpenSSH server's effective global settings, read as sshd reads them.
//!
//! sshd takes the *first* value it reads for a keyword; `Include` files are read in place
//! (globs sorted, relative paths under /etc/ssh); directives after a `Match` line apply only to
//! the connections that match, up to the next `Match` or the end of the file that holds it;
//! `Match all` applies to every connection again. Keywords are case-insensitive. A keyword
//! set nowhere globally has OpenSSH's default.

use crate::report::{self, Evidence, Hit};
use crate::tree::{Scan, join};

const CONFIG: &str = "/etc/ssh/sshd_config";
/// sshd refuses deeper Include nesting; so do we.
const MAX_INCLUDE_DEPTH: u32 = 16;
/// Include files read per root, all together.
const MAX_INCLUDED_FILES: usize = 256;

/// One directive as sshd would see it.
#[derive(Debug, Clone)]
struct Directive {
    keyword: String,
    value: String,
    path: String,
    line: u32,
    text: String,
    /// False inside a Match block (other than `Match all`).
    global: bool,
}

/// Splits a config line into keyword and arguments (`Keyword value`, `Keyword=value`).
fn split_directive(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    Some((keyword, rest.to_string()))
}

/// The first whitespace-separated argument, without quotes.
fn first_arg(value: &str) -> &str {
    value
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches('"')
}

/// Matches `name` against a glob of `*`, `?` and literal characters. Written here because the
/// glob crates walk the host filesystem, and this one must match names listed from the guest.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) && p[pi] != '*' {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The files an Include argument names, in the order sshd reads them.
fn expand_include(scan: &mut Scan, arg: &str) -> Vec<String> {
    let arg = arg.trim_matches('"');
    let path = if arg.starts_with('/') {
        arg.to_string()
    } else {
        join("/etc/ssh", arg)
    };
    let (dir, name) = match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => return Vec::new(),
    };
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    if dir.contains(['*', '?']) {
        scan.warn(
            &path,
            None,
            "Include with a wildcard in a directory name is not followed",
        );
        return Vec::new();
    }
    let Some(entries) = scan.list_dir(dir) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter(|e| !e.name.starts_with('.') || name.starts_with('.'))
        .filter(|e| glob_match(name, &e.name))
        .map(|e| join(dir, &e.name))
        .collect()
}

struct Reader<'s, 'a> {
    scan: &'s mut Scan<'a>,
    directives: Vec<Directive>,
    files: usize,
}

impl Reader<'_, '_> {
    /// Reads `path` and what it includes; false when `path` itself could not be read.
    fn read(&mut self, path: &str, depth: u32, mut global: bool) -> bool {
        if depth > MAX_INCLUDE_DEPTH {
            self.scan
                .warn(path, None, "Include nested too deeply; not followed");
            return false;
        }
        if self.files >= MAX_INCLUDED_FILES {
            self.scan
                .warn(path, None, "too many Include files; not read");
            return false;
        }
        self.files += 1;
        let Some(text) = self.scan.read_text(path) else {
            return false;
        };
        for (n, line) in text.numbered() {
            let Some((keyword, value)) = split_directive(line) else {
                continue;
            };
            match keyword.as_str() {
                "include" => {
                    for arg in value.split_whitespace() {
                        for file in expand_include(self.scan, arg) {
                            // The Match state inside an included file ends with that file.
                            let _ = self.read(&file, depth + 1, global);
                        }
                    }
                }
                "match" => global = first_arg(&value).eq_ignore_ascii_case("all"),
                _ => self.directives.push(Directive {
                    keyword,
                    value,
                    path: text.path.clone(),
                    line: n,
                    text: line.to_string(),
                    global,
                }),
            }
        }
        true
    }
}

/// The effective global settings of sshd.
struct Settings {
    directives: Vec<Directive>,
}

impl Settings {
    /// The first global directive for `keyword` (lowercase).
    fn get(&self, keyword: &str) -> Option<&Directive> {
        self.directives
            .iter()
            .find(|d| d.global && d.keyword == keyword)
    }

    /// The directive for `keyword` if its first argument is `yes`.
    fn yes(&self, keyword: &str) -> Option<&Directive> {
        self.get(keyword)
            .filter(|d| first_arg(&d.value).eq_ignore_ascii_case("yes"))
    }
}

fn evidence(d: &Directive) -> Vec<Evidence> {
    vec![Evidence::line(&d.path, d.line, &d.text)]
}

/// Runs the `ssh` checks.
pub fn check(scan: &mut Scan) -> Vec<Hit> {
    if !scan.exists(CONFIG) {
        return Vec::new();
    }
    let mut reader = Reader {
        scan,
        directives: Vec::new(),
        files: 0,
    };
    if !reader.read(CONFIG, 0, true) {
        // Unreadable or not text (already warned): nothing can be said about sshd.
        return Vec::new();
    }
    let settings = Settings {
        directives: reader.directives,
    };
    let mut hits = Vec::new();
    // Default since OpenSSH 7.0: prohibit-password.
    if let Some(d) = settings.yes("permitrootlogin") {
        hits.push(Hit::new(&report::SSH_001, evidence(d)));
    }
    // Default: yes.
    match settings.get("passwordauthentication") {
        Some(d) if first_arg(&d.value).eq_ignore_ascii_case("yes") => {
            hits.push(Hit::new(&report::SSH_002, evidence(d)));
        }
        Some(_) => {}
        None => hits.push(Hit::new(
            &report::SSH_002,
            vec![Evidence::file(
                CONFIG,
                "PasswordAuthentication is not set; the OpenSSH default is yes",
            )],
        )),
    }
    // Default: no.
    if let Some(d) = settings.yes("permitemptypasswords") {
        hits.push(Hit::new(&report::SSH_003, evidence(d)));
    }
    // Default: no.
    if let Some(d) = settings.yes("x11forwarding") {
        hits.push(Hit::new(&report::SSH_004, evidence(d)));
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.check.id).collect()
    }

    #[test]
    fn first_global_value_wins_and_match_blocks_do_not_count() {
        let mut t = MemTree::new();
        t.file(
            CONFIG,
            "# comment\nInclude sshd_config.d/*.conf\nPermitRootLogin=no\n\
             PasswordAuthentication yes\nMatch User bob\n  PermitRootLogin yes\n\
             X11Forwarding yes\n",
        );
        t.file(
            "/etc/ssh/sshd_config.d/10-a.conf",
            "passwordauthentication no\n",
        );
        t.file(
            "/etc/ssh/sshd_config.d/20-b.conf",
            "Match Address 10.0.0.0/8\nPermitEmptyPasswords yes\n",
        );
        t.file("/etc/ssh/sshd_config.d/30-c.txt", "PermitRootLogin yes\n");
        let mut scan = Scan::new(&t);
        let hits = check(&mut scan);
        assert!(ids(&hits).is_empty(), "{hits:?}");
        assert!(scan.into_warnings().is_empty());
    }

    #[test]
    fn include_order_and_evidence_lines() {
        let mut t = MemTree::new();
        t.file(
            CONFIG,
            "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n\
             PermitRootLogin no\n",
        );
        t.file(
            "/etc/ssh/sshd_config.d/50-cloud-init.conf",
            "\n  PasswordAuthentication  yes\n",
        );
        t.file(
            "/etc/ssh/sshd_config.d/60-root.conf",
            "PermitRootLogin yes\nMatch all\nX11Forwarding yes\n",
        );
        let mut scan = Scan::new(&t);
        let hits = check(&mut scan);
        assert_eq!(ids(&hits), ["SSH-001", "SSH-002", "SSH-004"]);
        assert_eq!(
            hits[1].evidence,
            [Evidence::line(
                "/etc/ssh/sshd_config.d/50-cloud-init.conf",
                2,
                "PasswordAuthentication  yes"
            )]
        );
        assert_eq!(hits[0].evidence[0].line, Some(1));
    }

    #[test]
    fn defaults_apply_when_unset() {
        let mut t = MemTree::new();
        t.file(CONFIG, "Port 22\n");
        let mut scan = Scan::new(&t);
        let hits = check(&mut scan);
        assert_eq!(ids(&hits), ["SSH-002"]);
        assert_eq!(hits[0].evidence[0].line, None);
    }

    #[test]
    fn garbage_config_is_a_warning_not_a_finding() {
        let mut t = MemTree::new();
        t.file_mode(CONFIG, b"\x7fELF\x00\x00garbage\xff", 0o644);
        let mut scan = Scan::new(&t);
        assert!(check(&mut scan).is_empty());
        let w = scan.into_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, CONFIG);
    }

    #[test]
    fn include_loops_are_bounded() {
        let mut t = MemTree::new();
        t.file(CONFIG, "Include /etc/ssh/sshd_config\n");
        let mut scan = Scan::new(&t);
        check(&mut scan);
        assert!(!scan.into_warnings().is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.conf", "50-cloud-init.conf"));
        assert!(!glob_match("*.conf", "50.conf.bak"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("*a*b", "xxaxxb"));
    }
}
