//! The single ring-buffer reader: decodes records and hands each to the shard worker that
//! owns its connection, so every connection is parsed in order by one thread.

use std::{
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{SyncSender, TrySendError},
        Arc,
    },
    thread::{self, JoinHandle, Thread},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use monitor_common::EventKind;
use ringbuf::{
    traits::{Consumer, Producer},
    HeapCons, HeapProd,
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};

use super::event::Event;
use crate::{
    conn::shard::{reusable, Worker},
    health::Alive,
    identity::Identity,
    limits::Limit,
    metrics::register,
};

/// The kernel never wakes the reader (see `emit.rs`); records wait at most this long when
/// the reader was idle.
const POLL_MS: i32 = 10;

/// Where the reader sends one shard's events, and how it wakes that shard.
pub(crate) struct ShardInlet {
    pub queue: HeapProd<Event>,
    pub worker: Thread,
    /// Payload buffers the shard is done with, to be filled again.
    pub spares: HeapCons<Vec<u8>>,
}

/// What the reader counts: every record it takes off the ring, and the ones it cannot read.
#[derive(Clone)]
pub(crate) struct ReaderMetrics {
    received: Counter,
    undecodable: Counter,
}

impl ReaderMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        ReaderMetrics {
            received: register(
                registry,
                "monitor_events_received",
                "Ring-buffer records received by userspace",
            ),
            undecodable: register(
                registry,
                "monitor_events_undecodable",
                "Ring-buffer records that could not be decoded",
            ),
        }
    }
}

/// The shard of a connection, by its socket alone: every connection a socket carries goes
/// to one shard, which can tell when the kernel started one over.
pub(crate) fn shard_of(sock: u64, shards: usize) -> usize {
    let mut h = sock;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % shards.max(1) as u64) as usize
}

/// Where decoded events are parsed.
pub(crate) enum Parsing {
    /// By shard threads, each owning the connections hashed to it.
    Shards(Vec<ShardInlet>),
    /// Here, on the reader thread, with one buffer used again for every payload: with one
    /// parsing worker a hand-off to another thread would only add a copy, a queue and a
    /// wake-up per event, and the payload would be read on another core than wrote it.
    Inline(Box<Worker>, Vec<u8>),
}

/// Decodes records and hands them to the shards, or parses them here (see [`Parsing`]);
/// exec events go to `execs` (the TLS attacher) instead.
pub(crate) fn spawn(
    mut ring: RingBuf<MapData>,
    mut parsing: Parsing,
    execs: SyncSender<u32>,
    identity: Arc<Identity>,
    metrics: ReaderMetrics,
    stop: Arc<AtomicBool>,
    alive: Alive,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("ringbuf-reader".into())
        .spawn(move || {
            let _alive = alive;
            let fd = ring.as_raw_fd();
            let shards = match &parsing {
                Parsing::Shards(inlets) => inlets.len(),
                Parsing::Inline(..) => 0,
            };
            let mut woken = vec![false; shards];
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&raw mut pfd, 1, POLL_MS) };
                let mut batch = 0;
                while let Some(item) = ring.next() {
                    batch += 1;
                    // The shard is chosen once, where the header is first read.
                    let mut shard = 0;
                    let decoded = Event::decode_with(&item, |sock| match &mut parsing {
                        Parsing::Shards(inlets) => {
                            shard = shard_of(sock, inlets.len());
                            inlets[shard].spares.try_pop()
                        }
                        Parsing::Inline(_, spare) => Some(std::mem::take(spare)),
                    });
                    match decoded {
                        Ok(event) if event.kind == EventKind::Exec => {
                            // Now, while the process most likely still exists.
                            identity.on_exec(event.header.pid, &event.data);
                            if let Err(TrySendError::Full(_)) = execs.try_send(event.header.pid) {
                                Limit::ExecQueue.reached();
                            }
                        }
                        Ok(event) => {
                            metrics.received.inc();
                            match &mut parsing {
                                Parsing::Shards(inlets) => {
                                    push(&mut inlets[shard], event, &stop);
                                    woken[shard] = true;
                                }
                                Parsing::Inline(worker, spare) => {
                                    worker.handle(&event);
                                    if reusable(&event.data) {
                                        *spare = event.data;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            metrics.undecodable.inc();
                            log::debug!("undecodable ring-buffer record: {e}");
                        }
                    }
                    // Wake workers regularly inside long bursts so they start early.
                    if batch % 256 == 0 {
                        wake(&parsing, &mut woken);
                    }
                }
                wake(&parsing, &mut woken);
                if let Parsing::Inline(worker, _) = &mut parsing {
                    worker.between_bursts();
                }
            }
        })
}

fn wake(parsing: &Parsing, woken: &mut [bool]) {
    let Parsing::Shards(inlets) = parsing else {
        return;
    };
    for (i, w) in woken.iter_mut().enumerate() {
        if *w {
            inlets[i].worker.unpark();
            *w = false;
        }
    }
}

/// Waits for room rather than dropping: backpressure fills the ring buffer, where the
/// kernel counts what it cannot write.
fn push(inlet: &mut ShardInlet, mut event: Event, stop: &AtomicBool) {
    loop {
        match inlet.queue.try_push(event) {
            Ok(()) => return,
            Err(back) => {
                event = back;
                inlet.worker.unpark();
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_micros(50));
            }
        }
    }
}
