//! `/var/lib/dpkg/status`: RFC 822-style stanzas; a package is installed when its `Status`
//! ends in `installed` (libguestfs' rule), which is what `dpkg-query`'s `${db:Status-Status}`
//! calls `installed`.

use super::{Application, Listing, MAX_PACKAGES, split_evr};

/// Parses a whole status file.
pub fn parse_status(data: &[u8]) -> Listing {
    let text = String::from_utf8_lossy(data);
    let mut out = Listing::default();
    let mut fields: Vec<(&str, String)> = Vec::new();
    let flush = |fields: &mut Vec<(&str, String)>, out: &mut Listing| {
        if fields.is_empty() {
            return;
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        match (get("Package"), get("Status"), get("Version")) {
            (Some(name), Some(status), Some(version))
                if status.split_whitespace().last() == Some("installed") =>
            {
                if out.applications.len() >= MAX_PACKAGES {
                    out.warnings
                        .push("dpkg status: too many packages; list cut".into());
                } else {
                    let (epoch, version, release) = split_evr(version.trim());
                    out.applications.push(Application {
                        name: name.trim().to_string(),
                        epoch,
                        version,
                        release,
                        arch: get("Architecture").unwrap_or("").trim().to_string(),
                        summary: get("Description")
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_string(),
                        url: get("Homepage").unwrap_or("").trim().to_string(),
                        ..Application::default()
                    });
                }
            }
            (None, _, _) => out
                .warnings
                .push("dpkg status: a stanza without Package".into()),
            _ => {}
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields, &mut out);
        } else if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None => out
                    .warnings
                    .push("dpkg status: continuation line without a field".into()),
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim(), v.trim().to_string()));
        } else {
            out.warnings
                .push(format!("dpkg status: malformed line {:?}", truncate(line)));
        }
    }
    flush(&mut fields, &mut out);
    out.warnings.dedup();
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_only() {
        let status = b"Package: a\nStatus: install ok installed\nVersion: 1:2.0-3\nArchitecture: amd64\nDescription: short\n long\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 1\n\ngarbage\n";
        let l = parse_status(status);
        assert_eq!(l.applications.len(), 1);
        let a = &l.applications[0];
        assert_eq!(
            (
                a.name.as_str(),
                a.epoch,
                a.version.as_str(),
                a.release.as_str()
            ),
            ("a", 1, "2.0", "3")
        );
        assert_eq!(a.summary, "short");
        assert_eq!(l.warnings.len(), 1);
    }
}
