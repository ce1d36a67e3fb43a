//! Per-job resource limits and the store limiter that enforces and measures memory.

use std::time::Duration;

/// What one job may consume. Every job runs in a fresh instance under these limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLimits {
    /// Fuel (roughly, wasm instructions) the job may burn: the CPU quota.
    pub fuel: u64,
    /// Linear memory the job's instance may hold in total, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time from instantiation to the handler's return.
    pub wall_clock: Duration,
    /// Largest accepted output document, in bytes.
    pub max_output_bytes: usize,
    /// Most bytes a single guest-to-host call may transfer (strings, lists).
    pub hostcall_bytes: usize,
    /// Most elements any one table may grow to.
    pub table_elements: usize,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            fuel: 20_000_000_000,
            memory_bytes: 512 << 20,
            wall_clock: Duration::from_secs(300),
            max_output_bytes: 16 << 20,
            hostcall_bytes: 1 << 20,
            table_elements: 100_000,
        }
    }
}

/// Limits for a handler's `describe` call at load time: small, since it must be cheap.
pub fn describe_limits() -> JobLimits {
    JobLimits {
        fuel: 1_000_000_000,
        memory_bytes: 64 << 20,
        wall_clock: Duration::from_secs(5),
        max_output_bytes: 1 << 20,
        hostcall_bytes: 64 << 10,
        table_elements: 100_000,
    }
}

/// A `ResourceLimiter` that caps the total linear memory of one store, remembers its peak and
/// whether a request was refused (so a failed job can say "memory limit" instead of "trap").
#[derive(Debug)]
pub(crate) struct JobLimiter {
    memory_limit: usize,
    table_limit: usize,
    current: usize,
    peak: usize,
    /// Largest total size refused, if any growth was refused.
    refused: Option<usize>,
}

impl JobLimiter {
    pub(crate) fn new(limits: &JobLimits) -> Self {
        JobLimiter {
            memory_limit: limits.memory_bytes,
            table_limit: limits.table_elements,
            current: 0,
            peak: 0,
            refused: None,
        }
    }

    /// Highest total linear memory the store held.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// The total size of the largest refused growth, if any.
    pub(crate) fn refused(&self) -> Option<usize> {
        self.refused
    }
}

impl wasmtime::ResourceLimiter for JobLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.current.saturating_sub(current).saturating_add(desired);
        if total > self.memory_limit {
            self.refused = Some(self.refused.map_or(total, |r| r.max(total)));
            return Ok(false);
        }
        self.current = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_limit)
    }

    fn instances(&self) -> usize {
        // A component made by wit-component has a handful of core instances.
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn limiter_counts_total_across_memories_and_refuses_over_limit() {
        let mut l = JobLimiter::new(&JobLimits {
            memory_bytes: 100,
            ..JobLimits::default()
        });
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 30, None).unwrap());
        assert_eq!(l.peak(), 90);
        assert!(!l.memory_growing(60, 80, None).unwrap());
        assert_eq!(l.refused(), Some(110));
        assert!(l.memory_growing(60, 70, None).unwrap());
        assert_eq!(l.peak(), 100);
    }
}
