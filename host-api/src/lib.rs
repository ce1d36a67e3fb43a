//! Host side of the `guestkit:handler` WIT contract.
//!
//! This crate owns the generated bindings for the `handler` world and implements the host
//! interfaces a handler imports (`log`, `progress`; the disk stack's `disk` and `checksum`
//! come on top). It knows nothing of jobs, queues or HTTP: whatever a handler reports goes to
//! an [`Observer`] supplied by the embedder.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generated bindings for the `guestkit:handler/handler` world.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "handler",
        path: "../wit",
        // Jobs run with `call_async` so a wall-clock timeout or a cancel can drop a job that
        // is blocked inside a host call (e.g. a WASI sleep), not only one spinning in wasm.
        exports: { default: async },
        // Disk calls return wasmtime::Result so a bad resource handle traps the job
        // instead of panicking the host.
        imports: {
            "guestkit:handler/disk": trappable,
            "guestkit:handler/checksum": trappable,
        },
        with: {
            "guestkit:handler/disk.image": crate::disk::ImageHandle,
            "guestkit:handler/disk.filesystem": crate::disk::FsHandle,
        },
    });
}

pub mod disk;
pub use disk::{DiskCtx, GrantedImage};

pub use bindings::guestkit::handler::log::Level as LogLevel;
pub use bindings::guestkit::handler::types::{HandlerError, HandlerInfo, Job, Output};
pub use bindings::{Handler, HandlerPre};

/// Receives what a running handler reports. Implemented by the embedder (job events, a CLI).
pub trait Observer: Send + Sync {
    /// One log line from the handler (already truncated to the configured length).
    fn log(&self, level: LogLevel, message: &str);
    /// A progress report (already rate-limited).
    fn progress(&self, done: u64, total: u64, message: &str);
}

/// An observer that discards everything; for `describe` calls and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullObserver;

impl Observer for NullObserver {
    fn log(&self, _: LogLevel, _: &str) {}
    fn progress(&self, _: u64, _: u64, _: &str) {}
}

/// Bounds on what one job may push through the `log` and `progress` interfaces.
#[derive(Debug, Clone)]
pub struct ReportLimits {
    /// Log lines forwarded per job; the rest are dropped and counted.
    pub max_log_lines: u32,
    /// Longest forwarded log line in bytes; longer lines are cut at a char boundary.
    pub max_log_line_bytes: usize,
    /// Minimum time between forwarded progress reports; the latest report wins.
    pub progress_interval: Duration,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits {
            max_log_lines: 1000,
            max_log_line_bytes: 4096,
            progress_interval: Duration::from_millis(100),
        }
    }
}

/// Per-instance host state behind the `log` and `progress` imports.
pub struct HostCtx {
    observer: Arc<dyn Observer>,
    limits: ReportLimits,
    log_lines: u32,
    dropped_log_lines: u32,
    last_progress_at: Option<Instant>,
    held_progress: Option<(u64, u64, String)>,
    disk: DiskCtx,
}

impl HostCtx {
    /// State for one instance reporting to `observer`.
    pub fn new(observer: Arc<dyn Observer>, limits: ReportLimits) -> Self {
        HostCtx {
            observer,
            limits,
            log_lines: 0,
            dropped_log_lines: 0,
            last_progress_at: None,
            held_progress: None,
            disk: DiskCtx::default(),
        }
    }

    /// Grants the job's images (see [`disk`]).
    pub fn with_disk(mut self, disk: DiskCtx) -> Self {
        self.disk = disk;
        self
    }

    /// The job's disk state (bytes read so far).
    pub fn disk(&self) -> &DiskCtx {
        &self.disk
    }

    /// Log lines dropped because the job exceeded [`ReportLimits::max_log_lines`].
    pub fn dropped_log_lines(&self) -> u32 {
        self.dropped_log_lines
    }

    /// Forwards the last progress report held back by rate limiting; call when the job ends.
    pub fn flush(&mut self) {
        if let Some((done, total, message)) = self.held_progress.take() {
            self.observer.progress(done, total, &message);
        }
    }
}

/// Cuts `s` to at most `max` bytes without splitting a character.
fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl bindings::guestkit::handler::types::Host for HostCtx {}

impl bindings::guestkit::handler::log::Host for HostCtx {
    fn log(&mut self, level: LogLevel, mut message: String) {
        if self.log_lines >= self.limits.max_log_lines {
            self.dropped_log_lines = self.dropped_log_lines.saturating_add(1);
            return;
        }
        self.log_lines += 1;
        truncate_at_char_boundary(&mut message, self.limits.max_log_line_bytes);
        self.observer.log(level, &message);
    }
}

impl bindings::guestkit::handler::progress::Host for HostCtx {
    fn report(&mut self, done: u64, total: u64, mut message: String) {
        truncate_at_char_boundary(&mut message, self.limits.max_log_line_bytes);
        let now = Instant::now();
        let due = self
            .last_progress_at
            .is_none_or(|at| now.duration_since(at) >= self.limits.progress_interval);
        if due {
            self.last_progress_at = Some(now);
            self.held_progress = None;
            self.observer.progress(done, total, &message);
        } else {
            self.held_progress = Some((done, total, message));
        }
    }
}

/// Adds the host interfaces of the `handler` world to `linker`; `get` finds the [`HostCtx`]
/// inside the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut HostCtx,
) -> wasmtime::Result<()> {
    Handler::add_to_linker::<T, wasmtime::component::HasSelf<HostCtx>>(linker, get)
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// Position in [`LogLevel::ALL`]: a larger rank is more severe.
    pub fn rank(self) -> u8 {
        match self {
            LogLevel::Trace => 0,
            LogLevel::Debug => 1,
            LogLevel::Info => 2,
            LogLevel::Warn => 3,
            LogLevel::Error => 4,
        }
    }

    /// The level its [`Display`](std::fmt::Display) name denotes.
    pub fn from_name(name: &str) -> Option<LogLevel> {
        Self::ALL.into_iter().find(|l| l.to_string() == name)
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::guestkit::handler::log::Host as _;
    use bindings::guestkit::handler::progress::Host as _;
    use std::sync::Mutex;

    #[test]
    fn log_levels_by_name_and_rank() {
        for (i, level) in LogLevel::ALL.into_iter().enumerate() {
            assert_eq!(LogLevel::from_name(&level.to_string()), Some(level));
            assert_eq!(usize::from(level.rank()), i);
        }
        assert_eq!(LogLevel::from_name("verbose"), None);
        assert!(LogLevel::Debug.rank() < LogLevel::Info.rank());
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl Observer for Recorder {
        fn log(&self, level: LogLevel, message: &str) {
            self.0.lock().unwrap().push(format!("{level}:{message}"));
        }
        fn progress(&self, done: u64, total: u64, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{done}/{total}:{message}"));
        }
    }

    #[test]
    fn log_lines_are_capped_and_truncated() {
        let rec = Arc::new(Recorder::default());
        let limits = ReportLimits {
            max_log_lines: 2,
            max_log_line_bytes: 3,
            ..ReportLimits::default()
        };
        let mut host = HostCtx::new(rec.clone(), limits);
        host.log(LogLevel::Info, "héllo".into());
        host.log(LogLevel::Warn, "ab".into());
        host.log(LogLevel::Error, "dropped".into());
        assert_eq!(*rec.0.lock().unwrap(), ["info:hé", "warn:ab"]);
        assert_eq!(host.dropped_log_lines(), 1);
    }

    #[test]
    fn progress_is_rate_limited_and_latest_is_flushed() {
        let rec = Arc::new(Recorder::default());
        let limits = ReportLimits {
            progress_interval: Duration::from_secs(3600),
            ..ReportLimits::default()
        };
        let mut host = HostCtx::new(rec.clone(), limits);
        host.report(1, 10, "a".into());
        host.report(2, 10, "b".into());
        host.report(3, 10, "c".into());
        assert_eq!(*rec.0.lock().unwrap(), ["1/10:a"]);
        host.flush();
        assert_eq!(*rec.0.lock().unwrap(), ["1/10:a", "3/10:c"]);
    }
}
