//! `checksum` over a raw file against the coreutils tools on the same file, page cache warm, best
//! of three each. Prints MB/s (10^6 bytes per second) and the ratio ours/tool.
//!
//! The file is `GK_BENCH_BYTES` (default 1 GiB) of pseudo-random bytes, created once under the
//! target directory and reused. Run with `cargo bench -p guestkit-checksum`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guestkit_block::{BlockSource, FileSource};
use guestkit_checksum::{Algorithm, Options, checksum};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::Digest;

const ROUNDS: usize = 3;

/// Creates (once per size) the benchmark file and returns its path.
fn bench_file(bytes: u64) -> PathBuf {
    let dir = guestkit_fixtures::cache_root().join("checksum-bench");
    fs::create_dir_all(&dir).expect("creating the benchmark directory");
    let path = dir.join(format!("random-{bytes}.raw"));
    if fs::metadata(&path).is_ok_and(|m| m.len() == bytes) {
        return path;
    }
    eprintln!("creating {} ({bytes} bytes)", path.display());
    let partial = path.with_extension("partial");
    let mut out = BufWriter::new(File::create(&partial).expect("creating the benchmark file"));
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b_63_73_75_6d);
    let mut block = vec![0u8; 4 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        out.write_all(&block[..n])
            .expect("writing the benchmark file");
        left -= n as u64;
    }
    out.into_inner()
        .expect("flushing the benchmark file")
        .sync_all()
        .expect("syncing the benchmark file");
    fs::rename(&partial, &path).expect("renaming the benchmark file");
    path
}

/// Best wall time of `ROUNDS` runs of `f`, and what the last run returned.
fn best<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let out = f();
        best = best.min(started.elapsed());
        last = Some(out);
    }
    (best, last.expect("ROUNDS > 0"))
}

fn ours(path: &Path, algorithms: &[Algorithm], chunk_size: usize) -> Vec<String> {
    let source = FileSource::open(path).expect("opening the benchmark file");
    let opts = Options {
        chunk_size,
        ..Options::default()
    };
    let sums = checksum(&source, algorithms, &opts).expect("checksumming");
    algorithms
        .iter()
        .map(|&a| sums.get(a).expect("requested").to_string())
        .collect()
}

fn spawn(tool: &str, path: &Path) -> Child {
    Command::new(tool)
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"))
}

fn digest_of(child: Child) -> String {
    let out = child.wait_with_output().expect("waiting for the tool");
    assert!(out.status.success(), "tool failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("tool output is UTF-8");
    text.split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// Runs the tools one after the other (`parallel == false`) or all at once.
fn tools(tools: &[&str], path: &Path, parallel: bool) -> Vec<String> {
    if parallel {
        let children: Vec<_> = tools.iter().map(|t| spawn(t, path)).collect();
        children.into_iter().map(digest_of).collect()
    } else {
        tools.iter().map(|t| digest_of(spawn(t, path))).collect()
    }
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64()
}

fn main() {
    let bytes = std::env::var("GK_BENCH_BYTES")
        .ok()
        .map(|s| s.parse::<u64>().expect("GK_BENCH_BYTES is a byte count"))
        .unwrap_or(1 << 30);
    let path = bench_file(bytes);
    let default_chunk = Options::default().chunk_size;

    // Warm the page cache, and check both sides agree before timing anything.
    let ours_sha256 = ours(&path, &[Algorithm::Sha256], default_chunk);
    assert_eq!(ours_sha256, tools(&["sha256sum"], &path, false));
    println!(
        "file: {} ({bytes} bytes), {} CPUs",
        path.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // The two ceilings: reading alone and hashing alone (SHA-256 of an in-memory buffer).
    let source = FileSource::open(&path).expect("opening the benchmark file");
    let mut buf = vec![0u8; default_chunk];
    let (t_read, _) = best(|| {
        let mut pos = 0;
        while pos < bytes {
            let n = (bytes - pos).min(buf.len() as u64) as usize;
            source.read_at(pos, &mut buf[..n]).expect("reading");
            pos += n as u64;
        }
    });
    buf.fill(0x5a);
    let (t_hash, _) = best(|| {
        let mut h = sha2::Sha256::new();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        h.finalize()
    });
    println!(
        "ceilings: read only {:.0} MB/s, sha256 of memory only {:.0} MB/s",
        mbps(bytes, t_read),
        mbps(bytes, t_hash)
    );

    let (t_ours, _) = best(|| ours(&path, &[Algorithm::Sha256], default_chunk));
    let (t_tool, _) = best(|| tools(&["sha256sum"], &path, false));
    println!(
        "sha256: ours {:.0} MB/s ({:.3} s), sha256sum {:.0} MB/s ({:.3} s); ours/sha256sum = {:.2}x",
        mbps(bytes, t_ours),
        t_ours.as_secs_f64(),
        mbps(bytes, t_tool),
        t_tool.as_secs_f64(),
        t_tool.as_secs_f64() / t_ours.as_secs_f64()
    );

    let both = [Algorithm::Sha256, Algorithm::Md5];
    let pair = ["sha256sum", "md5sum"];
    assert_eq!(ours(&path, &both, default_chunk), tools(&pair, &path, true));
    let (t_ours2, _) = best(|| ours(&path, &both, default_chunk));
    let (t_seq, _) = best(|| tools(&pair, &path, false));
    let (t_par, _) = best(|| tools(&pair, &path, true));
    println!(
        "sha256+md5: ours one pass {:.0} MB/s ({:.3} s), sha256sum then md5sum {:.0} MB/s ({:.3} s), \
         both at once {:.0} MB/s ({:.3} s); ours/sequential = {:.2}x, ours/concurrent = {:.2}x",
        mbps(bytes, t_ours2),
        t_ours2.as_secs_f64(),
        mbps(bytes, t_seq),
        t_seq.as_secs_f64(),
        mbps(bytes, t_par),
        t_par.as_secs_f64(),
        t_seq.as_secs_f64() / t_ours2.as_secs_f64(),
        t_par.as_secs_f64() / t_ours2.as_secs_f64()
    );

    // Orientation for the default chunk size.
    let sweep: Vec<String> = [256 << 10, 1 << 20, 4 << 20, 16 << 20]
        .into_iter()
        .map(|chunk: usize| {
            let (t, _) = best(|| ours(&path, &[Algorithm::Sha256], chunk));
            format!("{} KiB {:.0} MB/s", chunk >> 10, mbps(bytes, t))
        })
        .collect();
    println!("sha256 by chunk size: {}", sweep.join(", "));

    let all: Vec<String> = Algorithm::ALL
        .into_iter()
        .map(|a| {
            let (t, _) = best(|| ours(&path, &[a], default_chunk));
            format!("{a} {:.0} MB/s", mbps(bytes, t))
        })
        .collect();
    println!("ours per algorithm: {}", all.join(", "));
}
