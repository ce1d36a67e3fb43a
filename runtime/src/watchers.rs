//! Per-job change notifications. A long poll or an event stream waits on its own job only,
//! so a change wakes the requests watching that job, not every open request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Watchers of jobs that run on this worker, by job id.
#[derive(Default)]
pub struct JobWatchers {
    map: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// A subscription to one job's changes; unsubscribes on drop.
pub struct JobWatch {
    rx: watch::Receiver<u64>,
    id: String,
    owner: Arc<JobWatchers>,
}

impl JobWatchers {
    /// Subscribes to changes of `id` made from now on.
    pub fn watch(self: &Arc<Self>, id: &str) -> JobWatch {
        let rx = match self.map.lock() {
            Ok(mut map) => map
                .entry(id.to_string())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A poisoned map only loses notifications; callers also poll.
            Err(_) => watch::channel(0).1,
        };
        JobWatch {
            rx,
            id: id.to_string(),
            owner: self.clone(),
        }
    }

    /// Wakes everyone watching `id`.
    pub fn signal(&self, id: &str) {
        if let Ok(map) = self.map.lock()
            && let Some(tx) = map.get(id)
        {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Jobs watched right now.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nobody watches any job.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl JobWatch {
    /// Resolves at the next change (or never, if the watcher set went away).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        if let Ok(mut map) = self.owner.map.lock() {
            // Our receiver is still alive here: remove the entry when it is the last one.
            if map.get(&self.id).is_some_and(|tx| tx.receiver_count() <= 1) {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_signal_wakes_only_its_job_and_entries_go_away() {
        let watchers = Arc::new(JobWatchers::default());
        let mut a = watchers.watch("a");
        let mut b = watchers.watch("b");
        watchers.signal("a");
        tokio::time::timeout(Duration::from_secs(1), a.changed())
            .await
            .expect("a woke");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), b.changed())
                .await
                .is_err(),
            "b must not wake"
        );
        assert_eq!(watchers.len(), 2);
        drop(a);
        drop(b);
        assert!(watchers.is_empty());
    }
}
