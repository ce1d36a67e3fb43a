//! Jobs this worker finished recently, kept in memory so that the client waiting for a
//! result (usually right after it submitted the job) gets it without reading the store.
//!
//! A finished job never changes again, and an entry is added only after its completion is
//! committed, so an answer from here is the same as one from the store. Bounded by entries
//! and by bytes; the oldest entries go first. Jobs with large documents or outputs are not
//! kept (the store serves them).

use guestkit_store::{Job, JobResult};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Most jobs kept.
const MAX_ENTRIES: usize = 8192;
/// Most bytes kept (serialized size of jobs and results).
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Largest single entry kept.
const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// A finished job and, when it succeeded, its result.
#[derive(Debug)]
pub struct Finished {
    /// The job in its terminal state.
    pub job: Job,
    /// Its result (succeeded jobs only).
    pub result: Option<JobResult>,
}

/// The cache; cheap to share.
#[derive(Default)]
pub struct RecentResults {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, (Arc<Finished>, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl RecentResults {
    /// Remembers a job that reached a terminal state (others are ignored).
    pub fn insert(&self, job: Job, result: Option<JobResult>) {
        if !job.state.is_terminal() {
            return;
        }
        let Some(size) = serialized_size(&job, result.as_ref()) else {
            return;
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let id = job.id.clone();
        if inner.map.contains_key(&id) {
            return;
        }
        while !inner.order.is_empty()
            && (inner.order.len() >= MAX_ENTRIES || inner.bytes + size > MAX_BYTES)
        {
            if let Some(old) = inner.order.pop_front()
                && let Some((_, n)) = inner.map.remove(&old)
            {
                inner.bytes -= n;
            }
        }
        inner.bytes += size;
        inner.order.push_back(id.clone());
        inner
            .map
            .insert(id, (Arc::new(Finished { job, result }), size));
    }

    /// The finished job `id`, if it is kept here and belongs to `tenant` (any tenant for
    /// `None`).
    pub fn get(&self, tenant: Option<&str>, id: &str) -> Option<Arc<Finished>> {
        let inner = self.inner.lock().ok()?;
        let (finished, _) = inner.map.get(id)?;
        match tenant {
            Some(t) if finished.job.tenant != t => None,
            _ => Some(finished.clone()),
        }
    }
}

/// Serialized size of the entry, or None when it is larger than [`MAX_ENTRY_BYTES`].
fn serialized_size(job: &Job, result: Option<&JobResult>) -> Option<usize> {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, job).ok()?;
    if let Some(result) = result {
        serde_json::to_writer(&mut counter, result).ok()?;
    }
    (counter.0 <= MAX_ENTRY_BYTES).then_some(counter.0)
}

/// Counts bytes written; stops the writer once past the entry limit.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        if self.0 > MAX_ENTRY_BYTES {
            return Err(std::io::Error::other("entry too large to keep"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestkit_store::JobState;
    use serde_json::json;

    fn job(id: &str, tenant: &str, state: JobState, payload_bytes: usize) -> Job {
        Job {
            seq: 1,
            id: id.into(),
            tenant: tenant.into(),
            operation: "echo".into(),
            payload: json!("x".repeat(payload_bytes)),
            images: json!([]),
            priority: 5,
            max_attempts: 1,
            timeout_ms: 1000,
            deadline_ms: None,
            idempotency_key: None,
            cancellable: true,
            document: json!({}),
            state,
            attempt: 1,
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: Some(1),
            run_after: 0,
            lease_owner: None,
            lease_expires_at: None,
            fencing_token: 1,
            cancel_requested: false,
            last_error: None,
            usage: None,
            progress: None,
        }
    }

    #[test]
    fn keeps_terminal_jobs_per_tenant() {
        let recent = RecentResults::default();
        recent.insert(job("a", "t1", JobState::Succeeded, 10), None);
        recent.insert(job("b", "t1", JobState::Running, 10), None);
        assert!(recent.get(Some("t1"), "a").is_some());
        assert!(recent.get(None, "a").is_some());
        assert!(
            recent.get(Some("t2"), "a").is_none(),
            "another tenant's job"
        );
        assert!(recent.get(None, "b").is_none(), "not terminal");
    }

    #[test]
    fn bounded_by_entries_and_size() {
        let recent = RecentResults::default();
        recent.insert(job("big", "t", JobState::Failed, MAX_ENTRY_BYTES), None);
        assert!(recent.get(None, "big").is_none(), "too large to keep");
        for i in 0..MAX_ENTRIES + 10 {
            recent.insert(job(&format!("j{i}"), "t", JobState::Succeeded, 8), None);
        }
        assert!(recent.get(None, "j0").is_none(), "oldest evicted");
        assert!(recent.get(None, &format!("j{}", MAX_ENTRIES + 9)).is_some());
        let inner = recent.inner.lock().expect("lock");
        assert_eq!(inner.map.len(), MAX_ENTRIES);
        assert!(inner.bytes <= MAX_BYTES);
    }
}
