//! Tools for handler authors behind `guestkit-worker handler ...`: `new` scaffolds a crate that
//! builds as-is with plain cargo, `check` validates a component the way the registry loads it
//! and prints what it says about itself.
//!
//! `check` takes a [`CheckPolicy`]: which imports and operations are acceptable. The default
//! is what this host provides; a stricter policy (a tenant's) narrows it.

use crate::client::{self, OutputFormat};
use crate::engine::{Sandbox, digest};
use crate::registry::{self, HandlerMeta, HandlerSource, MAX_HANDLER_BYTES};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use wasmtime::component::types::ComponentItem;

/// The WIT package every handler targets, as this worker was built with it.
pub const HANDLER_WIT: &str = include_str!("../../wit/handler.wit");

/// The version of wit-bindgen scaffolded crates use.
pub const WIT_BINDGEN_VERSION: &str = "0.63";

/// `guestkit-worker handler ...`: tools for handler authors.
#[derive(Debug, clap::Args)]
pub struct HandlerCommand {
    #[command(subcommand)]
    command: HandlerSubcommand,
}

#[derive(Debug, clap::Subcommand)]
enum HandlerSubcommand {
    /// Create a handler crate (plain cargo + wit-bindgen) that builds as it is.
    New(NewArgs),
    /// Validate a component as the worker would load it and print what it declares.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// Crate name, also the handler's operation: a lowercase letter, then [a-z0-9_-], at
    /// most 64 characters.
    name: String,
    /// Directory to create (default: ./NAME). Must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The component file (`.wasm`).
    file: PathBuf,
    /// Output format.
    #[arg(long, short = 'O', value_enum, default_value = "table")]
    output: OutputFormat,
    /// Only allow imports matching this pattern (repeatable; `*` at the end matches any rest,
    /// e.g. `guestkit:handler/*`). Default: everything this worker provides.
    #[arg(long = "allow-import", value_name = "PATTERN")]
    allow_imports: Vec<String>,
    /// Only allow serving operations matching this pattern (repeatable, e.g. `inspect.*`).
    /// Default: any valid operation name.
    #[arg(long = "allow-operation", value_name = "PATTERN")]
    allow_operations: Vec<String>,
}

impl CheckArgs {
    /// The policy the flags describe: the host's defaults, narrowed by `--allow-*`.
    fn policy(&self) -> CheckPolicy {
        let mut policy = CheckPolicy::default();
        if !self.allow_imports.is_empty() {
            policy.allowed_imports = self.allow_imports.clone();
        }
        if !self.allow_operations.is_empty() {
            policy.allowed_operations = Some(self.allow_operations.clone());
        }
        policy
    }
}

/// Runs a `handler` subcommand. Exit codes: 0 ok, 1 the component is invalid, and errors
/// (returned) are a wrong invocation (2).
pub async fn main(cmd: HandlerCommand, cache_dir: Option<PathBuf>) -> Result<ExitCode> {
    match cmd.command {
        HandlerSubcommand::New(args) => {
            let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
            let files = scaffold(&args.name, &dir)?;
            let mut text = format!("created handler crate {} in {}\n", args.name, dir.display());
            for f in files {
                let _ = writeln!(text, "  {}", f.display());
            }
            let wasm = wasm_file_name(&args.name);
            let _ = write!(
                text,
                "\nnext:\n  cd {dir}\n  cargo build --release\n  guestkit-worker handler check target/wasm32-wasip2/release/{wasm}\n  \
                 guestkit-worker run --handler target/wasm32-wasip2/release/{wasm} -p @payload.json --image DISK_IMAGE",
                dir = dir.display()
            );
            say(&text);
            Ok(ExitCode::SUCCESS)
        }
        HandlerSubcommand::Check(args) => {
            let sandbox = Sandbox::new(crate::EngineConfig {
                cache_dir,
                pool_slots: 4,
                ..crate::EngineConfig::default()
            })?;
            let report = check_file(&sandbox, &args.file, &args.policy()).await?;
            let doc = serde_json::to_value(&report)?;
            say(&client::render(args.output, &doc, check_table));
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Prints to stdout; a reader that went away (`| head`) ends the command quietly.
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

// ---------------------------------------------------------------------------------------------
// handler check

/// The interfaces this host links for handlers: the guestkit world's and WASI 0.2's (what
/// `wasmtime_wasi::p2` provides). A handler that imports anything else does not load.
pub const HOST_INTERFACES: &[&str] = &[
    "guestkit:handler/types@0.1.0",
    "guestkit:handler/log@0.1.0",
    "guestkit:handler/progress@0.1.0",
    "guestkit:handler/disk@0.1.0",
    "guestkit:handler/checksum@0.1.0",
    "wasi:io/error@0.2",
    "wasi:io/poll@0.2",
    "wasi:io/streams@0.2",
    "wasi:clocks/monotonic-clock@0.2",
    "wasi:clocks/wall-clock@0.2",
    "wasi:filesystem/types@0.2",
    "wasi:filesystem/preopens@0.2",
    "wasi:random/random@0.2",
    "wasi:random/insecure@0.2",
    "wasi:random/insecure-seed@0.2",
    "wasi:cli/environment@0.2",
    "wasi:cli/exit@0.2",
    "wasi:cli/stdin@0.2",
    "wasi:cli/stdout@0.2",
    "wasi:cli/stderr@0.2",
    "wasi:cli/terminal-input@0.2",
    "wasi:cli/terminal-output@0.2",
    "wasi:cli/terminal-stdin@0.2",
    "wasi:cli/terminal-stdout@0.2",
    "wasi:cli/terminal-stderr@0.2",
    "wasi:sockets/network@0.2",
    "wasi:sockets/instance-network@0.2",
    "wasi:sockets/tcp@0.2",
    "wasi:sockets/tcp-create-socket@0.2",
    "wasi:sockets/udp@0.2",
    "wasi:sockets/udp-create-socket@0.2",
    "wasi:sockets/ip-name-lookup@0.2",
];

/// What a component may import and serve to pass [`check_file`].
///
/// Patterns are exact names, or end in `*` to match any rest (`wasi:cli/*`, `inspect.*`). An
/// import name is matched with its version (`wasi:cli/stdout@0.2.6`); a pattern that names no
/// version (`wasi:cli/stdout`) matches every version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPolicy {
    /// Import patterns allowed; an import matching none makes the component invalid.
    pub allowed_imports: Vec<String>,
    /// Operation patterns allowed; `None` allows every valid operation name.
    pub allowed_operations: Option<Vec<String>>,
}

impl Default for CheckPolicy {
    /// Everything this host provides: the guestkit interfaces and WASI 0.2.
    fn default() -> Self {
        CheckPolicy {
            allowed_imports: vec!["guestkit:handler/*".into(), "wasi:*".into()],
            allowed_operations: None,
        }
    }
}

impl CheckPolicy {
    /// Whether the policy allows importing `name`.
    pub fn allows_import(&self, name: &str) -> bool {
        self.allowed_imports.iter().any(|p| matches(p, name))
    }

    /// Whether the policy allows serving `operation`.
    pub fn allows_operation(&self, operation: &str) -> bool {
        self.allowed_operations
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| matches(p, operation)))
    }
}

/// `pattern` against `name`: exact, `*`-suffixed prefix, or versionless (`a:b/c` matches
/// `a:b/c@1.2.3`).
fn matches(pattern: &str, name: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return name.starts_with(prefix);
    }
    name == pattern || (!pattern.contains('@') && name.split('@').next() == Some(pattern))
}

/// Whether this host links `name` (an import of a component): a known interface, with the
/// guestkit version exact and any WASI 0.2.x.
pub fn host_provides(name: &str) -> bool {
    HOST_INTERFACES
        .iter()
        .any(|known| name == *known || name.starts_with(&format!("{known}.")))
}

/// What kind of file was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WasmKind {
    /// A WebAssembly component (what handlers are).
    Component,
    /// A core WebAssembly module: not a component.
    CoreModule,
    /// Not WebAssembly at all.
    NotWasm,
}

/// One import of a component.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The import's name, e.g. `guestkit:handler/disk@0.1.0`.
    pub name: String,
    /// `instance`, `func`, `type`, `resource`, `module` or `component`.
    pub kind: &'static str,
    /// Whether this host links it (known interface, or the component linked).
    pub provided: bool,
    /// Whether the policy allows it.
    pub allowed: bool,
}

/// The outcome of [`check_file`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The file checked.
    pub file: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// sha256 of its bytes: the identity the worker reports for it.
    pub digest: String,
    /// What the file is.
    pub wasm: WasmKind,
    /// Whether the component would load and passes the policy.
    pub ok: bool,
    /// Why not, one line each.
    pub problems: Vec<String>,
    /// What it imports.
    pub imports: Vec<ImportReport>,
    /// What it exports (names).
    pub exports: Vec<String>,
    /// What `describe()` said, validated, when it could be called.
    pub handler: Option<HandlerMeta>,
}

/// Checks a component file: that it is a component, compiles, imports only what the host
/// provides and `policy` allows, exports `describe` and `handle` with the world's types, and
/// that `describe()` answers validly under the load-time limits (the registry's own load
/// path). Problems with the component are in the report (`ok: false`); an error is returned
/// only when the file cannot be read.
pub async fn check_file(
    sandbox: &Arc<Sandbox>,
    path: &Path,
    policy: &CheckPolicy,
) -> Result<CheckReport> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > MAX_HANDLER_BYTES {
        bail!(
            "{}: {} bytes is more than the {MAX_HANDLER_BYTES} bytes a handler may have",
            path.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    check_bytes(sandbox, path, bytes, policy).await
}

/// [`check_file`] on bytes already read; `path` is for the report.
pub async fn check_bytes(
    sandbox: &Arc<Sandbox>,
    path: &Path,
    bytes: Vec<u8>,
    policy: &CheckPolicy,
) -> Result<CheckReport> {
    let mut report = CheckReport {
        file: path.to_path_buf(),
        size: bytes.len() as u64,
        digest: digest(&bytes),
        wasm: wasm_kind(&bytes),
        ok: false,
        problems: Vec::new(),
        imports: Vec::new(),
        exports: Vec::new(),
        handler: None,
    };
    match report.wasm {
        WasmKind::Component => {}
        WasmKind::CoreModule => {
            report.problems.push(
                "a core WebAssembly module, not a component: build with `--target \
                 wasm32-wasip2` (or `cargo component build`)"
                    .into(),
            );
            return Ok(report);
        }
        WasmKind::NotWasm => {
            report
                .problems
                .push("not a WebAssembly file (no `\\0asm` header)".into());
            return Ok(report);
        }
    }

    // Compile once to read the component's types; the registry's load below compiles again
    // through the same cache (a hit when a cache directory is configured).
    let compiler = sandbox.clone();
    let key = report.digest.clone();
    let wasm = bytes.clone();
    let component = match tokio::task::spawn_blocking(move || compiler.compile(&wasm, &key))
        .await
        .context("compiler thread panicked")?
    {
        Ok(c) => c,
        Err(e) => {
            report
                .problems
                .push(format!("does not compile: {}", one_line(&e)));
            return Ok(report);
        }
    };
    let ty = component.component_type();
    let engine = component.engine();
    for (name, item) in ty.imports(engine) {
        let entry = ImportReport {
            name: name.to_string(),
            kind: item_kind(&item.ty),
            provided: host_provides(name),
            allowed: policy.allows_import(name),
        };
        if !entry.allowed {
            report
                .problems
                .push(format!("imports {name}, which the policy does not allow"));
        }
        report.imports.push(entry);
    }
    report.imports.sort_by(|a, b| {
        (a.name.starts_with("wasi:"), &a.name).cmp(&(b.name.starts_with("wasi:"), &b.name))
    });
    for (name, item) in ty.exports(engine) {
        report.exports.push(name.to_string());
        if matches!(name, "describe" | "handle")
            && !matches!(item.ty, ComponentItem::ComponentFunc(_))
        {
            report
                .problems
                .push(format!("exports `{name}`, but not as a function"));
        }
    }
    report.exports.sort();
    for required in ["describe", "handle"] {
        if !report.exports.iter().any(|e| e == required) {
            report.problems.push(format!(
                "does not export `{required}` (a handler exports describe and handle of \
                 world guestkit:handler/handler)"
            ));
        }
    }
    // Imports outside the known list are named here; whether the host links them is for
    // the linker below to say (it is the authority, the list only explains its refusal).
    let unknown: Vec<String> = report
        .imports
        .iter()
        .filter(|i| !i.provided)
        .map(|i| {
            format!(
                "imports {}, which this worker may not provide (it provides the \
                 guestkit:handler@0.1.0 interfaces and WASI 0.2)",
                i.name
            )
        })
        .collect();
    if !report.problems.is_empty() {
        report.problems.extend(unknown);
        return Ok(report);
    }
    drop(component);

    // The registry's own path: link against the host, call describe() under the load-time
    // limits, validate what it says.
    let source = HandlerSource::File(path.to_path_buf());
    match registry::load(sandbox, bytes, report.digest.clone(), source).await {
        Ok(loaded) => {
            for op in &loaded.meta.operations {
                if !policy.allows_operation(op) {
                    report.problems.push(format!(
                        "serves operation '{op}', which the policy does not allow"
                    ));
                }
            }
            report.handler = Some(loaded.meta.clone());
            // Linked: whatever it imports, this host provides.
            for import in &mut report.imports {
                import.provided = true;
            }
        }
        Err(e) => {
            report.problems.extend(unknown);
            report.problems.push(one_line(&e));
        }
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// What a file's header says it is.
pub fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => WasmKind::CoreModule,
        // Components: a version word of their own and layer 1.
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => WasmKind::Component,
        _ => WasmKind::NotWasm,
    }
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core-func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// The table form of a check report.
fn check_table(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "file:        {}", doc["file"].as_str().unwrap_or(""));
    let _ = writeln!(out, "sha256:      {}", doc["digest"].as_str().unwrap_or(""));
    let _ = writeln!(out, "size:        {} bytes", doc["size"]);
    let _ = writeln!(out, "kind:        {}", doc["wasm"].as_str().unwrap_or(""));
    let handler = &doc["handler"];
    if handler.is_object() {
        let _ = writeln!(
            out,
            "handler:     {} {}",
            handler["name"].as_str().unwrap_or(""),
            handler["version"].as_str().unwrap_or("")
        );
        let ops: Vec<&str> = handler["operations"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "operations:  {}", ops.join(", "));
        let _ = writeln!(
            out,
            "description: {}",
            handler["description"].as_str().unwrap_or("")
        );
        match &handler["payload_schema"] {
            Value::Null => {
                let _ = writeln!(out, "payload schema: (none published)");
            }
            schema => {
                let _ = writeln!(out, "payload schema: {schema}");
            }
        }
    }
    let _ = writeln!(out, "imports:");
    for import in doc["imports"].as_array().into_iter().flatten() {
        let status = match (import["provided"].as_bool(), import["allowed"].as_bool()) {
            (Some(true), Some(true)) => "ok",
            (Some(false), _) => "NOT PROVIDED",
            _ => "NOT ALLOWED",
        };
        let _ = writeln!(
            out,
            "  {:<44} {:<9} {status}",
            import["name"].as_str().unwrap_or(""),
            import["kind"].as_str().unwrap_or("")
        );
    }
    let exports: Vec<&str> = doc["exports"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "exports:     {}", exports.join(", "));
    if doc["ok"] == json!(true) {
        let _ = write!(out, "result:      ok");
    } else {
        let _ = writeln!(out, "result:      INVALID");
        for p in doc["problems"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  - {}", p.as_str().unwrap_or(""));
        }
    }
    out.trim_end().to_string()
}

// ---------------------------------------------------------------------------------------------
// handler new

/// Whether `name` can be both a crate name and an operation name: a lowercase ASCII letter,
/// then lowercase letters, digits, `-` or `_`, 64 characters at most.
pub fn valid_handler_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The file name cargo gives the component of crate `name`.
pub fn wasm_file_name(name: &str) -> String {
    format!("{}.wasm", name.replace('-', "_"))
}

/// Writes a new handler crate named `name` into `dir` (created; it must not exist or be
/// empty) and returns the files written, relative to `dir`. The crate depends only on
/// crates.io crates (wit-bindgen, serde, serde_json) and carries its own copy of the WIT, so
/// it builds anywhere with `cargo build --release` (its `.cargo/config.toml` selects
/// `wasm32-wasip2`).
pub fn scaffold(name: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    if !valid_handler_name(name) {
        bail!(
            "handler name {name:?}: use a lowercase letter, then lowercase letters, digits, \
             '-' or '_' (at most 64 characters); it names the crate and the operation"
        );
    }
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("--dir {}", dir.display()))?;
        if entries.next().is_some() {
            bail!("{} already exists and is not empty", dir.display());
        }
    }
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", template_cargo_toml(name)),
        (".cargo/config.toml", TEMPLATE_CARGO_CONFIG.to_string()),
        (".gitignore", "/target\n".to_string()),
        ("wit/handler.wit", HANDLER_WIT.to_string()),
        ("src/lib.rs", TEMPLATE_LIB_RS.replace("{{name}}", name)),
        ("README.md", template_readme(name)),
        (
            "payload.json",
            "{\"path\": \"/etc/hostname\"}\n".to_string(),
        ),
        (
            "job.json",
            format!(
                "{}\n",
                serde_json::to_string_pretty(&json!({
                    "operation": name,
                    "payload": {"path": "/etc/os-release", "max_bytes": 4096},
                    "images": ["disk.qcow2"],
                    "execution": {"timeout_seconds": 60},
                }))?
            ),
        ),
    ];
    let mut written = Vec::new();
    for (rel, content) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        written.push(PathBuf::from(rel));
    }
    Ok(written)
}

fn template_cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = {{ version = "{WIT_BINDGEN_VERSION}", default-features = false, features = ["macros", "realloc"] }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A workspace of its own, so the crate builds wherever it is put.
[workspace]
"#
    )
}

const TEMPLATE_CARGO_CONFIG: &str = r#"# Handlers are WebAssembly components: `cargo build` targets wasm32-wasip2 here
# (`rustup target add wasm32-wasip2` once), which makes a component directly.
[build]
target = "wasm32-wasip2"
"#;

const TEMPLATE_LIB_RS: &str = r##"//! `{{name}}`: a guestkit handler component.
//!
//! Operation `{{name}}` reads one file (payload `path`, default `/etc/hostname`) from every
//! filesystem on every image the job grants and returns what it found. Replace the body of
//! `handle` with your own logic; the WIT in `wit/handler.wit` documents every call.

wit_bindgen::generate!({
    world: "handler",
    path: "wit",
});

use guestkit::handler::disk::{self, DiskError, FileKind};
use guestkit::handler::log::{Level, log};
use serde::{Deserialize, Serialize};
// `HandlerInfo`, `Job`, `Output`, `HandlerError` and the `Guest` trait are generated at the
// crate root by `generate!` (the world uses them).

/// The payload `handle` accepts; unknown fields are refused so a typo is not ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    /// Absolute path of the file to read in each filesystem.
    #[serde(default = "default_path")]
    path: String,
    /// Most bytes read from it (the host serves at most 1 MiB per call).
    #[serde(default = "default_max_bytes")]
    max_bytes: u32,
}

fn default_path() -> String {
    "/etc/hostname".into()
}

fn default_max_bytes() -> u32 {
    64 * 1024
}

/// JSON Schema of the payload, published through `describe()`.
const PAYLOAD_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "absolute path of the file to read"},
    "max_bytes": {"type": "integer", "minimum": 1, "maximum": 1048576}
  },
  "additionalProperties": false
}"#;

/// What was found on one filesystem.
#[derive(Debug, Serialize)]
struct Found {
    image: String,
    volume: String,
    fs_type: Option<String>,
    /// The file's text (lossy UTF-8), when it was there.
    text: Option<String>,
    /// Why it could not be read, otherwise.
    error: Option<String>,
}

/// A disk error as `what: kind: message`.
fn disk_error(what: &str, e: DiskError) -> HandlerError {
    let message = format!("{what}: {e:?}");
    match e {
        DiskError::Io(_) => HandlerError::Failed(message),
        DiskError::Unsupported(_) => HandlerError::Unsupported(message),
        _ => HandlerError::InvalidInput(message),
    }
}

fn read_file(fs: &disk::Filesystem, path: &str, max_bytes: u32) -> Result<String, DiskError> {
    let stat = fs.stat(path)?;
    if stat.kind != FileKind::File {
        return Err(DiskError::Invalid(format!("{path} is not a regular file")));
    }
    let len = stat.size.min(u64::from(max_bytes)).max(1) as u32;
    let bytes = fs.read_file(path, 0, len.min(1 << 20))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

struct Component;

impl Guest for Component {
    fn describe() -> HandlerInfo {
        HandlerInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec!["{{name}}".into()],
            description: "Reads one file from every filesystem of the granted images.".into(),
            payload_schema: Some(PAYLOAD_SCHEMA.into()),
        }
    }

    fn handle(job: Job) -> Result<Output, HandlerError> {
        // A job without a payload carries `null`: use the defaults.
        let text = if job.payload.trim() == "null" { "{}" } else { &job.payload };
        let payload: Payload = serde_json::from_str(text)
            .map_err(|e| HandlerError::InvalidInput(format!("payload: {e}")))?;
        if !payload.path.starts_with('/') {
            return Err(HandlerError::InvalidInput("payload.path: must be absolute".into()));
        }
        let mut found = Vec::new();
        for name in &job.images {
            let image = disk::open(name).map_err(|e| disk_error(name, e))?;
            let volumes = image.volumes().map_err(|e| disk_error(name, e))?;
            for volume in volumes {
                let fs_type = volume.fs_type.clone();
                if matches!(fs_type.as_deref(), None | Some("swap" | "LVM2_member")) {
                    continue;
                }
                let result = image
                    .open_filesystem(&volume.id)
                    .and_then(|fs| read_file(&fs, &payload.path, payload.max_bytes));
                let (text, error) = match result {
                    Ok(text) => (Some(text), None),
                    Err(e) => (None, Some(format!("{e:?}"))),
                };
                found.push(Found {
                    image: name.clone(),
                    volume: volume.id,
                    fs_type,
                    text,
                    error,
                });
            }
        }
        log(
            Level::Info,
            &format!("read {} from {} filesystem(s)", payload.path, found.len()),
        );
        let data = serde_json::json!({ "path": payload.path, "found": found });
        Ok(Output {
            data: data.to_string(),
        })
    }
}

export!(Component);
"##;

fn template_readme(name: &str) -> String {
    let wasm = wasm_file_name(name);
    format!(
        r#"# {name}

A guestkit handler component (WIT world `guestkit:handler/handler`, in `wit/handler.wit`).
Operation `{name}` reads a file (payload `path`, default `/etc/hostname`) from every
filesystem of the images the job grants.

## Build

```sh
rustup target add wasm32-wasip2          # once
cargo build --release                    # .cargo/config.toml selects --target wasm32-wasip2
```

The component is `target/wasm32-wasip2/release/{wasm}`.

## Check and run locally

```sh
guestkit-worker handler check target/wasm32-wasip2/release/{wasm}
guestkit-worker run --handler target/wasm32-wasip2/release/{wasm} -p @payload.json --image disk.qcow2
```

`handler check` says whether the worker would load it (imports, exports, `describe()`); `run`
runs one job in the worker's sandbox and prints the result with what it used (fuel, memory,
time).

## Deploy

Copy the `.wasm` into the worker's handlers directory (`--handlers-dir`, by default
`guestkit-data/handlers`); the worker loads it without a restart. Then submit a job:

```sh
guestkit-worker submit job.json --wait
```

(`job.json` names `disk.qcow2`, relative to the worker's image root.)
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_handler_name("my-handler"));
        assert!(valid_handler_name("a1_b"));
        assert!(!valid_handler_name("1abc"));
        assert!(!valid_handler_name("My"));
        assert!(!valid_handler_name("a.b"));
        assert!(!valid_handler_name(""));
        assert!(!valid_handler_name(&"a".repeat(65)));
        assert_eq!(wasm_file_name("my-handler"), "my_handler.wasm");
    }

    #[test]
    fn policy_patterns() {
        let p = CheckPolicy::default();
        assert!(p.allows_import("wasi:cli/stdout@0.2.6"));
        assert!(p.allows_import("guestkit:handler/disk@0.1.0"));
        assert!(!p.allows_import("other:pkg/x"));
        assert!(p.allows_operation("anything"));
        let strict = CheckPolicy {
            allowed_imports: vec!["guestkit:handler/*".into(), "wasi:cli/stderr".into()],
            allowed_operations: Some(vec!["inspect.*".into(), "echo".into()]),
        };
        assert!(strict.allows_import("wasi:cli/stderr@0.2.0"));
        assert!(!strict.allows_import("wasi:sockets/tcp@0.2.0"));
        assert!(strict.allows_operation("inspect.os"));
        assert!(strict.allows_operation("echo"));
        assert!(!strict.allows_operation("echo2"));
    }

    #[test]
    fn host_interfaces() {
        assert!(host_provides("guestkit:handler/disk@0.1.0"));
        assert!(!host_provides("guestkit:handler/disk@0.2.0"));
        assert!(host_provides("wasi:io/streams@0.2.3"));
        assert!(!host_provides("wasi:io/streams@0.3.0"));
        assert!(!host_provides("wasi:http/types@0.2.0"));
    }

    #[test]
    fn kinds() {
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0rest"), WasmKind::CoreModule);
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0rest"), WasmKind::Component);
        assert_eq!(wasm_kind(b"#!/bin/sh"), WasmKind::NotWasm);
        assert_eq!(wasm_kind(b""), WasmKind::NotWasm);
    }

    #[test]
    fn scaffold_refuses_bad_names_and_non_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scaffold("Bad Name", &dir.path().join("x")).is_err());
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert!(scaffold("ok", dir.path()).is_err());
        let files = scaffold("ok", &dir.path().join("ok")).unwrap();
        assert!(files.contains(&PathBuf::from("wit/handler.wit")));
        let lib = std::fs::read_to_string(dir.path().join("ok/src/lib.rs")).unwrap();
        assert!(lib.contains("operations: vec![\"ok\".into()]"));
        assert!(!lib.contains("{{name}}"));
    }
}
