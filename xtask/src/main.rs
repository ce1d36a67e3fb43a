//! Project automation.
//!
//! - `cargo xtask deps`: installs the tools the test fixtures are built with (Debian packages,
//!   as root) and checks that PostgreSQL answers.
//! - `cargo xtask test [ARGS...]`: `deps`, then the whole test suite (`cargo test --workspace`),
//!   passing ARGS through to cargo test, then a short run of every fuzz target.
//! - `cargo xtask fuzz [SECONDS]`: every fuzz target for SECONDS each (default 10, or
//!   `GUESTKIT_FUZZ_SECONDS`); 0 skips fuzzing.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Debian packages the fixture recipes use, with a command each provides (to skip apt when
/// everything is there already).
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-utils", "qemu-img"),
    ("fdisk", "sfdisk"),
    ("util-linux", "losetup"),
    ("e2fsprogs", "mke2fs"),
    ("xfsprogs", "mkfs.xfs"),
    ("btrfs-progs", "mkfs.btrfs"),
    ("dosfstools", "mkfs.vfat"),
    ("mtools", "mcopy"),
    ("ntfs-3g", "mkntfs"),
    ("lvm2", "pvcreate"),
    ("python3", "python3"),
    ("openssl", "openssl"),
    ("gcc", "cc"),
];
/// Packages without a command to look for.
const LIBRARIES: &[&str] = &["ntfs-3g-dev"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps(),
        Some("test") => deps()
            .and_then(|()| test(&args[1..]))
            .and_then(|()| fuzz(fuzz_seconds(None))),
        Some("fuzz") => fuzz(fuzz_seconds(args.get(1))),
        _ => Err(
            "usage: cargo xtask deps | cargo xtask test [cargo test args...] | cargo xtask fuzz [SECONDS]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn have_command(cmd: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(cmd).exists())
}

fn have_package(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn deps() -> Result<(), String> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, cmd)| !have_command(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    missing.extend(LIBRARIES.iter().copied().filter(|p| !have_package(p)));
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    ensure_postgres()
}

/// The store tests need a PostgreSQL; start the local cluster if it is installed but down.
fn ensure_postgres() -> Result<(), String> {
    if std::env::var_os("GUESTKIT_TEST_POSTGRES_URL").is_some() {
        return Ok(());
    }
    let addr: SocketAddr = "127.0.0.1:5432".parse().expect("literal address");
    let up = || TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
    if up() {
        return Ok(());
    }
    eprintln!("xtask: PostgreSQL is not answering on 127.0.0.1:5432; trying to start it");
    if let Ok(versions) = std::fs::read_dir("/etc/postgresql") {
        for version in versions.flatten() {
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect"])
                .arg(version.file_name())
                .args(["main", "start"])
                .status();
        }
    }
    for _ in 0..30 {
        if up() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(
        "PostgreSQL is needed by the store tests: run one on 127.0.0.1:5432 (user postgres, \
         database test) or set GUESTKIT_TEST_POSTGRES_URL"
            .into(),
    )
}

fn test(extra: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["test", "--workspace"])
        .args(extra))
}

/// Fuzz workspaces, each with its targets (the `[[bin]]`s of its Cargo.toml).
const FUZZ_DIRS: &[&str] = &["host-api/formats/fuzz", "host-api/fs/fuzz"];

fn fuzz_seconds(arg: Option<&String>) -> u64 {
    arg.cloned()
        .or_else(|| std::env::var("GUESTKIT_FUZZ_SECONDS").ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs every fuzz target for `seconds`: a crash, a leak or a timeout fails the run and
/// leaves the input under `target/fuzz-artifacts/TARGET/`.
fn fuzz(seconds: u64) -> Result<(), String> {
    if seconds == 0 {
        eprintln!("xtask: fuzzing skipped");
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let have_fuzz = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        eprintln!("xtask: installing cargo-fuzz");
        run(Command::new(&cargo).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for dir in FUZZ_DIRS {
        let dir = root.join(dir);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let targets: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| !n.ends_with("-fuzz"))
            .collect();
        for name in targets {
            let corpus = target.join("fuzz-corpus").join(name);
            let artifacts = target.join("fuzz-artifacts").join(name);
            for d in [&corpus, &artifacts] {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            eprintln!("xtask: fuzzing {name} for {seconds} s");
            // Stable toolchain: cargo-fuzz needs -Z flags for the sanitizer instrumentation.
            run(Command::new(&cargo)
                .current_dir(&dir)
                .env("RUSTC_BOOTSTRAP", "1")
                // AddressSanitizer's leak check at exit too (see -detect_leaks below).
                .env("ASAN_OPTIONS", "detect_leaks=0")
                .env("CARGO_TARGET_DIR", target.join("fuzz"))
                .args(["fuzz", "run", name])
                .arg(&corpus)
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg("-rss_limit_mb=2048")
                .arg("-timeout=10")
                // Panics, overflows, hangs and memory blow-ups fail the run; LeakSanitizer's
                // reports here are glibc's thread-exit bookkeeping, not our allocations.
                .arg("-detect_leaks=0")
                .arg(format!("-artifact_prefix={}/", artifacts.display())))?;
        }
    }
    Ok(())
}
