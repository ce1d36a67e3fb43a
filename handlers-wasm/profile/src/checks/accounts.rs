//! `accounts`: UID 0 accounts, empty passwords (/etc/passwd, /etc/shadow) and password aging
//! (/etc/login.defs). A malformed line is a warning and is skipped; the rest of the file counts.

use crate::report::{self, Evidence, Hit};
use crate::tree::{Scan, Text};

const PASSWD: &str = "/etc/passwd";
const SHADOW: &str = "/etc/shadow";
const LOGIN_DEFS: &str = "/etc/login.defs";
/// Longest acceptable PASS_MAX_DAYS.
pub const MAX_PASSWORD_AGE: i64 = 365;

/// The fields of the meaningful lines of a colon-separated database with `fields` fields
/// per line: (line number, line, fields). Comments, blank lines and NIS `+`/`-` entries are
/// skipped; lines with another field count are warned about and skipped.
fn records<'t>(
    scan: &mut Scan,
    text: &'t Text,
    fields: usize,
) -> Vec<(u32, &'t str, Vec<&'t str>)> {
    let mut out = Vec::new();
    for (n, line) in text.numbered() {
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with(['+', '-']) {
            continue;
        }
        let parts: Vec<&str> = line.split(':').collect();
        if parts.len() != fields || parts[0].is_empty() {
            scan.warn(
                &text.path,
                Some(n),
                format!(
                    "malformed entry: {} fields where {fields} were expected; skipped",
                    parts.len()
                ),
            );
            continue;
        }
        out.push((n, line, parts));
    }
    out
}

/// The last value of `key` in login.defs (shadow-utils keeps the last one it reads).
fn login_def<'t>(text: &'t Text, key: &str) -> Option<(u32, &'t str, &'t str)> {
    text.numbered()
        .filter_map(|(n, line)| {
            let mut it = line.split_whitespace();
            (it.next() == Some(key)).then(|| (n, line, it.next().unwrap_or("")))
        })
        .last()
}

/// An aging check on login.defs: fires with the line (or the missing key) when `bad(value)`.
fn aging(
    scan: &mut Scan,
    text: &Text,
    key: &str,
    default: i64,
    bad: impl Fn(i64) -> bool,
    check: &'static report::Check,
    hits: &mut Vec<Hit>,
) {
    match login_def(text, key) {
        Some((n, line, value)) => match value.parse::<i64>() {
            Ok(v) if bad(v) => {
                hits.push(Hit::new(check, vec![Evidence::line(&text.path, n, line)]))
            }
            Ok(_) => {}
            Err(_) => scan.warn(
                &text.path,
                Some(n),
                format!("{key} is not a number; skipped"),
            ),
        },
        None if bad(default) => hits.push(Hit::new(
            check,
            vec![Evidence::file(
                &text.path,
                format!("{key} is not set; the default is {default}"),
            )],
        )),
        None => {}
    }
}

/// Runs the `accounts` checks.
pub fn check(scan: &mut Scan) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut empty: Vec<(String, Evidence)> = Vec::new();
    if let Some(text) = scan.read_text(PASSWD) {
        for (n, line, f) in records(scan, &text, 7) {
            let (name, password, uid) = (f[0], f[1], f[2]);
            match uid.parse::<u32>() {
                Ok(0) if name != "root" => {
                    hits.push(Hit::new(
                        &report::ACC_001,
                        vec![Evidence::line(PASSWD, n, line)],
                    ));
                }
                Ok(_) => {}
                Err(_) => scan.warn(PASSWD, Some(n), "UID is not a number"),
            }
            if password.is_empty() {
                empty.push((name.to_string(), Evidence::line(PASSWD, n, line)));
            }
        }
    }
    let mut never_expire = Vec::new();
    if let Some(text) = scan.read_text(SHADOW) {
        for (n, line, f) in records(scan, &text, 9) {
            if f[1].is_empty() {
                empty.push((f[0].to_string(), Evidence::line(SHADOW, n, line)));
            }
            // A usable password (not empty, not locked with `!`/`*`) without a maximum age.
            let usable = !f[1].is_empty() && !f[1].starts_with(['!', '*']);
            let max = f[4].parse::<i64>().ok();
            if usable && max.is_none_or(|m| !(0..=MAX_PASSWORD_AGE).contains(&m)) {
                never_expire.push(Hit::new(
                    &report::ACC_005,
                    vec![Evidence::line(SHADOW, n, line)],
                ));
            }
        }
    }
    // One finding per account, with every line that shows it.
    let mut names: Vec<&String> = Vec::new();
    for (name, _) in &empty {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let evidence = empty
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .collect();
        hits.push(Hit::new(&report::ACC_002, evidence));
    }
    hits.extend(never_expire);
    if let Some(text) = scan.read_text(LOGIN_DEFS) {
        aging(
            scan,
            &text,
            "PASS_MAX_DAYS",
            99999,
            |v| !(0..=MAX_PASSWORD_AGE).contains(&v),
            &report::ACC_003,
            &mut hits,
        );
        aging(
            scan,
            &text,
            "PASS_MIN_DAYS",
            0,
            |v| v < 1,
            &report::ACC_004,
            &mut hits,
        );
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    #[test]
    fn uid0_empty_passwords_and_aging() {
        let mut t = MemTree::new();
        t.file(
            PASSWD,
            "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n\
             guest::1001:1001::/home/guest:/bin/sh\nbroken:x:12\n",
        );
        t.file(
            SHADOW,
            "root:$6$abc:19000:0:99999:7:::\nguest::19000:0:99999:7:::\nmallory:$6$x",
        );
        t.file(
            LOGIN_DEFS,
            "# PASS_MAX_DAYS 10\nPASS_MAX_DAYS\t90\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\n",
        );
        let mut scan = Scan::new(&t);
        let hits = check(&mut scan);
        let ids: Vec<&str> = hits.iter().map(|h| h.check.id).collect();
        assert_eq!(ids, ["ACC-001", "ACC-002", "ACC-005", "ACC-003", "ACC-004"]);
        assert_eq!(
            hits[2].evidence[0].line,
            Some(1),
            "root's hash never expires"
        );
        assert_eq!(
            hits[0].evidence,
            [Evidence::line(PASSWD, 2, "toor:x:0:0::/root:/bin/sh")]
        );
        assert_eq!(hits[1].evidence.len(), 2);
        assert_eq!(hits[1].evidence[1].line, Some(2));
        assert_eq!(hits[3].evidence[0].line, Some(3));
        let w = scan.into_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!((w[0].path.as_str(), w[0].line), (PASSWD, Some(4)));
        assert_eq!((w[1].path.as_str(), w[1].line), (SHADOW, Some(3)));
    }

    #[test]
    fn unset_aging_uses_defaults() {
        let mut t = MemTree::new();
        t.file(LOGIN_DEFS, "UMASK 022\n");
        let mut scan = Scan::new(&t);
        let hits = check(&mut scan);
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| h.evidence[0].line.is_none()));
    }
}
