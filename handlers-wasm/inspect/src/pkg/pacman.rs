//! pacman's local database: `/var/lib/pacman/local/NAME-VERSION/desc`, sections `%KEY%`
//! followed by value lines and a blank line. `%NAME%`, `%VERSION%` (`[epoch:]pkgver-pkgrel`) and
//! `%ARCH%` are required; `%DESC%` is the one-line summary.

use super::{Application, split_evr};

/// Parses one `desc` file; `None` when it names no package.
pub fn parse_desc(data: &[u8]) -> Option<Application> {
    let text = String::from_utf8_lossy(data);
    let mut section = "";
    let mut app = Application::default();
    let mut evr = None;
    for line in text.lines() {
        let line = line.trim_end();
        if line.len() > 2 && line.starts_with('%') && line.ends_with('%') {
            section = &line[1..line.len() - 1];
            continue;
        }
        if line.is_empty() {
            section = "";
            continue;
        }
        let first = |field: &mut String| {
            if field.is_empty() {
                *field = line.trim().to_string();
            }
        };
        match section {
            "NAME" => first(&mut app.name),
            "VERSION" if evr.is_none() => evr = Some(line.trim().to_string()),
            "DESC" => first(&mut app.summary),
            "URL" => first(&mut app.url),
            "ARCH" => first(&mut app.arch),
            _ => {}
        }
    }
    // libguestfs' rule: name, version (with a release) and arch are mandatory; without them
    // the entry is damaged.
    let (epoch, version, release) = split_evr(&evr?);
    app.epoch = epoch;
    app.version = version;
    app.release = release;
    let complete = !app.name.is_empty()
        && !app.arch.is_empty()
        && !app.version.is_empty()
        && !app.release.is_empty();
    complete.then_some(app)
}

#[cfg(test)]
mod tests {
    #[test]
    fn desc() {
        let a = super::parse_desc(b"%NAME%\nzlib\n\n%VERSION%\n1:1.3-2\n\n%DESC%\nCompression library\n\n%ARCH%\nx86_64\n").unwrap();
        assert!(super::parse_desc(b"%NAME%\nzlib\n\n%VERSION%\n1.3\n\n%ARCH%\nx86_64\n").is_none());
        assert_eq!(
            (
                a.name.as_str(),
                a.epoch,
                a.version.as_str(),
                a.release.as_str()
            ),
            ("zlib", 1, "1.3", "2")
        );
        assert_eq!(a.summary, "Compression library");
        assert!(super::parse_desc(b"%%\n\n%").is_none());
    }
}
