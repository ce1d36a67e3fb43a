//! `guestkit-worker daemon`: wires store, sandbox, registry, executor, job service, HTTP API
//! and metrics together, and shuts them down in order.

use crate::api::{self, ApiState};
use crate::engine::{EngineConfig, Sandbox};
use crate::executor::{Executor, ExecutorConfig};
use crate::grants::ImagePolicy;
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryConfig};
use crate::service::{JobService, ServiceConfig};
use crate::tenants::Tenants;
use anyhow::{Context, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Address of `/metrics` (None: no metrics listener).
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for the SQLite database and the default handler and image directories.
    pub data_dir: PathBuf,
    /// `postgres://...` to share a queue between workers; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Handlers directory (default `data_dir/handlers`).
    pub handlers_dir: Option<PathBuf>,
    /// Directories images may be granted from (default `data_dir/images`).
    pub image_roots: Vec<PathBuf>,
    /// NBD URI prefixes jobs may name as images (none by default).
    pub nbd_allow: Vec<String>,
    /// Tenants file (TOML); without one the worker is single-tenant and asks for no token.
    pub tenants_file: Option<PathBuf>,
    /// Compile cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Executor settings (worker id, concurrency, lease, limits).
    pub executor: ExecutorConfig,
    /// Admission settings.
    pub service: ServiceConfig,
    /// How long running jobs may take to finish on shutdown before they are released.
    pub shutdown_grace: Duration,
    /// Fallback rescan period of the handlers directory (inotify does the real work).
    pub handlers_poll: Duration,
}

impl DaemonConfig {
    /// Defaults around a data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        DaemonConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            data_dir,
            database_url: None,
            handlers_dir: None,
            image_roots: Vec::new(),
            nbd_allow: Vec::new(),
            tenants_file: None,
            cache_dir: None,
            executor: ExecutorConfig::default(),
            service: ServiceConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            handlers_poll: Duration::from_secs(5),
        }
    }
}

/// Runs the daemon until `shutdown` resolves, then stops gracefully. `ready` is called
/// with the bound API and metrics addresses once both accept connections.
pub async fn run(
    mut config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let handlers_dir = config
        .handlers_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("handlers"));
    std::fs::create_dir_all(&handlers_dir)
        .with_context(|| format!("creating handlers dir {}", handlers_dir.display()))?;
    if config.image_roots.is_empty() {
        let images = config.data_dir.join("images");
        std::fs::create_dir_all(&images)
            .with_context(|| format!("creating image dir {}", images.display()))?;
        config.image_roots.push(images);
    }
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => config.data_dir.join("jobs.db").display().to_string(),
    };
    let store = guestkit_store::open_store(&url)
        .await
        .with_context(|| format!("opening the job store {}", redact(&url)))?;

    let limits = config.executor.limits.clone();
    let sandbox = Sandbox::new(EngineConfig {
        pool_slots: (config.executor.max_concurrent as u32).saturating_add(8),
        max_memory_bytes: limits.memory_bytes,
        cache_dir: config.cache_dir.clone(),
        ..EngineConfig::default()
    })?;
    let images = {
        let mut images = ImagePolicy::new(&config.image_roots)?;
        images.nbd_allow = config.nbd_allow.clone();
        images
    };
    let tenants = Arc::new(match &config.tenants_file {
        Some(path) => Tenants::load(path, &config.nbd_allow)?,
        None => Tenants::single(images.clone()),
    });
    if tenants.is_multi() {
        tracing::info!(
            tenants = tenants.all().len(),
            file = %config.tenants_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "multi-tenant: every API request needs a tenant's bearer token"
        );
    } else {
        tracing::warn!(
            listen = %config.listen,
            "single-tenant: no tenants file (--tenants), so the API asks for no credentials; \
             keep it on a loopback or otherwise private address"
        );
    }
    let registry = Registry::new(
        sandbox.clone(),
        RegistryConfig {
            dir: Some(handlers_dir.clone()),
            builtins: true,
            tenants: if tenants.is_multi() {
                tenants.all().iter().map(|t| t.id.clone()).collect()
            } else {
                Vec::new()
            },
        },
    )
    .await?;
    let _watch = registry.watch(config.handlers_poll)?;
    for e in &registry.snapshot().errors {
        tracing::warn!(file = %e.path.display(), error = %e.error, "handler not loaded");
    }
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let mut exec_config = config.executor.clone();
    exec_config.images = images;
    exec_config.tenants = tenants.clone();
    let (executor, tasks) = Executor::start(
        store.clone(),
        registry.clone(),
        sandbox.clone(),
        metrics.clone(),
        exec_config,
    );
    let service = JobService::start(
        store.clone(),
        registry.clone(),
        executor.clone(),
        metrics.clone(),
        tenants.clone(),
        config.service.clone(),
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the API address {}", config.listen))?;
    let api_addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = api::router(ApiState {
        service: service.clone(),
        started: Instant::now(),
    });
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        })
        .await
    });
    let metrics_server = metrics_listener.map(|l| {
        let router = api::metrics_router(service.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(l, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    });
    tracing::info!(api = %api_addr, metrics = ?metrics_addr, store = %redact(&url),
        worker = %executor.config().worker_id, "worker ready");
    ready(api_addr, metrics_addr);

    shutdown.await;
    tracing::info!("shutting down: no new jobs; finishing running ones");
    // The API keeps answering reads during the grace period; new submissions get 503.
    executor.shutdown(tasks, config.shutdown_grace).await;
    let _ = stop_tx.send(true);
    // Open event streams would hold a graceful shutdown forever; give them a moment.
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::info!("closing lingering connections");
    }
    if let Some(m) = metrics_server {
        let _ = tokio::time::timeout(Duration::from_secs(2), m).await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
