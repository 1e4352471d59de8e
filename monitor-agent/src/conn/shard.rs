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
use crate::{
    capture::event::Event, clock::Clock, health::Alive, pipeline::Filer, record::CallRecord,
};

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

/// One parsing worker's state: its connections, the calls it has not handed on yet, and
/// its sweep's clock. Runs on a shard thread, or on the reader thread itself when there is
/// one worker (see [`crate::capture::reader::Parsing`]).
pub(crate) struct Worker {
    tracker: ConnTracker,
    out: Vec<Arc<CallRecord>>,
    records: Records,
    metrics: ConnMetrics,
    last_sweep: u64,
    counted: usize,
    buffered: usize,
}

/// Where a worker's calls go.
pub(crate) enum Records {
    /// To the pipeline thread, in batches (several workers).
    Queue(SyncSender<Vec<Arc<CallRecord>>>),
    /// Through the pipeline run here (one worker): no hand-off between threads.
    Here(Box<Filer>),
}

impl Drop for Worker {
    /// The pipeline run here files what is left, and stops waiting for other sides.
    fn drop(&mut self) {
        if let Records::Here(filer) = &mut self.records {
            filer.take(&mut self.out, true);
        }
    }
}

impl Worker {
    pub(crate) fn new(tracker: ConnTracker, records: Records, metrics: ConnMetrics) -> Worker {
        Worker {
            tracker,
            out: Vec::new(),
            records,
            metrics,
            last_sweep: Clock::monotonic_now_ns(),
            counted: 0,
            buffered: 0,
        }
    }

    pub(crate) fn handle(&mut self, ev: &Event) {
        self.tracker.handle(ev, &mut self.out);
        if self.out.len() >= RECORD_BATCH {
            self.hand_on();
        }
    }

    /// Sends the calls in `out` to the pipeline as one batch (waiting while it is behind),
    /// or files them here.
    pub(crate) fn hand_on(&mut self) {
        match &mut self.records {
            Records::Here(filer) => {
                if !self.out.is_empty() {
                    filer.take(&mut self.out, false);
                }
                filer.tick();
            }
            Records::Queue(tx) => {
                if self.out.is_empty() {
                    return;
                }
                let batch = std::mem::replace(&mut self.out, Vec::with_capacity(RECORD_BATCH));
                let n = batch.len() as u64;
                if tx.send(batch).is_err() {
                    self.metrics.records_dropped.inc_by(n);
                }
            }
        }
    }

    /// Between bursts: hands on what is pending, sweeps idle connections once a second and
    /// updates the gauges.
    pub(crate) fn between_bursts(&mut self) {
        self.hand_on();
        let now = Clock::monotonic_now_ns();
        if now.saturating_sub(self.last_sweep) >= SWEEP_EVERY_NS {
            let now_buffered = self.tracker.sweep(now);
            self.metrics
                .parser_buffered_bytes
                .inc_by(now_buffered as i64 - self.buffered as i64);
            self.buffered = now_buffered;
            self.last_sweep = now;
            crate::allocator::tidy();
        }
        let len = self.tracker.tracked();
        if len != self.counted {
            self.metrics
                .tracked_connections
                .inc_by(len as i64 - self.counted as i64);
            self.counted = len;
        }
    }
}

/// Whether a spent payload buffer is worth handing back for reuse.
pub(crate) fn reusable(buf: &Vec<u8>) -> bool {
    (SPARE_MIN_BYTES..=SPARE_MAX_BYTES).contains(&buf.capacity())
}

pub(crate) fn spawn(
    index: usize,
    queues: ShardQueues,
    mut worker: Worker,
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
            loop {
                let mut busy = false;
                while let Some(ev) = queue.try_pop() {
                    busy = true;
                    worker.handle(&ev);
                    if reusable(&ev.data) {
                        // A full return queue frees the buffer here instead.
                        let _ = spares.try_push(ev.data);
                    }
                }
                worker.between_bursts();
                if stop.load(Ordering::Relaxed) && !busy {
                    break;
                }
                if !busy {
                    thread::park_timeout(Duration::from_millis(200));
                }
            }
        })
}
