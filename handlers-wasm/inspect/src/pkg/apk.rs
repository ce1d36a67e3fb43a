//! Alpine's `/lib/apk/db/installed`: stanzas of `X:value` lines (`P` name, `V` version,
//! `A` arch, `T` description, `U` url), separated by blank lines. A stanza needs `P` and `V`.

use super::{Application, Listing, MAX_PACKAGES};

/// Parses a whole installed database.
pub fn parse_installed(data: &[u8]) -> Listing {
    let text = String::from_utf8_lossy(data);
    let mut out = Listing::default();
    let mut app = Application::default();
    let flush = |app: &mut Application, out: &mut Listing| {
        let done = std::mem::take(app);
        if done.name.is_empty() || done.version.is_empty() {
            return;
        }
        if out.applications.len() >= MAX_PACKAGES {
            out.warnings
                .push("apk installed: too many packages; list cut".into());
            return;
        }
        out.applications.push(done);
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut app, &mut out);
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match k {
            "P" => app.name = v,
            "V" => {
                // libguestfs' rule: an optional `epoch:`, then the release after the first
                // `-`, without the `r` of apk's `-rN`.
                let (epoch, rest) = match v.split_once(':') {
                    Some((e, rest)) => (e.parse().ok(), rest),
                    None => (Some(0), v.as_str()),
                };
                let Some(epoch) = epoch else {
                    out.warnings
                        .push(format!("apk installed: bad version {v:?}"));
                    continue;
                };
                app.epoch = epoch;
                match rest.split_once('-') {
                    Some((ver, rel)) => {
                        app.version = ver.to_string();
                        app.release = rel.strip_prefix('r').unwrap_or(rel).to_string();
                    }
                    None => app.version = rest.to_string(),
                }
            }
            "A" => app.arch = v,
            "T" => app.summary = v,
            "U" => app.url = v,
            _ => {}
        }
    }
    flush(&mut app, &mut out);
    out.warnings.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn installed() {
        let l = super::parse_installed(b"C:Q1x\nP:musl\nV:1.2.4-r2\nA:x86_64\nT:the musl c library\n\nP:busybox\nV:1.36.1-r5\n");
        assert_eq!(l.applications.len(), 2);
        assert_eq!(l.applications[0].version, "1.2.4");
        assert_eq!(l.applications[0].release, "2");
    }
}
