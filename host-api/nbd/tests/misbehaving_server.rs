//! A scripted in-process server that speaks just enough NBD to misbehave on purpose.

use guestkit_block::{BlockSource, Error};
use guestkit_nbd::{NbdClient, NbdUri, Options};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SIZE: u64 = 1 << 20;

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Sends half the payload of the first read, then closes.
    CloseMidRead,
    /// Never answers the first read.
    Stall,
    /// Refuses NBD_OPT_GO as unsupported; serves via NBD_OPT_EXPORT_NAME, correctly.
    OldServer,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn option_reply(s: &mut TcpStream, option: u32, reply: u32, data: &[u8]) {
    let mut m = Vec::new();
    m.extend_from_slice(&0x0003_e889_0455_65a9u64.to_be_bytes());
    m.extend_from_slice(&option.to_be_bytes());
    m.extend_from_slice(&reply.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m).unwrap();
}

fn serve(mode: Misbehaviour) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"NBDMAGICIHAVEOPT\x00\x03").unwrap();
        let mut flags = [0u8; 4];
        s.read_exact(&mut flags).unwrap();
        loop {
            let mut hdr = [0u8; 16];
            s.read_exact(&mut hdr).unwrap();
            let option = be32(&hdr[8..12]);
            let mut data = vec![0u8; be32(&hdr[12..16]) as usize];
            s.read_exact(&mut data).unwrap();
            match (option, mode) {
                (7, Misbehaviour::OldServer) => option_reply(&mut s, 7, (1 << 31) | 1, b""),
                (7, _) => {
                    let mut info = vec![0, 0];
                    info.extend_from_slice(&SIZE.to_be_bytes());
                    info.extend_from_slice(&1u16.to_be_bytes());
                    option_reply(&mut s, 7, 3, &info);
                    option_reply(&mut s, 7, 1, b"");
                    break;
                }
                (1, _) => {
                    let mut r = SIZE.to_be_bytes().to_vec();
                    r.extend_from_slice(&1u16.to_be_bytes());
                    s.write_all(&r).unwrap(); // NO_ZEROES was offered and taken.
                    break;
                }
                _ => panic!("unexpected option {option}"),
            }
        }
        loop {
            let mut req = [0u8; 28];
            if s.read_exact(&mut req).is_err() {
                return;
            }
            let kind = u16::from_be_bytes([req[6], req[7]]);
            if kind == 2 {
                return; // NBD_CMD_DISC
            }
            let len = be32(&req[24..28]) as usize;
            let mut reply = 0x6744_6698u32.to_be_bytes().to_vec();
            reply.extend_from_slice(&[0; 4]);
            reply.extend_from_slice(&req[8..16]);
            match mode {
                Misbehaviour::CloseMidRead => {
                    s.write_all(&reply).unwrap();
                    s.write_all(&vec![0xab; len / 2]).unwrap();
                    return;
                }
                Misbehaviour::Stall => {
                    std::thread::sleep(Duration::from_secs(3));
                    return;
                }
                Misbehaviour::OldServer => {
                    s.write_all(&reply).unwrap();
                    s.write_all(&vec![0x5a; len]).unwrap();
                }
            }
        }
    });
    (port, handle)
}

fn connect(port: u16, io_timeout: Duration) -> NbdClient {
    let uri = NbdUri::parse(&format!("nbd://127.0.0.1:{port}/x")).unwrap();
    let opts = Options {
        io_timeout,
        ..Options::default()
    };
    NbdClient::connect(&uri, &opts).unwrap()
}

#[test]
fn server_closing_mid_read_is_an_error_and_poisons_the_connection() {
    let (port, server) = serve(Misbehaviour::CloseMidRead);
    let client = connect(port, Duration::from_secs(10));
    let mut buf = vec![0u8; 8192];
    let err = client.read_at(0, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("payload"), "{err}");
    let again = client.read_at(0, &mut buf).unwrap_err().to_string();
    assert!(again.contains("failed earlier"), "{again}");
    server.join().unwrap();
}

#[test]
fn stalled_server_times_out() {
    let (port, server) = serve(Misbehaviour::Stall);
    let client = connect(port, Duration::from_millis(300));
    let start = Instant::now();
    let mut buf = vec![0u8; 512];
    let err = client.read_at(0, &mut buf).unwrap_err().to_string();
    assert!(
        err.contains("no answer from the server within 300ms"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn falls_back_to_export_name_when_go_is_unsupported() {
    let (port, server) = serve(Misbehaviour::OldServer);
    let client = connect(port, Duration::from_secs(10));
    assert_eq!(client.size(), SIZE);
    let mut buf = vec![0u8; 3000];
    client.read_at(SIZE - 3000, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a));
    drop(client); // sends NBD_CMD_DISC, which ends the server thread
    server.join().unwrap();
}
