//! What the HTTP benchmarks share: a worker started in this process, on its own runtime.

#![allow(dead_code)]

use guestkit_worker::daemon::{self, DaemonConfig};
use std::time::Duration;

/// A worker serving on an ephemeral port; stopped by [`Worker::stop`].
pub struct Worker {
    /// `http://ADDR/api/v1`.
    pub base: String,
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A daemon configuration for a benchmark: data in `data_dir`, API on an ephemeral port, no
/// metrics listener, the benchmarks' shared compile cache.
pub fn config(data_dir: std::path::PathBuf) -> DaemonConfig {
    let mut config = DaemonConfig::new(data_dir);
    config.listen = "127.0.0.1:0".parse().expect("literal address");
    config.metrics_listen = None;
    config.cache_dir = Some(std::env::temp_dir().join("guestkit-bench-cache"));
    config
}

impl Worker {
    /// Starts the worker on a runtime of its own (two threads, like a separate process
    /// on this machine would get) and waits until it is ready.
    pub fn start(config: DaemonConfig) -> Worker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let task = runtime.spawn(async move {
            daemon::run(
                config,
                async {
                    let _ = stop_rx.await;
                },
                move |api, _| {
                    let _ = addr_tx.send(api);
                },
            )
            .await
        });
        let api = addr_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("worker ready");
        Worker {
            base: format!("http://{api}/api/v1"),
            runtime,
            stop,
            task,
        }
    }

    /// Shuts the worker down gracefully and waits for it.
    pub fn stop(self) {
        let _ = self.stop.send(());
        self.runtime
            .block_on(self.task)
            .expect("worker task")
            .expect("worker run");
    }
}

/// The runtime the load generator runs on.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `p` (0..=1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// An environment variable as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
