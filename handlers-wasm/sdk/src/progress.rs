//! A progress reporter that rate-limits itself, so a loop can call it on every item.
//!
//! The host keeps only the latest report and passes on at most one per 100 ms; every report
//! still costs a call across the sandbox boundary. [`Progress`] makes the call only when
//! enough time has passed or the work is done.

use std::time::{Duration, Instant};

/// The smallest interval between two reports the host passes on.
pub const HOST_INTERVAL: Duration = Duration::from_millis(100);

/// Reports `done` of `total` units of work (`total` 0: unknown) with a short message, straight
/// to the host (no rate limiting here; the host keeps the latest).
pub fn report(done: u64, total: u64, message: &str) {
    crate::bindings::guestkit::handler::progress::report(done, total, message)
}

/// Counts work done and reports it at most once per interval.
///
/// ```ignore
/// let mut progress = sdk::Progress::new(files.len() as u64, "hashing files");
/// for file in &files {
///     hash(file)?;
///     progress.advance(1);
/// }
/// progress.finish("hashed every file");
/// ```
#[derive(Debug)]
pub struct Progress {
    done: u64,
    total: u64,
    message: String,
    interval: Duration,
    last: Option<Instant>,
    sink: fn(u64, u64, &str),
}

impl Progress {
    /// A reporter for `total` units (0 when unknown) described by `message`; reports at most
    /// once per [`HOST_INTERVAL`].
    pub fn new(total: u64, message: impl Into<String>) -> Self {
        Progress {
            done: 0,
            total,
            message: message.into(),
            interval: HOST_INTERVAL,
            last: None,
            sink: report,
        }
    }

    /// Reports at most once per `interval` instead.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Changes the total (e.g. once a count becomes known).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// Changes the message of the next reports.
    pub fn set_message(&mut self, message: impl Into<String>) {
        self.message = message.into();
    }

    /// Adds `n` units and reports if the interval has passed (or the total is reached).
    pub fn advance(&mut self, n: u64) {
        self.set(self.done.saturating_add(n));
    }

    /// Sets the units done and reports if the interval has passed (or the total is reached).
    pub fn set(&mut self, done: u64) {
        self.done = done;
        let now = Instant::now();
        let due = match self.last {
            None => true,
            Some(last) => now.duration_since(last) >= self.interval,
        };
        if due || (self.total > 0 && done >= self.total) {
            self.last = Some(now);
            (self.sink)(self.done, self.total, &self.message);
        }
    }

    /// Reports the final state with `message`, whatever the interval.
    pub fn finish(&mut self, message: impl Into<String>) {
        self.message = message.into();
        if self.total > 0 {
            self.done = self.done.max(self.total);
        }
        self.last = Some(Instant::now());
        (self.sink)(self.done, self.total, &self.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<(u64, u64, String)>> = Mutex::new(Vec::new());

    fn record(done: u64, total: u64, message: &str) {
        SEEN.lock().unwrap().push((done, total, message.into()));
    }

    #[test]
    fn reports_first_last_and_not_in_between() {
        let mut p = Progress::new(1000, "walking").with_interval(Duration::from_secs(3600));
        p.sink = record;
        for _ in 0..1000 {
            p.advance(1);
        }
        p.finish("done");
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (1, 1000, "walking".to_string()),
                (1000, 1000, "walking".to_string()),
                (1000, 1000, "done".to_string()),
            ]
        );
    }
}
