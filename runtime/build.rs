//! Builds the built-in handler components (handlers-wasm/, a wasm32-wasip2 workspace of its
//! own) and embeds them, so `cargo run` serves echo, inspect and profile with no manual step.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// Built-in handlers: (operation-independent name, crate name in handlers-wasm).
const BUILTINS: &[&str] = &["echo", "inspect", "profile"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let handlers = root.join("handlers-wasm");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    for dir in ["handlers-wasm", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    // One wasm build shared by every host profile (dev, release, clippy), in its own target
    // dir so the nested cargo never waits on the lock of the build that runs this script.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-handlers");
    ensure_wasm_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&handlers)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for crate_name in BUILTINS {
        cmd.args(["-p", crate_name]);
    }
    // Settings meant for the host build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo for the built-in handlers");
    if !status.success() {
        panic!(
            "building the built-in handlers failed (is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`)"
        );
    }

    let mut code = String::from(
        "/// Built-in handler components: (name, component bytes).\n\
         pub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for name in BUILTINS {
        let wasm = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let dest = out.join(format!("{name}.wasm"));
        std::fs::copy(&wasm, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            dest.display()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin.rs"), code).expect("writing builtin.rs");
}

/// `rust-toolchain.toml` names the wasm32-wasip2 target, but rustup adds listed targets only
/// when it installs the toolchain; on a machine that already had this toolchain, add it here
/// so the first `cargo run` works without a manual step.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| d.is_dir()) {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target with rustup");
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    if !added.is_ok_and(|s| s.success()) {
        panic!(
            "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed; \
             install it to build the built-in handlers"
        );
    }
}
