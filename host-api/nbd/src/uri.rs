//! NBD URIs (the subset of the NBD URI specification a read-only client needs):
//! `nbd://host[:port]/export` and `nbd+unix:///export?socket=PATH`.

use std::fmt;
use std::path::PathBuf;

/// The IANA-assigned NBD port.
pub const DEFAULT_PORT: u16 = 10809;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// TCP host (name or IP literal, without brackets) and port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A unix-domain socket path.
    Unix(PathBuf),
}

/// A parsed NBD URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    /// Server address.
    pub address: Address,
    /// Export name (may be empty: the server's default export).
    pub export: String,
}

/// Why a URI was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError(pub String);

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid NBD URI: {}", self.0)
    }
}

impl std::error::Error for UriError {}

fn bad<T>(msg: impl Into<String>) -> Result<T, UriError> {
    Err(UriError(msg.into()))
}

impl NbdUri {
    /// Parses `nbd://host[:port]/export` or `nbd+unix:///export?socket=PATH`. TLS schemes
    /// (`nbds`, `nbds+unix`) and other query parameters are refused.
    pub fn parse(text: &str) -> Result<NbdUri, UriError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad(format!("{text:?} has no scheme"));
        };
        if rest.contains('#') {
            return bad("fragments are not allowed");
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let export = percent_decode(path)?;
        match scheme {
            "nbd" => {
                if let Some(q) = query {
                    return bad(format!("unsupported query {q:?} for nbd://"));
                }
                let (host, port) = split_host_port(authority)?;
                Ok(NbdUri {
                    address: Address::Tcp { host, port },
                    export,
                })
            }
            "nbd+unix" => {
                if !authority.is_empty() {
                    return bad(format!("nbd+unix:// takes no host, got {authority:?}"));
                }
                let mut socket = None;
                for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                    match pair.split_once('=') {
                        Some(("socket", v)) if socket.is_none() => {
                            socket = Some(percent_decode(v)?);
                        }
                        Some(("socket", _)) => return bad("socket= given twice"),
                        _ => return bad(format!("unsupported query parameter {pair:?}")),
                    }
                }
                match socket {
                    Some(s) if !s.is_empty() => Ok(NbdUri {
                        address: Address::Unix(PathBuf::from(s)),
                        export,
                    }),
                    _ => bad("nbd+unix:// needs ?socket=PATH"),
                }
            }
            "nbds" | "nbds+unix" => bad("TLS (nbds) is not supported"),
            other => bad(format!("unknown scheme {other:?} (want nbd or nbd+unix)")),
        }
    }
}

impl std::str::FromStr for NbdUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        NbdUri::parse(s)
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), UriError> {
    if authority.contains('@') {
        return bad("user info is not allowed");
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return bad("unterminated IPv6 literal");
        };
        match after {
            "" => (h, None),
            p if p.starts_with(':') => (h, Some(&p[1..])),
            _ => return bad(format!("junk after IPv6 literal: {after:?}")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return bad("nbd:// needs a host");
    }
    if host.contains(|c: char| {
        c.is_whitespace() || c == '/' || c == ':' && !authority.starts_with('[')
    }) {
        return bad(format!("bad host {host:?}"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse() {
            Ok(0) | Err(_) => return bad(format!("bad port {p:?}")),
            Ok(n) => n,
        },
        Some(p) => return bad(format!("bad port {p:?}")),
    };
    Ok((host.to_string(), port))
}

fn percent_decode(s: &str) -> Result<String, UriError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => out.push(v),
                None => return bad(format!("bad percent escape in {s:?}")),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriError(format!("{s:?} does not decode to UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, export: &str) -> NbdUri {
        NbdUri {
            address: Address::Tcp {
                host: host.into(),
                port,
            },
            export: export.into(),
        }
    }

    #[test]
    fn parses_tcp_and_unix() {
        assert_eq!(NbdUri::parse("nbd://h/e").unwrap(), tcp("h", 10809, "e"));
        assert_eq!(
            NbdUri::parse("nbd://127.0.0.1:1234/a%20b").unwrap(),
            tcp("127.0.0.1", 1234, "a b")
        );
        assert_eq!(
            NbdUri::parse("nbd://[::1]:99/x/y").unwrap(),
            tcp("::1", 99, "x/y")
        );
        assert_eq!(NbdUri::parse("nbd://h").unwrap(), tcp("h", 10809, ""));
        assert_eq!(
            NbdUri::parse("nbd+unix:///disk?socket=/run/a%3Fb.sock").unwrap(),
            NbdUri {
                address: Address::Unix("/run/a?b.sock".into()),
                export: "disk".into()
            }
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "nbd:/h/e",
            "http://h/e",
            "nbds://h/e",
            "nbd:///e",
            "nbd://h:0/e",
            "nbd://h:99999/e",
            "nbd://h:/e",
            "nbd://h:12a/e",
            "nbd://u@h/e",
            "nbd://h/e?socket=x",
            "nbd://h/e#frag",
            "nbd://[::1/e",
            "nbd://h/%zz",
            "nbd+unix:///e",
            "nbd+unix:///e?socket=",
            "nbd+unix://h/e?socket=/s",
            "nbd+unix:///e?socket=/s&socket=/t",
            "nbd+unix:///e?socket=/s&tls=on",
        ] {
            assert!(NbdUri::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
