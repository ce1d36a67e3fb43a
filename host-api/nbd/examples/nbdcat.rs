//! Copies a whole NBD export to stdout: `nbdcat nbd+unix:///disk?socket=/run/nbd.sock > disk.raw`.
//! Also a quick throughput check (the rate goes to stderr).

use guestkit_block::BlockSource;
use guestkit_nbd::NbdClient;
use std::io::Write;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).ok_or("usage: nbdcat URI")?;
    let client = NbdClient::open(&uri)?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 4 << 20];
    let start = Instant::now();
    let mut pos = 0u64;
    while pos < client.size() {
        let len = (client.size() - pos).min(buf.len() as u64) as usize;
        client.read_at(pos, &mut buf[..len])?;
        out.write_all(&buf[..len])?;
        pos += len as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{pos} bytes in {secs:.3} s ({:.0} MiB/s)",
        pos as f64 / secs / 1048576.0
    );
    Ok(())
}
