//! The connection: handshake, option negotiation, and reads.

use crate::uri::{Address, NbdUri};
use guestkit_block::{BlockSource, Error, Result, check_range};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR_BIT: u32 = 1 << 31;
const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const CMD_READ: u16 = 0;
const CMD_DISC: u16 = 2;

/// Longest option reply payload accepted (error strings are at most 4096 bytes by spec).
const MAX_OPTION_REPLY: u32 = 64 * 1024;
/// Most option replies read for one option before giving up on the server.
const MAX_OPTION_REPLIES: usize = 64;
/// The spec's suggested maximum request size when the server states none.
const DEFAULT_MAX_BLOCK: u32 = 32 << 20;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time allowed to establish the TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for any one read or write on the socket.
    pub io_timeout: Duration,
    /// Largest read request sent (further capped by the server's maximum block size).
    pub max_request: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            max_request: 4 << 20,
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

struct Conn {
    stream: Stream,
    next_cookie: u64,
    /// Set after any failure mid-command: the byte stream is no longer in sync.
    broken: bool,
}

/// A read-only connection to one NBD export. Reads are serialised on one connection.
pub struct NbdClient {
    conn: Mutex<Conn>,
    io_timeout: Duration,
    size: u64,
    transmission_flags: u16,
    min_block: u32,
    max_request: u32,
    description: String,
}

impl std::fmt::Debug for NbdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdClient")
            .field("export", &self.description)
            .field("size", &self.size)
            .field("min_block", &self.min_block)
            .field("max_request", &self.max_request)
            .finish()
    }
}

fn protocol(detail: impl Into<String>) -> Error {
    Error::corrupt("NBD protocol", detail)
}

impl NbdClient {
    /// Connects to `uri`, negotiates the export and returns a client ready to read.
    pub fn connect(uri: &NbdUri, options: &Options) -> Result<NbdClient> {
        let description = match &uri.address {
            Address::Tcp { host, port } => format!("{host}:{port} export {:?}", uri.export),
            Address::Unix(p) => format!("{} export {:?}", p.display(), uri.export),
        };
        let stream = open_stream(&uri.address, options)
            .map_err(|e| Error::io(format!("connecting to NBD server {description}"), e))?;
        let mut conn = Conn {
            stream,
            next_cookie: 1,
            broken: false,
        };
        let negotiated = negotiate(&mut conn.stream, &uri.export).map_err(|e| match e {
            Error::Io { context, source } => Error::io(
                format!("NBD handshake with {description}: {context}"),
                clarify_timeout(source, options.io_timeout),
            ),
            other => other,
        })?;
        let max_block = match negotiated.max_block {
            Some(m) if m > 0 => m.min(DEFAULT_MAX_BLOCK),
            _ => DEFAULT_MAX_BLOCK,
        };
        let min_block = negotiated.min_block.unwrap_or(1).max(1);
        // Requests are whole multiples of the minimum block size.
        let max_request = options
            .max_request
            .clamp(min_block, max_block.max(min_block));
        let max_request = max_request - max_request % min_block;
        Ok(NbdClient {
            conn: Mutex::new(conn),
            io_timeout: options.io_timeout,
            size: negotiated.size,
            transmission_flags: negotiated.flags,
            min_block,
            max_request,
            description,
        })
    }

    /// Parses `uri` and connects with default options.
    pub fn open(uri: &str) -> Result<NbdClient> {
        let uri = NbdUri::parse(uri).map_err(|e| Error::Unsupported(e.to_string()))?;
        NbdClient::connect(&uri, &Options::default())
    }

    /// Transmission flags the server sent for this export.
    pub fn transmission_flags(&self) -> u16 {
        self.transmission_flags
    }

    /// Largest read request this client sends.
    pub fn max_request(&self) -> u32 {
        self.max_request
    }

    /// One `NBD_CMD_READ` of `buf.len()` bytes (already aligned and within limits).
    fn read_request(&self, conn: &mut Conn, offset: u64, buf: &mut [u8]) -> Result<()> {
        let cookie = conn.next_cookie;
        conn.next_cookie = conn.next_cookie.wrapping_add(1);
        let len = buf.len();
        let what = || format!("reading {len} bytes at {offset} from {}", self.description);
        let mut req = [0u8; 28];
        req[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        req[6..8].copy_from_slice(&CMD_READ.to_be_bytes());
        req[8..16].copy_from_slice(&cookie.to_be_bytes());
        req[16..24].copy_from_slice(&offset.to_be_bytes());
        req[24..28].copy_from_slice(&(len as u32).to_be_bytes());
        conn.stream
            .write_all(&req)
            .map_err(|e| Error::io(format!("{}: sending request", what()), e))?;
        let mut hdr = [0u8; 16];
        conn.stream
            .read_exact(&mut hdr)
            .map_err(|e| Error::io(format!("{}: reading reply header", what()), e))?;
        let magic = be32(&hdr[0..4]);
        if magic != SIMPLE_REPLY_MAGIC {
            return Err(protocol(format!("{}: reply magic {magic:#010x}", what())));
        }
        let got_cookie = be64(&hdr[8..16]);
        if got_cookie != cookie {
            return Err(protocol(format!(
                "{}: reply for cookie {got_cookie}, want {cookie}",
                what()
            )));
        }
        let errno = be32(&hdr[4..8]);
        if errno != 0 {
            // A simple error reply carries no payload, so the stream stays in sync.
            return Err(Error::io(
                what(),
                std::io::Error::from_raw_os_error(errno as i32),
            ));
        }
        conn.stream
            .read_exact(buf)
            .map_err(|e| Error::io(format!("{}: reading payload", what()), e))
    }
}

impl BlockSource for NbdClient {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.broken {
            return Err(Error::io(
                format!("NBD connection to {} failed earlier", self.description),
                std::io::Error::from(std::io::ErrorKind::NotConnected),
            ));
        }
        let min = u64::from(self.min_block);
        let step = u64::from(self.max_request);
        // Read [aligned_start, aligned_end) in requests of at most `step` bytes, copying the
        // part the caller asked for; when min_block is 1 this reads straight into `buf`.
        let end = offset + buf.len() as u64;
        let aligned_start = offset - offset % min;
        let aligned_end = end.div_ceil(min).saturating_mul(min).min(self.size);
        let mut pos = aligned_start;
        let mut bounce = Vec::new();
        while pos < aligned_end {
            let len = step.min(aligned_end - pos);
            let result = if pos >= offset && pos + len <= end {
                let at = (pos - offset) as usize;
                self.read_request(&mut conn, pos, &mut buf[at..at + len as usize])
            } else {
                bounce.resize(len as usize, 0);
                let r = self.read_request(&mut conn, pos, &mut bounce);
                if r.is_ok() {
                    let from = offset.max(pos);
                    let to = end.min(pos + len);
                    buf[(from - offset) as usize..(to - offset) as usize]
                        .copy_from_slice(&bounce[(from - pos) as usize..(to - pos) as usize]);
                }
                r
            };
            if let Err(e) = result {
                // An errno reply leaves the stream in sync; anything else does not.
                let in_sync =
                    matches!(&e, Error::Io { source, .. } if source.raw_os_error().is_some());
                conn.broken = !in_sync;
                return Err(match e {
                    Error::Io { context, source } => {
                        Error::io(context, clarify_timeout(source, self.io_timeout))
                    }
                    other => other,
                });
            }
            pos += len;
        }
        Ok(())
    }
}

impl Drop for NbdClient {
    fn drop(&mut self) {
        let conn = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        if conn.broken {
            return;
        }
        let mut req = [0u8; 28];
        req[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        req[6..8].copy_from_slice(&CMD_DISC.to_be_bytes());
        req[8..16].copy_from_slice(&conn.next_cookie.to_be_bytes());
        // Best effort: the server may already be gone, and there is nobody to tell.
        let _ = conn.stream.write_all(&req);
    }
}

fn open_stream(address: &Address, options: &Options) -> std::io::Result<Stream> {
    let timeout = Some(options.io_timeout.max(Duration::from_millis(1)));
    match address {
        Address::Tcp { host, port } => {
            let mut last = None;
            for addr in (host.as_str(), *port).to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, options.connect_timeout) {
                    Ok(s) => {
                        s.set_read_timeout(timeout)?;
                        s.set_write_timeout(timeout)?;
                        s.set_nodelay(true)?;
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "host has no addresses")
            }))
        }
        Address::Unix(path) => {
            let s = UnixStream::connect(path)?;
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(timeout)?;
            Ok(Stream::Unix(s))
        }
    }
}

/// Socket timeouts surface as `WouldBlock` on Linux; say what actually happened.
fn clarify_timeout(e: std::io::Error, timeout: Duration) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from the server within {timeout:?}"),
        ),
        _ => e,
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

struct Negotiated {
    size: u64,
    flags: u16,
    min_block: Option<u32>,
    max_block: Option<u32>,
}

fn io_ctx(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

/// Fixed newstyle handshake, then `NBD_OPT_GO` (falling back to `NBD_OPT_EXPORT_NAME`).
fn negotiate(s: &mut Stream, export: &str) -> Result<Negotiated> {
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting)
        .map_err(io_ctx("reading greeting"))?;
    if be64(&greeting[0..8]) != NBDMAGIC {
        return Err(protocol("server did not greet with NBDMAGIC"));
    }
    if be64(&greeting[8..16]) != IHAVEOPT {
        return Err(Error::Unsupported(
            "NBD oldstyle negotiation (server must speak fixed newstyle)".into(),
        ));
    }
    let server_flags = be16(&greeting[16..18]);
    if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(Error::Unsupported(
            "NBD server without fixed newstyle negotiation".into(),
        ));
    }
    let no_zeroes = server_flags & FLAG_NO_ZEROES != 0;
    let client_flags = u32::from(FLAG_FIXED_NEWSTYLE | (server_flags & FLAG_NO_ZEROES));
    s.write_all(&client_flags.to_be_bytes())
        .map_err(io_ctx("sending client flags"))?;

    let name = export.as_bytes();
    if name.len() > 4096 {
        return Err(Error::Limit(format!(
            "export name of {} bytes (NBD allows 4096)",
            name.len()
        )));
    }
    let mut data = Vec::with_capacity(name.len() + 10);
    data.extend_from_slice(&(name.len() as u32).to_be_bytes());
    data.extend_from_slice(name);
    data.extend_from_slice(&2u16.to_be_bytes());
    data.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(s, OPT_GO, &data)?;

    let mut got = Negotiated {
        size: 0,
        flags: 0,
        min_block: None,
        max_block: None,
    };
    let mut have_export = false;
    for _ in 0..MAX_OPTION_REPLIES {
        let (reply, payload) = read_option_reply(s, OPT_GO)?;
        match reply {
            REP_ACK => {
                if !have_export {
                    return Err(protocol("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT"));
                }
                return Ok(got);
            }
            REP_INFO if payload.len() >= 2 => match be16(&payload[0..2]) {
                INFO_EXPORT if payload.len() == 12 => {
                    got.size = be64(&payload[2..10]);
                    got.flags = be16(&payload[10..12]);
                    have_export = true;
                }
                INFO_BLOCK_SIZE if payload.len() == 14 => {
                    let min = be32(&payload[2..6]);
                    let max = be32(&payload[10..14]);
                    if !min.is_power_of_two() || min > 65536 || (max != 0 && max < min) {
                        return Err(protocol(format!(
                            "nonsensical block sizes min {min} max {max}"
                        )));
                    }
                    got.min_block = Some(min);
                    got.max_block = Some(max);
                }
                // Other information, or known types with odd lengths: not needed.
                _ => {}
            },
            REP_INFO => return Err(protocol("empty NBD_REP_INFO")),
            r if r & REP_ERR_BIT != 0 => {
                if r == REP_ERR_BIT | 1 {
                    // NBD_REP_ERR_UNSUP: an older server; use the legacy option.
                    return export_name(s, name, no_zeroes);
                }
                return Err(option_error(r, &payload, export));
            }
            other => return Err(protocol(format!("unexpected option reply type {other}"))),
        }
    }
    Err(protocol(format!(
        "more than {MAX_OPTION_REPLIES} replies to NBD_OPT_GO"
    )))
}

fn option_error(reply: u32, payload: &[u8], export: &str) -> Error {
    let message = String::from_utf8_lossy(payload);
    let kind = match reply & !REP_ERR_BIT {
        2 => "NBD_REP_ERR_POLICY (forbidden by server policy)",
        3 => "NBD_REP_ERR_INVALID",
        4 => "NBD_REP_ERR_PLATFORM",
        5 => "NBD_REP_ERR_TLS_REQD (server requires TLS)",
        6 => "NBD_REP_ERR_UNKNOWN (no such export)",
        7 => "NBD_REP_ERR_SHUTDOWN",
        8 => "NBD_REP_ERR_BLOCK_SIZE_REQD",
        9 => "NBD_REP_ERR_TOO_BIG",
        _ => "unknown error",
    };
    let detail = format!("export {export:?} refused: {kind}: {message}");
    if reply & !REP_ERR_BIT == 6 {
        Error::io(
            detail,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such NBD export"),
        )
    } else {
        Error::Unsupported(detail)
    }
}

fn send_option(s: &mut Stream, option: u32, data: &[u8]) -> Result<()> {
    let mut msg = Vec::with_capacity(16 + data.len());
    msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    s.write_all(&msg).map_err(io_ctx("sending option"))
}

fn read_option_reply(s: &mut Stream, option: u32) -> Result<(u32, Vec<u8>)> {
    let mut hdr = [0u8; 20];
    s.read_exact(&mut hdr)
        .map_err(io_ctx("reading option reply"))?;
    if be64(&hdr[0..8]) != REPLY_MAGIC {
        return Err(protocol("bad option reply magic"));
    }
    if be32(&hdr[8..12]) != option {
        return Err(protocol(format!(
            "reply for option {} while waiting for {option}",
            be32(&hdr[8..12])
        )));
    }
    let reply = be32(&hdr[12..16]);
    let len = be32(&hdr[16..20]);
    if len > MAX_OPTION_REPLY {
        return Err(Error::Limit(format!(
            "option reply of {len} bytes exceeds {MAX_OPTION_REPLY}"
        )));
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)
        .map_err(io_ctx("reading option reply payload"))?;
    Ok((reply, payload))
}

/// `NBD_OPT_EXPORT_NAME`: no error reply exists, an unknown export just closes the connection.
fn export_name(s: &mut Stream, name: &[u8], no_zeroes: bool) -> Result<Negotiated> {
    send_option(s, OPT_EXPORT_NAME, name)?;
    let mut reply = [0u8; 10 + 124];
    let len = if no_zeroes { 10 } else { reply.len() };
    s.read_exact(&mut reply[..len]).map_err(|e| {
        Error::io(
            "NBD_OPT_EXPORT_NAME: server closed the connection (unknown export?)",
            e,
        )
    })?;
    Ok(Negotiated {
        size: be64(&reply[0..8]),
        flags: be16(&reply[8..10]),
        min_block: None,
        max_block: None,
    })
}
