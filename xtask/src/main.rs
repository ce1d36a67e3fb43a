//! Project automation.
//!
//! - `cargo xtask deps`: installs the tools the test fixtures are built with (Debian packages,
//!   as root; on Debian 12 btrfs-progs comes from bookworm-backports, for `mkfs.btrfs --subvol`)
//!   and cargo-component (for the examples test), and checks that PostgreSQL answers.
//! - `cargo xtask test [ARGS...]`: `deps`, then the whole test suite (`cargo test --workspace`),
//!   passing ARGS through to cargo test, then `deploy-check`, then a short run of every fuzz
//!   target.
//! - `cargo xtask fuzz [SECONDS]`: every fuzz target for SECONDS each (default 10, or
//!   `GUESTKIT_FUZZ_SECONDS`); 0 skips fuzzing.
//! - `cargo xtask deploy-check`: validates the Dockerfile, `examples/docker-compose.yml` and
//!   `examples/k8s/` (schemas, and the command lines against the CLI).
//! - `cargo xtask wit-docs [--check]`: renders `docs/wit-reference.md` from the WIT doc
//!   comments (`--check`: fails if the committed file is stale).

mod wit_docs;

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
    ("libhivex-bin", "hivexget"),
    ("libwin-hivex-perl", "hivexregedit"),
    ("file", "file"),
    ("debootstrap", "debootstrap"),
    ("rpm", "rpmbuild"),
    ("db-util", "db_load"),
    ("sqlite3", "sqlite3"),
    ("pacman-package-manager", "pacman"),
    ("libarchive-tools", "bsdtar"),
    ("zstd", "zstd"),
    ("libvhdi-utils", "vhdiinfo"),
];
/// Packages without a command to look for.
const LIBRARIES: &[&str] = &["ntfs-3g-dev", "python3-libvhdi"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps(),
        Some("test") => deps()
            .and_then(|()| test(&args[1..]))
            .and_then(|()| deploy_check())
            .and_then(|()| fuzz(fuzz_seconds(None))),
        Some("fuzz") => fuzz(fuzz_seconds(args.get(1))),
        Some("deploy-check") => deploy_check(),
        Some("wit-docs") => wit_docs::run(
            &workspace_root(),
            args.get(1).map(String::as_str) == Some("--check"),
        ),
        _ => Err(
            "usage: cargo xtask deps | cargo xtask test [cargo test args...] | cargo xtask fuzz [SECONDS] \
             | cargo xtask wit-docs [--check] | cargo xtask deploy-check"
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

/// `apt-get install` of `args` (packages, and options such as `-t SUITE`), quietly and
/// without recommends.
fn apt_install(args: &[&str]) -> Result<(), String> {
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"))
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
        apt_install(&missing)?;
    }
    ensure_btrfs_subvol()?;
    ensure_cargo_component()?;
    ensure_postgres()
}

/// The Btrfs subvolume fixtures make subvolumes with `mkfs.btrfs --rootdir DIR --subvol SUBDIR`
/// (no mount needed), which btrfs-progs has since 6.12; Debian 12 ships 6.2, so there it comes
/// from bookworm-backports. Elsewhere an older mkfs.btrfs is only warned about: the rest of the
/// suite does not need it, and those fixtures' recipes fail with a message saying what is missing.
fn ensure_btrfs_subvol() -> Result<(), String> {
    if mkfs_btrfs_has_subvol() {
        return Ok(());
    }
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os_release
        .lines()
        .any(|l| l.trim() == "VERSION_CODENAME=bookworm")
    {
        eprintln!(
            "xtask: warning: mkfs.btrfs has no --subvol (btrfs-progs 6.12 or newer); the Btrfs \
             subvolume fixtures will fail until it is installed from your distribution"
        );
        return Ok(());
    }
    if has_apt_suite("bookworm-backports") {
        eprintln!("xtask: installing btrfs-progs from bookworm-backports (mkfs.btrfs --subvol)");
    } else {
        eprintln!(
            "xtask: adding bookworm-backports and installing btrfs-progs from it (mkfs.btrfs \
             --subvol)"
        );
        std::fs::write(
            "/etc/apt/sources.list.d/bookworm-backports.sources",
            "Types: deb\n\
             URIs: http://deb.debian.org/debian\n\
             Suites: bookworm-backports\n\
             Components: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .map_err(|e| format!("writing the bookworm-backports apt source (run as root): {e}"))?;
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    apt_install(&["-t", "bookworm-backports", "btrfs-progs"])?;
    if mkfs_btrfs_has_subvol() {
        Ok(())
    } else {
        Err(
            "installed btrfs-progs from bookworm-backports, but mkfs.btrfs still has no --subvol \
             (btrfs-progs 6.12 or newer is needed)"
                .into(),
        )
    }
}

/// Whether `mkfs.btrfs --help` lists `--subvol`.
fn mkfs_btrfs_has_subvol() -> bool {
    Command::new("mkfs.btrfs")
        .arg("--help")
        .env("PATH", "/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin")
        .output()
        .is_ok_and(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.contains("--subvol")
        })
}

/// Whether an apt source (one-line `sources.list` style or deb822 `.sources`) already names
/// `suite` on a line that is not a comment.
fn has_apt_suite(suite: &str) -> bool {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().any(|l| {
                let l = l.trim_start();
                !l.starts_with('#') && l.split_whitespace().any(|w| w == suite)
            })
        })
    })
}

/// The cargo-component version the example in `examples/handler-component` is built with.
const CARGO_COMPONENT_VERSION: &str = "0.21.1";

/// The examples test builds `examples/handler-component` with cargo-component; install it
/// (about 7 minutes, once) if it is missing or another version.
fn ensure_cargo_component() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["component", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains(CARGO_COMPONENT_VERSION)
        });
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-component {CARGO_COMPONENT_VERSION} (takes a few minutes)");
    run(Command::new(&cargo).args([
        "install",
        "cargo-component",
        "--locked",
        "--version",
        CARGO_COMPONENT_VERSION,
    ]))
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
    run(Command::new(&cargo)
        .args(["test", "--workspace"])
        .args(extra))?;
    handler_unit_tests(&cargo)
}

/// Crates of the wasm handler workspace whose unit tests run natively (their parsers of
/// guest content: registry hives, package databases, config files; and the SDK).
const HANDLER_TEST_CRATES: &[&str] = &["winreg", "inspect", "profile", "guestkit-handler-sdk"];

/// Runs the handler crates' unit tests for the host (the wasm workspace builds for
/// wasm32-wasip2 otherwise), in a target dir of their own.
fn handler_unit_tests(cargo: &str) -> Result<(), String> {
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("running rustc -vV: {e}"))?;
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or("rustc -vV printed no host triple")?;
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("handlers-wasm"))
        .env_remove("CARGO_TARGET_DIR")
        .args(["test", "--target", &host, "--target-dir"])
        .arg(target.join("handlers-native"));
    for name in HANDLER_TEST_CRATES {
        cmd.args(["-p", name]);
    }
    run(&mut cmd)
}

/// Fuzz workspaces, each with its targets (the `[[bin]]`s of its Cargo.toml).
const FUZZ_DIRS: &[&str] = &[
    "host-api/formats/fuzz",
    "host-api/fs/fuzz",
    "handlers-wasm/winreg/fuzz",
    "handlers-wasm/inspect/fuzz",
    "handlers-wasm/profile/fuzz",
];

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
            // Checked-in seed inputs (seeds/TARGET/) start the search past the headers; new
            // finds go to the corpus under target/.
            let seeds = Some(dir.join("seeds").join(name)).filter(|d| d.is_dir());
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
                .args(seeds.as_ref())
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

// ---------------------------------------------------------------------------------------------
// Deployment files: Dockerfile, examples/docker-compose.yml, examples/k8s/.

/// Validators, pinned, installed from PyPI into a venv under the target dir.
const DEPLOY_TOOLS: &[&str] = &["kubernetes-validate==1.37.0", "check-jsonschema==0.39.0"];
/// Kubernetes versions the manifests must be valid for (oldest supported, newest known).
const KUBE_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// `cargo xtask deploy-check`: the deployment files are valid and agree with the CLI.
///
/// - every manifest in `examples/k8s/` against the Kubernetes API schemas (strict: unknown
///   fields are errors) of each of `KUBE_VERSIONS`;
/// - `examples/docker-compose.yml` against the compose-spec schema;
/// - every `guestkit-worker` command line in the Dockerfile (`CMD`, `HEALTHCHECK`) and in the
///   manifests (`args: [...]`) parses with the real CLI (run with `--help` appended: clap
///   rejects an unknown flag or a bad value before it gets there), and every `GUESTKIT_*`
///   variable these files set is one the CLI reads.
///
/// The CLI is `GUESTKIT_WORKER_BIN` if set, else a debug build of the guestkit-worker package.
fn deploy_check() -> Result<(), String> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))
    };

    // The validators.
    let venv = target.join("deploy-check-venv");
    let stamp = venv.join("xtask-tools");
    if read(&stamp).ok().as_deref() != Some(DEPLOY_TOOLS.join(" ").as_str()) {
        eprintln!(
            "xtask: installing {} into {}",
            DEPLOY_TOOLS.join(" "),
            venv.display()
        );
        let make_venv = || {
            run(Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv))
        };
        if make_venv().is_err() {
            // Debian's python3 keeps venv/ensurepip in a package of its own.
            apt_install(&["python3-venv"])?;
            make_venv()?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(DEPLOY_TOOLS))?;
        std::fs::write(&stamp, DEPLOY_TOOLS.join(" "))
            .map_err(|e| format!("{}: {e}", stamp.display()))?;
    }

    // Kubernetes manifests.
    let k8s = root.join("examples/k8s");
    let mut manifests: Vec<std::path::PathBuf> = std::fs::read_dir(&k8s)
        .map_err(|e| format!("reading {}: {e}", k8s.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    manifests.sort();
    if manifests.is_empty() {
        return Err(format!("no manifests in {}", k8s.display()));
    }
    for version in KUBE_VERSIONS {
        eprintln!("xtask: validating examples/k8s against Kubernetes {version}");
        run(Command::new(venv.join("bin/kubernetes-validate"))
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&manifests))?;
    }

    // Compose file.
    let compose = root.join("examples/docker-compose.yml");
    eprintln!("xtask: validating examples/docker-compose.yml against the compose-spec schema");
    run(Command::new(venv.join("bin/check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(&compose))?;

    // Command lines and variables against the CLI.
    // Dockerfile continuation lines joined.
    let dockerfile = read(&root.join("Dockerfile"))?.replace("\\\n", " ");
    let mut texts = vec![("Dockerfile".to_string(), dockerfile)];
    texts.push(("examples/docker-compose.yml".into(), read(&compose)?));
    for m in &manifests {
        let name = m.strip_prefix(&root).unwrap_or(m).display().to_string();
        texts.push((name, read(m)?));
    }
    // JSON arrays after `CMD` (Dockerfile) and `args:` (manifests).
    let mut invocations: Vec<(String, Vec<String>)> = Vec::new();
    for (file, text) in &texts {
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let array = match (line.find("CMD ["), line.find("args: [")) {
                (Some(i), _) if file == "Dockerfile" => &line[i + 4..],
                (_, Some(i)) if file != "Dockerfile" => &line[i + 6..],
                _ => continue,
            };
            let mut args: Vec<String> = json_string_array(array)
                .ok_or_else(|| format!("{file}: cannot read the command line {array}"))?;
            if args
                .first()
                .is_some_and(|a| a.ends_with("/guestkit-worker"))
            {
                args.remove(0);
            }
            // Kubernetes expands $(VAR) from the container's environment.
            for a in &mut args {
                if a.starts_with("$(") {
                    *a = "expanded-by-kubernetes".into();
                }
            }
            invocations.push((file.clone(), args));
        }
    }
    if !invocations
        .iter()
        .any(|(f, a)| f == "Dockerfile" && a.first().is_some_and(|c| c == "daemon"))
    {
        return Err("Dockerfile: no CMD [\"daemon\", ...] found".into());
    }
    let bin = match std::env::var_os("GUESTKIT_WORKER_BIN") {
        Some(b) => std::path::PathBuf::from(b),
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(Command::new(cargo).args([
                "build",
                "-q",
                "-p",
                "guestkit-worker",
                "--bin",
                "guestkit-worker",
            ]))?;
            target.join("debug/guestkit-worker")
        }
    };
    let mut help = String::new();
    for (file, args) in &invocations {
        let out = Command::new(&bin)
            .args(args)
            .arg("--help")
            .output()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{file}: `guestkit-worker {}` is refused by the CLI:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        help.push_str(&String::from_utf8_lossy(&out.stdout));
        eprintln!("xtask: {file}: `guestkit-worker {}` parses", args.join(" "));
    }
    for sub in ["daemon", "health"] {
        let out = Command::new(&bin)
            .args([sub, "--help"])
            .output()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        help.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    for (file, text) in &texts {
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let mut rest = line;
            while let Some(i) = rest.find("GUESTKIT_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                if !help.contains(&format!("[env: {name}=")) {
                    return Err(format!(
                        "{file}: {name} is not a variable guestkit-worker reads"
                    ));
                }
            }
        }
    }
    eprintln!("xtask: deployment files OK");
    Ok(())
}

/// The strings of a one-line JSON array of strings (`["a", "b\"c"]`), and whatever follows it.
fn json_string_array(text: &str) -> Option<Vec<String>> {
    let mut chars = text.trim_start().strip_prefix('[')?.chars();
    let mut items = Vec::new();
    loop {
        match chars.by_ref().find(|c| !c.is_whitespace())? {
            ']' => return Some(items),
            ',' => continue,
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => s.push(chars.next()?),
                        c => s.push(c),
                    }
                }
                items.push(s);
            }
            _ => return None,
        }
    }
}
