//! `services`: legacy clear-text services (telnet, rsh/rlogin/rexec, tftp) enabled in
//! /etc/inetd.conf (and /etc/inetd.d), xinetd (/etc/xinetd.conf, /etc/xinetd.d) or systemd
//! (unit links in /etc/systemd/system/*.wants). One finding per service, with every place that
//! enables it as evidence.

use crate::report::{self, Check, Evidence, Hit};
use crate::tree::{Kind, Scan, join};

/// Which check a service name belongs to: inetd/xinetd service names (as in /etc/services) and
/// systemd unit names without their suffix.
fn classify(name: &str) -> Option<&'static Check> {
    let name = name.rsplit(':').next().unwrap_or(name);
    match name {
        "telnet" | "telnetd" | "in.telnetd" | "inetutils-telnetd" | "telnet-server" => {
            Some(&report::SVC_001)
        }
        "shell" | "login" | "exec" | "rsh" | "rshd" | "in.rshd" | "rlogin" | "rlogind"
        | "in.rlogind" | "rexec" | "rexecd" | "in.rexecd" => Some(&report::SVC_002),
        "tftp" | "tftpd" | "in.tftpd" | "tftp-server" | "tftpd-hpa" | "atftpd" => {
            Some(&report::SVC_003)
        }
        _ => None,
    }
}

/// The service a systemd unit file name runs, if it is one of ours.
fn classify_unit(file: &str) -> Option<&'static Check> {
    let base = file
        .strip_suffix(".socket")
        .or_else(|| file.strip_suffix(".service"))?;
    classify(base.trim_end_matches('@'))
}

fn inetd(scan: &mut Scan, path: &str, found: &mut Vec<(&'static Check, Evidence)>) {
    let Some(text) = scan.read_text(path) else {
        return;
    };
    for (n, line) in text.numbered() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split_whitespace().collect();
        let server = fields
            .get(6)
            .or(fields.get(5))
            .map(|s| s.rsplit('/').next().unwrap_or(s));
        let check = classify(fields[0]).or_else(|| server.and_then(classify));
        if let Some(check) = check {
            found.push((check, Evidence::line(path, n, line)));
        }
    }
}

fn xinetd(scan: &mut Scan, path: &str, found: &mut Vec<(&'static Check, Evidence)>) {
    let Some(text) = scan.read_text(path) else {
        return;
    };
    // (check, the `service` line, a `disable = no` line, disabled)
    let mut current: Option<(&'static Check, Evidence, Option<Evidence>, bool)> = None;
    for (n, line) in text.numbered() {
        let l = line.trim();
        if l.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = l.split_whitespace().collect();
        if words.first() == Some(&"service") {
            current = words
                .get(1)
                .and_then(|name| classify(name))
                .map(|c| (c, Evidence::line(path, n, line), None, false));
        } else if let Some((_, _, enable, disabled)) = current.as_mut()
            && let Some((key, value)) = l.split_once('=')
            && key.trim() == "disable"
        {
            *disabled = value.trim() == "yes";
            if !*disabled {
                *enable = Some(Evidence::line(path, n, line));
            }
        } else if l.starts_with('}')
            && let Some((check, service, enable, disabled)) = current.take()
            && !disabled
        {
            found.push((check, enable.unwrap_or(service)));
        }
    }
}

/// Runs the `services` checks.
pub fn check(scan: &mut Scan) -> Vec<Hit> {
    let mut found = Vec::new();
    inetd(scan, "/etc/inetd.conf", &mut found);
    for dir in ["/etc/inetd.d"] {
        for e in scan.list_dir(dir).unwrap_or_default() {
            if e.kind == Kind::File {
                inetd(scan, &join(dir, &e.name), &mut found);
            }
        }
    }
    xinetd(scan, "/etc/xinetd.conf", &mut found);
    for e in scan.list_dir("/etc/xinetd.d").unwrap_or_default() {
        if e.kind == Kind::File {
            xinetd(scan, &join("/etc/xinetd.d", &e.name), &mut found);
        }
    }
    let units = "/etc/systemd/system";
    for wants in scan.list_dir(units).unwrap_or_default() {
        if wants.kind != Kind::Dir || !wants.name.ends_with(".wants") {
            continue;
        }
        let dir = join(units, &wants.name);
        for e in scan.list_dir(&dir).unwrap_or_default() {
            if let Some(check) = classify_unit(&e.name) {
                let path = join(&dir, &e.name);
                let text = match e.kind {
                    Kind::Symlink => scan.read_link(&path).unwrap_or_default(),
                    _ => String::new(),
                };
                let text = if text.is_empty() {
                    "enabled unit".to_string()
                } else {
                    text
                };
                found.push((check, Evidence::file(&path, text)));
            }
        }
    }
    let mut hits = Vec::new();
    for check in [&report::SVC_001, &report::SVC_002, &report::SVC_003] {
        let evidence: Vec<Evidence> = found
            .iter()
            .filter(|(c, _)| c.id == check.id)
            .map(|(_, e)| e.clone())
            .collect();
        if !evidence.is_empty() {
            hits.push(Hit::new(check, evidence));
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::mem::MemTree;

    #[test]
    fn inetd_xinetd_and_systemd() {
        let mut t = MemTree::new();
        t.file(
            "/etc/inetd.conf",
            "# telnet stream tcp nowait root /usr/sbin/tcpd /usr/sbin/in.telnetd\n\
             telnet  stream  tcp nowait  root /usr/sbin/tcpd /usr/sbin/in.telnetd\n\
             ftp stream tcp nowait root /usr/sbin/tcpd /usr/sbin/in.ftpd\n\
             127.0.0.1:shell stream tcp nowait root /usr/sbin/tcpd /usr/sbin/in.rshd\n",
        );
        t.file(
            "/etc/xinetd.d/tftp",
            "service tftp\n{\n\tsocket_type = dgram\n\tdisable\t= no\n}\n",
        );
        t.file(
            "/etc/xinetd.d/rlogin",
            "service login\n{\n\tdisable = yes\n}\n",
        );
        t.link(
            "/etc/systemd/system/sockets.target.wants/telnet.socket",
            "/lib/systemd/system/telnet.socket",
        );
        let hits = check(&mut Scan::new(&t));
        type Place = (String, Option<u32>);
        let got: Vec<(&str, Vec<Place>)> = hits
            .iter()
            .map(|h| {
                (
                    h.check.id,
                    h.evidence
                        .iter()
                        .map(|e| (e.path.clone(), e.line))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "SVC-001",
                    vec![
                        ("/etc/inetd.conf".into(), Some(2)),
                        (
                            "/etc/systemd/system/sockets.target.wants/telnet.socket".into(),
                            None
                        )
                    ]
                ),
                ("SVC-002", vec![("/etc/inetd.conf".into(), Some(4))]),
                ("SVC-003", vec![("/etc/xinetd.d/tftp".into(), Some(4))]),
            ]
        );
        assert_eq!(
            hits[0].evidence[1].text,
            "/lib/systemd/system/telnet.socket"
        );
    }
}
