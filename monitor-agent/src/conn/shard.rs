//! Shard workers: one thread per core, each owning the connections hashed to it.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
        Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use ringbuf::{
    traits::{Consumer, Producer},
    HeapCons, HeapProd,
};

use super::{ConnMetrics, ConnTracker};
use crate::{capture::event::Event, clock::Clock, health::Alive, record::CallRecord};

/// How often idle connections are swept.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

/// Most calls handed to the pipeline at once: calls travel in batches, so a channel
/// operation and the move of a record's bytes are paid per batch, not per call.
pub(crate) const RECORD_BATCH: usize = 256;

/// Payload buffers a shard hands back to the reader for reuse, at most; and the largest
/// one kept (bigger ones are freed): at most 2 MiB per shard held for reuse.
pub(crate) const SPARES: usize = 256;
const SPARE_MAX_BYTES: usize = 8192;
/// Smaller buffers (a close's empty one) would be grown again by the next event.
const SPARE_MIN_BYTES: usize = crate::capture::event::MIN_BUFFER;

/// The shard's end of its queues: events in, spent payload buffers back.
pub(crate) struct ShardQueues {
    pub events: HeapCons<Event>,
    pub spares: HeapProd<Vec<u8>>,
}

pub(crate) fn spawn(
    index: usize,
    queues: ShardQueues,
    mut tracker: ConnTracker,
    records: Option<SyncSender<Vec<Arc<CallRecord>>>>,
    metrics: ConnMetrics,
    stop: Arc<AtomicBool>,
    alive: Alive,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            let _alive = alive;
            let ShardQueues {
                events: mut queue,
                mut spares,
            } = queues;
            let mut out = Vec::new();
            let mut last_sweep = Clock::monotonic_now_ns();
            let mut counted = 0usize;
            let mut buffered = 0usize;
            loop {
                let mut busy = false;
                while let Some(ev) = queue.try_pop() {
                    busy = true;
                    tracker.handle(&ev, &mut out);
                    if (SPARE_MIN_BYTES..=SPARE_MAX_BYTES).contains(&ev.data.capacity()) {
                        // A full return queue frees the buffer here instead.
                        let _ = spares.try_push(ev.data);
                    }
                    if out.len() >= RECORD_BATCH {
                        hand_on(&records, &mut out, &metrics);
                    }
                }
                hand_on(&records, &mut out, &metrics);
                let now = Clock::monotonic_now_ns();
                if now.saturating_sub(last_sweep) >= SWEEP_EVERY_NS {
                    let now_buffered = tracker.sweep(now);
                    metrics
                        .parser_buffered_bytes
                        .inc_by(now_buffered as i64 - buffered as i64);
                    buffered = now_buffered;
                    last_sweep = now;
                    crate::allocator::tidy();
                }
                let len = tracker.tracked();
                if len != counted {
                    metrics
                        .tracked_connections
                        .inc_by(len as i64 - counted as i64);
                    counted = len;
                }
                if stop.load(Ordering::Relaxed) && !busy {
                    break;
                }
                if !busy {
                    thread::park_timeout(Duration::from_millis(200));
                }
            }
        })
}

/// Sends the calls in `out` to the pipeline as one batch (waiting while it is behind).
fn hand_on(
    records: &Option<SyncSender<Vec<Arc<CallRecord>>>>,
    out: &mut Vec<Arc<CallRecord>>,
    metrics: &ConnMetrics,
) {
    if out.is_empty() {
        return;
    }
    let batch = std::mem::replace(out, Vec::with_capacity(RECORD_BATCH));
    let n = batch.len() as u64;
    if let Some(tx) = records {
        if tx.send(batch).is_err() {
            metrics.records_dropped.inc_by(n);
        }
    }
}
