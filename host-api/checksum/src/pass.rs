//! One pass over a device feeding several hashers.
//!
//! The calling thread reads chunks into a small pool of reused buffers and hands each filled
//! buffer (shared through an `Arc`) to one hashing thread per algorithm over bounded channels.
//! Every hasher sends its reference back when done; the reader reuses a buffer once it holds the
//! only reference again. So reading overlaps hashing, algorithms hash in parallel, and nothing is
//! allocated per chunk.
//!
//! Measured on 2 idle cores against reading and hashing on one thread (1 GiB, page cache warm):
//! sha256 +12%, blake3 +35%, sha256+md5 +35%; through a compressed qcow2 the decompression overlaps
//! hashing too.

use std::panic;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::Duration;

use guestkit_block::BlockSource;

use crate::{Algorithm, Error, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Options, Result};

/// Buffers in flight: one being read, the rest queued or being hashed. Measured on 2 cores with
/// 1 MiB chunks: 2 stalls sha256+md5 (the faster hasher runs ahead of the slower) by ~10%, more
/// than 4 buys nothing.
const POOL: usize = 4;

/// How often a reader waiting for a buffer checks that no hasher has died.
const LIVENESS_POLL: Duration = Duration::from_millis(100);

/// A reusable read buffer and how much of it the current chunk fills.
struct Chunk {
    data: Vec<u8>,
    len: usize,
}

/// Hashes all of `source` with each of `algorithms` (distinct); returns the hex digests in the
/// same order.
pub(crate) fn run(
    source: &dyn BlockSource,
    algorithms: &[Algorithm],
    opts: &Options,
) -> Result<Vec<String>> {
    let total = source.size();
    let chunk = opts.chunk_size.clamp(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE);
    if total <= chunk as u64 {
        // One read: threads would only add their start-up cost.
        return inline(source, algorithms, opts);
    }
    pipelined(source, algorithms, chunk, opts)
}

/// Reads and hashes on the calling thread; for devices of at most one chunk.
fn inline(
    source: &dyn BlockSource,
    algorithms: &[Algorithm],
    opts: &Options,
) -> Result<Vec<String>> {
    let total = source.size();
    check_cancel(opts)?;
    // `run` only calls this when the device fits in one chunk, so the size fits in memory.
    let len = usize::try_from(total).map_err(|_| Error::Block(too_big(total)))?;
    let mut buf = vec![0u8; len];
    source.read_at(0, &mut buf)?;
    let mut hashers: Vec<_> = algorithms.iter().map(|a| a.hasher()).collect();
    for h in &mut hashers {
        h.update(&buf);
    }
    report(opts, total, total);
    Ok(hashers.into_iter().map(|h| h.finalize_hex()).collect())
}

fn pipelined(
    source: &dyn BlockSource,
    algorithms: &[Algorithm],
    chunk: usize,
    opts: &Options,
) -> Result<Vec<String>> {
    let (back_tx, back_rx) = mpsc::channel::<Arc<Chunk>>();
    thread::scope(|scope| {
        let mut feeds = Vec::with_capacity(algorithms.len());
        let mut workers = Vec::with_capacity(algorithms.len());
        for &algorithm in algorithms {
            let (feed, chunks) = mpsc::sync_channel::<Arc<Chunk>>(POOL);
            let back = back_tx.clone();
            workers.push(scope.spawn(move || {
                let mut hasher = algorithm.hasher();
                for chunk in chunks {
                    hasher.update(&chunk.data[..chunk.len]);
                    // Fails only once the reader has stopped and no longer wants buffers back.
                    let _ = back.send(chunk);
                }
                hasher.finalize_hex()
            }));
            feeds.push(feed);
        }
        drop(back_tx);

        let any_dead = || workers.iter().any(|w| w.is_finished());
        let read = read_all(source, chunk, opts, &feeds, &back_rx, &any_dead);
        // Closing the feeds lets every hasher finish what it was given and return.
        drop(feeds);
        let mut hex = Vec::with_capacity(workers.len());
        for worker in workers {
            match worker.join() {
                Ok(h) => hex.push(h),
                // A panicking hash crate is a bug, not bad input: pass it on unchanged.
                Err(payload) => panic::resume_unwind(payload),
            }
        }
        read.map(|()| hex)
    })
}

/// The reader's side: fills pooled buffers in order and sends each to every hasher. Returns
/// early (with `Ok`) if a hasher died; the caller's join then reports it.
fn read_all(
    source: &dyn BlockSource,
    chunk: usize,
    opts: &Options,
    feeds: &[SyncSender<Arc<Chunk>>],
    back: &Receiver<Arc<Chunk>>,
    any_dead: &dyn Fn() -> bool,
) -> Result<()> {
    let total = source.size();
    let mut free: Vec<Arc<Chunk>> = (0..POOL)
        .map(|_| {
            Arc::new(Chunk {
                data: vec![0u8; chunk],
                len: 0,
            })
        })
        .collect();
    let mut pos = 0u64;
    while pos < total {
        check_cancel(opts)?;
        let len = (total - pos).min(chunk as u64) as usize;
        let filled = loop {
            let mut slot = match free.pop() {
                Some(slot) => slot,
                None => match back.recv_timeout(LIVENESS_POLL) {
                    Ok(slot) => slot,
                    Err(RecvTimeoutError::Timeout) if !any_dead() => continue,
                    Err(_) => return Ok(()),
                },
            };
            // A returned reference is reusable once every hasher has returned its own; the
            // others are dropped here and the last one back wins.
            if let Some(buf) = Arc::get_mut(&mut slot) {
                source.read_at(pos, &mut buf.data[..len])?;
                buf.len = len;
                break slot;
            }
        };
        for feed in feeds {
            if feed.send(Arc::clone(&filled)).is_err() {
                return Ok(());
            }
        }
        pos += len as u64;
        report(opts, pos, total);
    }
    Ok(())
}

fn check_cancel(opts: &Options) -> Result<()> {
    match opts.cancel {
        Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Cancelled),
        _ => Ok(()),
    }
}

fn report(opts: &Options, done: u64, total: u64) {
    if let Some(progress) = opts.progress {
        progress(done, total);
    }
}

fn too_big(total: u64) -> guestkit_block::Error {
    guestkit_block::Error::Limit(format!("a device of {total} bytes does not fit in memory"))
}
