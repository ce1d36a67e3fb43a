//! Against a real `qemu-nbd` serving a qcow2 image, on a unix socket and on loopback TCP;
//! byte-exact against `qemu-img convert -O raw` of the same image.

use guestkit_block::{BlockSource, Error};
use guestkit_nbd::{NbdClient, NbdUri, Options};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A forked qemu-nbd, killed (by the pid it wrote) when dropped.
struct Server {
    pid: i32,
    dir: PathBuf,
}

impl Server {
    fn start(image: &Path, listen: &[&str], dir: PathBuf) -> Server {
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("qemu-nbd.pid");
        let status = Command::new("qemu-nbd")
            // --shared: tests open more than one connection at a time.
            .args([
                "--read-only",
                "--persistent",
                "--fork",
                "--shared=4",
                "-f",
                "qcow2",
            ])
            .args(["-x", "disk"])
            .args(listen)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(image)
            .status()
            .expect("running qemu-nbd");
        assert!(status.success(), "qemu-nbd failed to start");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Server { pid, dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    base.join("nbd-tests")
        .join(format!("{name}-{}", std::process::id()))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whole disk, then random ranges (odd offsets and lengths, some larger than one request).
fn check_byte_exact(client: &NbdClient, raw: &[u8]) {
    assert_eq!(client.size(), raw.len() as u64);
    let mut whole = vec![0u8; raw.len()];
    client.read_at(0, &mut whole).unwrap();
    assert!(
        whole == raw,
        "whole-disk read differs from qemu-img convert -O raw"
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..300 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let off = state % raw.len() as u64;
        let max = if i % 50 == 0 { 9 << 20 } else { 70_000 };
        let len = ((state >> 33) % max).min(raw.len() as u64 - off) as usize;
        let mut buf = vec![0u8; len];
        client.read_at(off, &mut buf).unwrap();
        assert!(
            buf[..] == raw[off as usize..off as usize + len],
            "range {off}+{len}"
        );
    }
    let mut one = [0u8; 1];
    assert!(matches!(
        client.read_at(raw.len() as u64, &mut one),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn unix_socket_reads_are_byte_exact_and_thread_safe() {
    let fx = guestkit_fixtures::build("nbd-image");
    let raw = std::fs::read(fx.join("disk.raw")).unwrap();
    let dir = scratch("unix");
    let sock = dir.join("nbd.sock");
    let _server = Server::start(&fx.join("disk.qcow2"), &["-k", sock.to_str().unwrap()], dir);
    let uri = NbdUri::parse(&format!("nbd+unix:///disk?socket={}", sock.display())).unwrap();
    let client = NbdClient::connect(&uri, &Options::default()).unwrap();
    assert!(client.max_request() <= 4 << 20);
    check_byte_exact(&client, &raw);

    // Concurrent readers share the one connection.
    let client = Arc::new(client);
    let raw = Arc::new(raw);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (client, raw) = (client.clone(), raw.clone());
            std::thread::spawn(move || {
                for k in 0..50u64 {
                    let off = (t * 1_000_003 + k * 377_711) % (raw.len() as u64 - 100_000);
                    let mut buf = vec![0u8; 65_537];
                    client.read_at(off, &mut buf).unwrap();
                    assert!(buf[..] == raw[off as usize..off as usize + buf.len()]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn tcp_loopback_reads_are_byte_exact() {
    let fx = guestkit_fixtures::build("nbd-image");
    let raw = std::fs::read(fx.join("disk.raw")).unwrap();
    let port = free_port().to_string();
    let _server = Server::start(
        &fx.join("disk.qcow2"),
        &["-b", "127.0.0.1", "-p", &port],
        scratch("tcp"),
    );
    let client = NbdClient::open(&format!("nbd://127.0.0.1:{port}/disk")).unwrap();
    check_byte_exact(&client, &raw);
    // Small requests: many round trips, still exact.
    let uri = NbdUri::parse(&format!("nbd://127.0.0.1:{port}/disk")).unwrap();
    let opts = Options {
        max_request: 4096,
        ..Options::default()
    };
    let small = NbdClient::connect(&uri, &opts).unwrap();
    assert_eq!(small.max_request(), 4096);
    let mut buf = vec![0u8; 1 << 20];
    small.read_at(12_345, &mut buf).unwrap();
    assert!(buf[..] == raw[12_345..12_345 + buf.len()]);
}

#[test]
fn unknown_export_is_a_clear_error() {
    let fx = guestkit_fixtures::build("nbd-image");
    let dir = scratch("unknown");
    let sock = dir.join("nbd.sock");
    let _server = Server::start(&fx.join("disk.qcow2"), &["-k", sock.to_str().unwrap()], dir);
    let uri = NbdUri::parse(&format!("nbd+unix:///nope?socket={}", sock.display())).unwrap();
    let err = NbdClient::connect(&uri, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"nope\"") && err.contains("no such export"),
        "{err}"
    );
}

#[test]
fn nothing_listening_is_an_io_error() {
    let port = free_port();
    let err = NbdClient::open(&format!("nbd://127.0.0.1:{port}/disk")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(NbdClient::open("nbd://127.0.0.1:0/disk").is_err());
}
