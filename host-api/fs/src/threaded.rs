//! Runs a reader that is not `Send` (ext4-view keeps its state in an `Rc`; fatfs in a
//! `RefCell`) on a thread of its own, so the [`Filesystem`](crate::Filesystem) we hand out is
//! `Send + Sync` without any `unsafe`. Calls are serialised, which these readers need anyway.

use crate::{Error, Result, resolve::Raw};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

type Job = Box<dyn FnOnce(&mut dyn Raw) + Send>;

/// A handle to a reader living on its own thread. Dropping it ends the thread.
pub(crate) struct Threaded {
    tx: Mutex<Sender<Job>>,
}

impl Threaded {
    /// Starts a thread that builds the reader with `make` and then serves calls. Returns the
    /// handle and whatever `make` reported alongside the reader (label, UUID, ...).
    pub(crate) fn spawn<R, I>(
        make: impl FnOnce() -> Result<(R, I)> + Send + 'static,
    ) -> Result<(Self, I)>
    where
        R: Raw + 'static,
        I: Send + 'static,
    {
        let (tx, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<Result<I>>();
        std::thread::Builder::new()
            .name("guestkit-fs".into())
            .spawn(move || {
                let mut raw = match make() {
                    Ok((raw, info)) => {
                        let _ = ready_tx.send(Ok(info));
                        raw
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut raw);
                }
            })
            .map_err(|e| {
                Error::Block(guestkit_block::Error::io(
                    "starting filesystem reader thread",
                    e,
                ))
            })?;
        let info = ready_rx
            .recv()
            .map_err(|_| Error::corrupt("filesystem", "reader thread ended while opening"))??;
        Ok((Threaded { tx: Mutex::new(tx) }, info))
    }

    /// Runs `f` on the reader's thread and waits for its result.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Raw) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply_tx, reply_rx) = channel();
        let job: Job = Box::new(move |raw| {
            let _ = reply_tx.send(f(raw));
        });
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            tx.send(job)
                .map_err(|_| Error::corrupt("filesystem", "reader thread has ended"))?;
        }
        reply_rx
            .recv()
            .map_err(|_| Error::corrupt("filesystem", "reader thread panicked"))?
    }
}
