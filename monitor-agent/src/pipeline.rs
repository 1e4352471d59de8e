//! What happens to each call after reassembly: filed under its route, written to stdout,
//! counted once across client and server, then added to the inventory and the recent
//! calls. One thread, so the inventory has a single writer.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender},
        Arc, Mutex, RwLock,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::{
    calls::RecentCalls,
    clock::Clock,
    enforcement::Enforcement,
    health::Alive,
    identity::KubeIndex,
    inventory::{pairing::Pairing, Inventory},
    metrics::{register, traffic::TrafficRecorder},
    record::CallRecord,
    route::RouteKind,
    violations::{ViolationRecord, Violations},
};

/// How long a call seen from one side waits for its other side: far longer than the
/// skew between two shards, short enough that the inventory stays current.
const PAIRING_WINDOW_NS: u64 = 2_000_000_000;
/// Records handled per inventory lock.
const BATCH: usize = 1024;

/// What the pipeline counts, next to the traffic families it records into.
#[derive(Clone)]
pub(crate) struct PipelineMetrics {
    /// Also counted by the shards, when the pipeline cannot take their records.
    pub records_dropped: Counter,
    incomplete_calls: Counter,
    inventory_endpoints: Gauge,
    calls_paired: Counter,
}

impl PipelineMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        PipelineMetrics {
            records_dropped: register(
                registry,
                "monitor_records_dropped",
                "Call records not written because the output could not keep up",
            ),
            inventory_endpoints: register(
                registry,
                "monitor_inventory_endpoints",
                "Endpoints in the API inventory",
            ),
            calls_paired: register(
                registry,
                "monitor_calls_seen_by_both_sides",
                "Calls observed from both the client and the server process, counted once",
            ),
            incomplete_calls: register(
                registry,
                "monitor_calls_incomplete",
                "HTTP/2 calls whose method, path or status referred to header table entries sent before the agent joined the connection: reported as unknown, not filed in the inventory",
            ),
        }
    }
}

pub(crate) struct Pipeline {
    pub inventory: Arc<Mutex<Inventory>>,
    pub recent: Arc<RecentCalls>,
    pub output: Option<SyncSender<Arc<CallRecord>>>,
    pub metrics: PipelineMetrics,
    pub traffic: TrafficRecorder,
    pub enforcement: Arc<Enforcement>,
    pub violations: Arc<Violations>,
    /// The cluster's Services, to count calls through them once.
    pub kube: Option<Arc<RwLock<KubeIndex>>>,
}

/// A batch's calls on their way through, kept between batches to reuse their allocations.
#[derive(Default)]
struct Batch {
    received: Vec<Arc<CallRecord>>,
    /// Calls ready to be counted: paired, or waited for long enough.
    counted: Vec<Arc<CallRecord>>,
    /// Calls shown but neither filed nor judged.
    incomplete: Vec<Arc<CallRecord>>,
    flagged: Vec<ViolationRecord>,
}

/// The pipeline with the state it keeps between batches: run on its own thread
/// ([`spawn`]), or by the thread that parses when there is one parsing worker, so that a
/// call is built, filed and freed on one core with no hand-off.
pub(crate) struct Filer {
    p: Pipeline,
    pairing: Pairing,
    b: Batch,
    last_tick: u64,
}

impl Filer {
    pub(crate) fn new(p: Pipeline) -> Filer {
        let pairing = Pairing::new(PAIRING_WINDOW_NS).with_kubernetes(p.kube.clone());
        Filer {
            p,
            pairing,
            b: Batch::default(),
            last_tick: 0,
        }
    }

    /// Files `records` (emptied); with `last`, nothing waits for its other side any more.
    /// False when the inventory is gone (its lock poisoned).
    pub(crate) fn take(&mut self, records: &mut Vec<Arc<CallRecord>>, last: bool) -> bool {
        self.b.received.append(records);
        self.last_tick = Clock::monotonic_now_ns();
        if !self.p.file(&mut self.pairing, &mut self.b, last) {
            return false;
        }
        self.p.publish(&mut self.pairing, &mut self.b);
        true
    }

    /// Between bursts: lets the calls that waited long enough for their other side go on.
    pub(crate) fn tick(&mut self) {
        if Clock::monotonic_now_ns().saturating_sub(self.last_tick) >= TICK_NS {
            self.take(&mut Vec::new(), false);
        }
    }
}

/// How often calls waiting for their other side are looked at when no batch comes.
const TICK_NS: u64 = 100_000_000;

pub(crate) fn spawn(
    p: Pipeline,
    rx: Receiver<Vec<Arc<CallRecord>>>,
    stop: Arc<AtomicBool>,
    alive: Alive,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let _alive = alive;
            let mut filer = Filer::new(p);
            let mut received = Vec::new();
            loop {
                let closed = receive(&rx, &mut received);
                let last = closed || stop.load(Ordering::Relaxed);
                if !filer.take(&mut received, last) || closed {
                    return;
                }
            }
        })
}

/// Waits briefly for the shards' calls, then takes what else is queued, up to a batch.
/// True when every sender is gone.
fn receive(rx: &Receiver<Vec<Arc<CallRecord>>>, batch: &mut Vec<Arc<CallRecord>>) -> bool {
    match rx.recv_timeout(Duration::from_millis(100)) {
        Ok(mut r) => {
            batch.append(&mut r);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(mut r) => batch.append(&mut r),
                    Err(_) => break,
                }
            }
            false
        }
        Err(RecvTimeoutError::Timeout) => false,
        Err(RecvTimeoutError::Disconnected) => true,
    }
}

impl Pipeline {
    /// Under one inventory lock: routes the batch, writes it out, pairs it, and files and
    /// judges the calls that are ready. With `last`, no call waits for its other side any
    /// more. False when the inventory is gone (its lock poisoned).
    fn file(&mut self, pairing: &mut Pairing, b: &mut Batch, last: bool) -> bool {
        let now = Clock::monotonic_now_ns();
        let policy = self.enforcement.policy();
        let Ok(mut inv) = self.inventory.lock() else {
            return false;
        };
        for mut rec in b.received.drain(..) {
            // A call whose method, path or status could not be decoded (an HTTP/2
            // connection joined mid-life) is shown, never filed or judged.
            let complete = rec.complete();
            // The tracker that built the call holds no other handle, so this writes in place.
            let call = Arc::make_mut(&mut rec);
            call.route = inv.route(
                call.server.service.as_deref().unwrap_or(""),
                &call.method,
                &call.path,
                RouteKind::of(call.protocol, complete),
            );
            if let Some(out) = &self.output {
                if out.send(rec.clone()).is_err() {
                    self.metrics.records_dropped.inc();
                }
            }
            if complete {
                pairing.push(rec, now, &mut b.counted);
            } else {
                self.metrics.incomplete_calls.inc();
                b.incomplete.push(rec);
            }
        }
        if last {
            pairing.flush(&mut b.counted);
        } else {
            pairing.expire(now, &mut b.counted);
        }
        for c in &b.counted {
            let status = inv.observe(c);
            self.traffic.record(c, status);
            if let Some(v) = policy.as_ref().and_then(|pol| Enforcement::check(pol, c)) {
                b.flagged.push(v);
            }
        }
        self.metrics.inventory_endpoints.set(inv.len() as i64);
        true
    }

    /// Outside the lock: violations and recent calls, for the API and the log.
    fn publish(&self, pairing: &mut Pairing, b: &mut Batch) {
        self.metrics.calls_paired.inc_by(pairing.take_paired());
        for v in b.flagged.drain(..) {
            self.violations.record(v);
        }
        self.recent.push_all(std::mem::take(&mut b.counted));
        if !b.incomplete.is_empty() {
            self.recent.push_all(std::mem::take(&mut b.incomplete));
        }
    }
}
