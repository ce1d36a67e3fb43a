//! Sequential read of a 1 GiB qcow2 through our stack, against qemu-img converting the same image
//! to nothing in the same run. Prints both times and the ratio.
//!
//! `qemu-img convert -O raw IMG /dev/null` is refused by qemu 10 ("Cannot grow device files"), and
//! `-n` then fails because /dev/null reports size 0, so the target is qemu's `null-co` driver: it
//! discards writes like /dev/null, and qemu-img still reads and decodes every cluster.
//!
//! Run with `cargo bench --bench sequential`.

use std::process::Command;
use std::time::{Duration, Instant};

use guestkit_formats::{BlockSource, OpenOptions, open};

/// Read size per call: what a filesystem layer streaming a file would ask for.
const CHUNK: usize = 2 << 20;
const ROUNDS: usize = 3;

fn ours(path: &std::path::Path) -> (Duration, u64) {
    let img = open(path, &OpenOptions::default()).expect("opening benchmark image");
    let mut buf = vec![0u8; CHUNK];
    let started = Instant::now();
    let mut pos = 0;
    // Fold the data into a checksum so the reads cannot be optimised away.
    let mut sum = 0u64;
    while pos < img.size() {
        let n = (CHUNK as u64).min(img.size() - pos) as usize;
        img.read_at(pos, &mut buf[..n])
            .expect("reading benchmark image");
        sum = sum.wrapping_add(u64::from(buf[n - 1]));
        pos += n as u64;
    }
    (started.elapsed(), sum)
}

fn qemu(path: &std::path::Path, format: &str, size: u64) -> Duration {
    let started = Instant::now();
    let status = Command::new("qemu-img")
        .args(["convert", "-n", "-f", format])
        .arg(path)
        .arg("--target-image-opts")
        .arg(format!("driver=null-co,size={size}"))
        .status()
        .expect("running qemu-img");
    assert!(status.success(), "qemu-img convert failed");
    started.elapsed()
}

fn main() {
    let path = guestkit_fixtures::build("fmt-bench").join("bench.qcow2");
    // Warm the page cache once so both sides read from memory.
    let size = open(&path, &OpenOptions::default())
        .expect("opening benchmark image")
        .size();
    let _ = ours(&path);
    let mut best_ours = Duration::MAX;
    let mut best_qemu = Duration::MAX;
    for _ in 0..ROUNDS {
        let (t, _) = ours(&path);
        best_ours = best_ours.min(t);
        best_qemu = best_qemu.min(qemu(&path, "qcow2", size));
    }
    let gib = 1024.0 * 1024.0 * 1024.0;
    println!(
        "sequential 1 GiB qcow2: ours {:.3} s ({:.2} GiB/s), qemu-img convert {:.3} s; \
         speed ratio ours/qemu = {:.2}x",
        best_ours.as_secs_f64(),
        size as f64 / gib / best_ours.as_secs_f64(),
        best_qemu.as_secs_f64(),
        best_qemu.as_secs_f64() / best_ours.as_secs_f64()
    );

    // The smaller fixtures of the other readers (40 MiB each), for orientation.
    let images = guestkit_fixtures::build("fmt-images");
    for (name, format) in [
        ("qcow2-zlib.qcow2", "qcow2"),
        ("qcow2-zstd.qcow2", "qcow2"),
        ("vmdk-stream.vmdk", "vmdk"),
        ("vmdk-sparse.vmdk", "vmdk"),
        ("vdi-dynamic.vdi", "vdi"),
        ("vhdx-dynamic.vhdx", "vhdx"),
        ("vpc-dynamic-force.vhd", "vpc"),
    ] {
        let path = images.join(name);
        let size = open(&path, &OpenOptions::default())
            .expect("opening fixture")
            .size();
        let _ = ours(&path);
        let (mut o, mut q) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            o = o.min(ours(&path).0);
            q = q.min(qemu(&path, format, size));
        }
        println!(
            "{name:>22}: ours {:7.2} ms, qemu-img {:7.2} ms, ratio {:.2}x",
            o.as_secs_f64() * 1e3,
            q.as_secs_f64() * 1e3,
            q.as_secs_f64() / o.as_secs_f64()
        );
    }
}
