//! The handler registry: built-in components plus every `.wasm` in a handlers directory,
//! mapped by operation and hot-reloaded when files are added, replaced or removed.
//!
//! Readers take an `Arc` of the current [`Snapshot`]; a reload builds a new snapshot and swaps
//! it in. A job that already holds a handler keeps running on it, so a replace or remove never
//! disturbs running work. A file that fails to load is reported in the snapshot's errors and,
//! if an earlier version of the same file loaded, that version keeps serving.

use crate::engine::{InstanceState, Sandbox, digest};
use anyhow::{Context, Result, bail};
use guestkit_host_api::HandlerPre;
use serde::Serialize;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{Mutex, mpsc, watch};

/// Largest handler file accepted.
pub const MAX_HANDLER_BYTES: u64 = 64 << 20;

/// Where a handler came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum HandlerSource {
    /// Compiled into the worker binary.
    Builtin(String),
    /// A file in the handlers directory.
    File(PathBuf),
}

/// What a handler says about itself, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandlerMeta {
    /// Handler name.
    pub name: String,
    /// Handler version.
    pub version: String,
    /// Operations served.
    pub operations: Vec<String>,
    /// Human description.
    pub description: String,
    /// JSON Schema of the payload, if published.
    pub payload_schema: Option<serde_json::Value>,
}

/// A compiled, linked, described handler, ready to instantiate per job.
pub struct LoadedHandler {
    /// Its self-description.
    pub meta: HandlerMeta,
    /// sha256 of the component bytes: the handler's identity.
    pub digest: String,
    /// Where it came from.
    pub source: HandlerSource,
    /// Size of the component in bytes.
    pub size: u64,
    /// When this worker loaded it.
    pub loaded_at: SystemTime,
    pre: HandlerPre<InstanceState>,
}

impl LoadedHandler {
    /// The pre-linked instance template jobs are instantiated from.
    pub fn pre(&self) -> &HandlerPre<InstanceState> {
        &self.pre
    }

    fn at(&self, source: HandlerSource) -> LoadedHandler {
        LoadedHandler {
            meta: self.meta.clone(),
            digest: self.digest.clone(),
            source,
            size: self.size,
            loaded_at: self.loaded_at,
            pre: self.pre.clone(),
        }
    }
}

impl std::fmt::Debug for LoadedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedHandler")
            .field("meta", &self.meta)
            .field("digest", &self.digest)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A handler file that could not be loaded (or lost an operation to another handler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// sha256 of the file, when it could be read.
    pub digest: Option<String>,
    /// What went wrong.
    pub error: String,
}

/// One consistent view of the loaded handlers.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Incremented on every reload that changed something.
    pub generation: u64,
    /// Serving handlers, directory ones (by file name) then built-ins.
    pub handlers: Vec<Arc<LoadedHandler>>,
    /// Files that failed to load, and why.
    pub errors: Vec<LoadError>,
    by_operation: HashMap<String, Arc<LoadedHandler>>,
    /// Tenant-private handlers (`HANDLERS_DIR/<tenant>/*.wasm`), by tenant.
    pub private: HashMap<String, PrivateHandlers>,
}

/// The handlers only one tenant sees; they take precedence over shared ones for it.
#[derive(Debug, Default)]
pub struct PrivateHandlers {
    /// Serving handlers, by file name.
    pub handlers: Vec<Arc<LoadedHandler>>,
    /// Files that failed to load, and why.
    pub errors: Vec<LoadError>,
    by_operation: HashMap<String, Arc<LoadedHandler>>,
}

impl Snapshot {
    /// The shared handler serving `operation`.
    pub fn get(&self, operation: &str) -> Option<&Arc<LoadedHandler>> {
        self.by_operation.get(operation)
    }

    /// The handler serving `operation` for `tenant`: its private one, else the shared one.
    /// The flag says whether it is private.
    pub fn get_for(&self, tenant: &str, operation: &str) -> Option<(&Arc<LoadedHandler>, bool)> {
        if let Some(h) = self
            .private
            .get(tenant)
            .and_then(|p| p.by_operation.get(operation))
        {
            return Some((h, true));
        }
        self.by_operation.get(operation).map(|h| (h, false))
    }

    /// All served operations (shared and private), sorted.
    pub fn operations(&self) -> Vec<&str> {
        let mut ops: Vec<&str> = self
            .by_operation
            .keys()
            .chain(self.private.values().flat_map(|p| p.by_operation.keys()))
            .map(String::as_str)
            .collect();
        ops.sort_unstable();
        ops.dedup();
        ops
    }

    /// [`Snapshot::operations`], owned.
    pub fn operation_names(&self) -> Vec<String> {
        self.operations().into_iter().map(String::from).collect()
    }
}

/// Identity of a file's current contents without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            ino: meta.ino(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
}

#[derive(Clone)]
struct FileState {
    stamp: Stamp,
    digest: Option<String>,
    /// The version currently loaded from this file, if any loaded.
    loaded: Option<Arc<LoadedHandler>>,
    /// Why the current contents did not load.
    error: Option<String>,
}

/// Settings of a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// The handlers directory, if any.
    pub dir: Option<PathBuf>,
    /// Whether the built-in handlers serve operations no directory handler claims.
    pub builtins: bool,
    /// Tenants whose private subdirectory (`dir/<tenant>/`) is loaded for them alone.
    pub tenants: Vec<String>,
}

/// The handler registry.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    dir: Option<PathBuf>,
    tenants: Vec<String>,
    builtins: Vec<Arc<LoadedHandler>>,
    builtin_errors: Vec<LoadError>,
    current: RwLock<Arc<Snapshot>>,
    /// Scan state; holding this lock also serialises rescans.
    files: Mutex<HashMap<PathBuf, FileState>>,
    generation: watch::Sender<u64>,
}

impl Registry {
    /// Loads the built-ins (if enabled) and the directory's handlers.
    pub async fn new(sandbox: Arc<Sandbox>, config: RegistryConfig) -> Result<Arc<Self>> {
        let mut builtins = Vec::new();
        let mut builtin_errors = Vec::new();
        if config.builtins {
            for (name, bytes) in crate::builtin::BUILTINS {
                let source = HandlerSource::Builtin((*name).to_string());
                match load(&sandbox, bytes.to_vec(), digest(bytes), source).await {
                    Ok(h) => builtins.push(Arc::new(h)),
                    Err(e) => builtin_errors.push(LoadError {
                        path: PathBuf::from(format!("builtin:{name}")),
                        digest: Some(digest(bytes)),
                        error: format!("{e:#}"),
                    }),
                }
            }
        }
        if let Some(dir) = &config.dir
            && !dir.is_dir()
        {
            bail!("handlers directory {} does not exist", dir.display());
        }
        let registry = Arc::new(Registry {
            sandbox,
            dir: config.dir,
            tenants: config.tenants,
            builtins,
            builtin_errors,
            current: RwLock::new(Arc::new(Snapshot::default())),
            files: Mutex::new(HashMap::new()),
            generation: watch::Sender::new(0),
        });
        registry.rescan().await?;
        Ok(registry)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The handler currently serving `operation`.
    pub fn get(&self, operation: &str) -> Option<Arc<LoadedHandler>> {
        self.snapshot().get(operation).cloned()
    }

    /// The handlers directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Subscribes to snapshot generations: the value changes on every reload that changed
    /// something.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads the handlers directory and swaps in a new snapshot if anything changed.
    /// Unchanged files (same size, inode, mtime, ctime) are not read again; a file whose
    /// digest is already loaded (a rename, a copy) is not compiled again.
    pub async fn rescan(&self) -> Result<()> {
        let mut files = self.files.lock().await;
        let listing = match &self.dir {
            Some(dir) => {
                let mut listing = list_wasm_files(dir)?;
                for tenant in &self.tenants {
                    let private = dir.join(tenant);
                    if private.is_dir() {
                        listing.extend(list_wasm_files(&private)?);
                    }
                }
                listing
            }
            None => Vec::new(),
        };
        let by_digest: HashMap<String, Arc<LoadedHandler>> = files
            .values()
            .filter_map(|f| f.loaded.clone())
            .map(|h| (h.digest.clone(), h))
            .collect();

        let mut next: HashMap<PathBuf, FileState> = HashMap::new();
        let mut changed = files.len() != listing.len();
        for (path, stamp) in listing {
            if let Some(old) = files.get(&path)
                && old.stamp == stamp
            {
                next.insert(path, old.clone());
                continue;
            }
            changed = true;
            let previous = files.get(&path).and_then(|f| f.loaded.clone());
            let state = self.load_file(&path, stamp, previous, &by_digest).await;
            next.insert(path, state);
        }
        for path in files.keys() {
            if !next.contains_key(path) {
                tracing::info!(target: "audit", event = "handler_unload",
                    path = %path.display(), "handler removed");
            }
        }
        *files = next;
        let first = self.snapshot().generation == 0;
        if changed || first {
            self.publish(&files);
        }
        Ok(())
    }

    async fn load_file(
        &self,
        path: &Path,
        stamp: Stamp,
        previous: Option<Arc<LoadedHandler>>,
        by_digest: &HashMap<String, Arc<LoadedHandler>>,
    ) -> FileState {
        let source = HandlerSource::File(path.to_path_buf());
        let read = if stamp.len > MAX_HANDLER_BYTES {
            Err(anyhow::anyhow!(
                "{} bytes is more than the {MAX_HANDLER_BYTES} bytes a handler may have",
                stamp.len
            ))
        } else {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let (digest, result) = match read {
            Ok(bytes) => {
                let d = digest(&bytes);
                let result = match by_digest.get(&d) {
                    Some(same) => Ok(Arc::new(same.at(source))),
                    None => load(&self.sandbox, bytes, d.clone(), source)
                        .await
                        .map(Arc::new),
                };
                (Some(d), result)
            }
            Err(e) => (None, Err(e)),
        };
        match result {
            Ok(handler) => {
                let verb = if previous.is_some() {
                    "replaced"
                } else {
                    "loaded"
                };
                tracing::info!(
                    target: "audit",
                    event = "handler_load",
                    path = %path.display(),
                    name = %handler.meta.name,
                    version = %handler.meta.version,
                    digest = %handler.digest,
                    operations = ?handler.meta.operations,
                    "handler {verb}"
                );
                FileState {
                    stamp,
                    digest,
                    loaded: Some(handler),
                    error: None,
                }
            }
            Err(e) => {
                let mut error = format!("{e:#}");
                if let Some(prev) = &previous {
                    error.push_str(&format!(
                        " (still serving the previous version {})",
                        prev.digest
                    ));
                }
                tracing::error!(target: "audit", event = "handler_load_failed",
                    path = %path.display(), error = %error, "handler failed to load");
                FileState {
                    stamp,
                    digest,
                    loaded: previous,
                    error: Some(error),
                }
            }
        }
    }

    fn publish(&self, files: &HashMap<PathBuf, FileState>) {
        let mut paths: Vec<&PathBuf> = files.keys().collect();
        paths.sort();
        let mut snapshot = Snapshot::default();
        snapshot.errors.extend(self.builtin_errors.iter().cloned());
        for path in paths {
            let file = &files[path];
            if let Some(tenant) = self.private_owner(path) {
                let private = snapshot.private.entry(tenant.to_string()).or_default();
                if let Some(error) = &file.error {
                    private.errors.push(LoadError {
                        path: path.clone(),
                        digest: file.digest.clone(),
                        error: error.clone(),
                    });
                }
                if let Some(handler) = &file.loaded {
                    if let Some(op) = handler
                        .meta
                        .operations
                        .iter()
                        .find(|op| private.by_operation.contains_key(*op))
                    {
                        private.errors.push(LoadError {
                            path: path.clone(),
                            digest: Some(handler.digest.clone()),
                            error: format!(
                                "operation '{op}' is already served by another private handler"
                            ),
                        });
                        continue;
                    }
                    for op in &handler.meta.operations {
                        private.by_operation.insert(op.clone(), handler.clone());
                    }
                    private.handlers.push(handler.clone());
                }
                continue;
            }
            if let Some(error) = &file.error {
                snapshot.errors.push(LoadError {
                    path: path.clone(),
                    digest: file.digest.clone(),
                    error: error.clone(),
                });
            }
            let Some(handler) = &file.loaded else {
                continue;
            };
            let taken: Vec<&String> = handler
                .meta
                .operations
                .iter()
                .filter(|op| snapshot.by_operation.contains_key(*op))
                .collect();
            if let Some(op) = taken.first() {
                let owner = &snapshot.by_operation[*op];
                let error = format!(
                    "operation '{op}' is already served by {}",
                    describe_source(&owner.source)
                );
                tracing::error!(path = %path.display(), %error, "handler not served");
                snapshot.errors.push(LoadError {
                    path: path.clone(),
                    digest: Some(handler.digest.clone()),
                    error,
                });
                continue;
            }
            for op in &handler.meta.operations {
                snapshot.by_operation.insert(op.clone(), handler.clone());
            }
            snapshot.handlers.push(handler.clone());
        }
        // Built-ins serve what no directory handler claims: an operator can override them.
        for handler in &self.builtins {
            let free: Vec<&String> = handler
                .meta
                .operations
                .iter()
                .filter(|op| !snapshot.by_operation.contains_key(*op))
                .collect();
            if free.is_empty() {
                continue;
            }
            for op in free {
                snapshot.by_operation.insert(op.clone(), handler.clone());
            }
            snapshot.handlers.push(handler.clone());
        }
        let generation = *self.generation.borrow() + 1;
        snapshot.generation = generation;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        self.generation.send_replace(generation);
    }

    /// The tenant whose private directory holds `path`, if any.
    fn private_owner(&self, path: &Path) -> Option<&str> {
        let dir = self.dir.as_ref()?;
        let parent = path.parent()?;
        if parent == dir {
            return None;
        }
        let name = parent.strip_prefix(dir).ok()?.to_str()?;
        self.tenants.iter().find(|t| *t == name).map(String::as_str)
    }

    /// Watches the handlers directory and rescans on every change (debounced), and every
    /// `poll` as a fallback for filesystems without change notifications. Stops when the
    /// returned guard is dropped. Must be called inside a tokio runtime.
    pub fn watch(self: &Arc<Self>, poll: Duration) -> Result<Option<WatchGuard>> {
        use notify::Watcher;
        let Some(dir) = self.dir.clone() else {
            return Ok(None);
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = tx.send(());
                }
            })
            .context("creating the handlers directory watcher")?;
        watcher
            .watch(&dir, notify::RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        let registry = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                match tokio::time::timeout(poll, rx.recv()).await {
                    Ok(None) => break,
                    Ok(Some(())) => {
                        // Let a burst of events (copy, write, rename) settle first.
                        let settle = tokio::time::sleep(Duration::from_millis(50));
                        tokio::pin!(settle);
                        loop {
                            tokio::select! {
                                _ = &mut settle => break,
                                more = rx.recv() => if more.is_none() { return },
                            }
                        }
                    }
                    Err(_) => {}
                }
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                if let Err(e) = registry.rescan().await {
                    tracing::error!(error = %format!("{e:#}"), "rescanning handlers directory");
                }
            }
        });
        Ok(Some(WatchGuard {
            _watcher: watcher,
            task,
        }))
    }
}

/// Keeps the directory watcher running; dropping it stops the watcher.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn describe_source(source: &HandlerSource) -> String {
    match source {
        HandlerSource::Builtin(name) => format!("built-in handler {name}"),
        HandlerSource::File(path) => path.display().to_string(),
    }
}

/// Regular `*.wasm` files directly in `dir`, sorted; hidden files (in-progress copies) skipped.
fn list_wasm_files(dir: &Path) -> Result<Vec<(PathBuf, Stamp)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".wasm") {
            continue;
        }
        // Follow symlinks (a common deployment pattern) but only to regular files.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            out.push((entry.path(), Stamp::of(&meta)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Compiles (on a blocking thread: it takes tens of milliseconds), links and describes one
/// component.
pub async fn load(
    sandbox: &Arc<Sandbox>,
    bytes: Vec<u8>,
    digest: String,
    source: HandlerSource,
) -> Result<LoadedHandler> {
    let size = bytes.len() as u64;
    let compiler = sandbox.clone();
    let key = digest.clone();
    let component = tokio::task::spawn_blocking(move || compiler.compile(&bytes, &key))
        .await
        .context("compiler thread panicked")??;
    let pre = sandbox.prepare(&component)?;
    let info = sandbox.describe(&pre).await?;
    let meta = validate_info(info)?;
    Ok(LoadedHandler {
        meta,
        digest,
        source,
        size,
        loaded_at: SystemTime::now(),
        pre,
    })
}

/// Whether `op` is an acceptable operation name: 1-64 of `[a-z0-9._-]`, starting alphanumeric.
/// The same rule job documents are held to, so every servable operation can be submitted.
pub fn valid_operation_name(op: &str) -> bool {
    guestkit_protocol::is_valid_operation(op)
}

fn validate_info(info: guestkit_host_api::HandlerInfo) -> Result<HandlerMeta> {
    if info.name.trim().is_empty() || info.name.len() > 128 {
        bail!("describe(): name must be 1-128 characters");
    }
    if info.version.len() > 64 {
        bail!("describe(): version must be at most 64 characters");
    }
    if info.operations.is_empty() {
        bail!("describe(): the handler serves no operations");
    }
    for op in &info.operations {
        if !valid_operation_name(op) {
            bail!("describe(): operation name {op:?} is not 1-64 of [a-z0-9._-]");
        }
    }
    let mut ops = info.operations.clone();
    ops.sort();
    ops.dedup();
    if ops.len() != info.operations.len() {
        bail!("describe(): an operation is listed twice");
    }
    let payload_schema = match &info.payload_schema {
        Some(text) => Some(
            serde_json::from_str(text).context("describe(): payload-schema is not valid JSON")?,
        ),
        None => None,
    };
    Ok(HandlerMeta {
        name: info.name,
        version: info.version,
        operations: info.operations,
        description: info.description,
        payload_schema,
    })
}

#[cfg(test)]
mod tests {
    use super::valid_operation_name;

    #[test]
    fn operation_names() {
        assert!(valid_operation_name("echo"));
        assert!(valid_operation_name("guestkit.inspect-v2_x"));
        assert!(!valid_operation_name(""));
        assert!(!valid_operation_name(".hidden"));
        assert!(!valid_operation_name("Echo"));
        assert!(!valid_operation_name("a/b"));
        assert!(!valid_operation_name(&"a".repeat(65)));
    }
}
