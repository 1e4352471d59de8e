//! What happens to each call after reassembly: filed under its route, written to stdout,
//! counted once across client and server, then added to the inventory and the recent
//! calls. One thread, so the inventory has a single writer.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use crate::{
    calls::RecentCalls,
    clock::Clock,
    enforcement::Enforcement,
    inventory::{pairing::Pairing, Inventory},
    metrics::{traffic::TrafficRecorder, Metrics},
    record::CallRecord,
    route::RouteKind,
    violations::Violations,
};

/// How long a call seen from one side waits for its other side: far longer than the
/// skew between two shards, short enough that the inventory stays current.
const PAIRING_WINDOW_NS: u64 = 2_000_000_000;
/// Records handled per inventory lock.
const BATCH: usize = 1024;

pub struct Pipeline {
    pub inventory: Arc<Mutex<Inventory>>,
    pub recent: Arc<RecentCalls>,
    pub output: Option<SyncSender<CallRecord>>,
    pub metrics: Arc<Metrics>,
    pub traffic: TrafficRecorder,
    pub enforcement: Arc<Enforcement>,
    pub violations: Arc<Violations>,
}

pub fn spawn(
    mut p: Pipeline,
    rx: Receiver<CallRecord>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let mut pairing = Pairing::new(PAIRING_WINDOW_NS);
            let mut batch = Vec::with_capacity(BATCH);
            let mut counted = Vec::new();
            let mut incomplete = Vec::new();
            loop {
                let mut closed = false;
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(r) => {
                        batch.push(r);
                        while batch.len() < BATCH {
                            match rx.try_recv() {
                                Ok(r) => batch.push(r),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => closed = true,
                }
                let now = Clock::monotonic_now_ns();
                let policy = p.enforcement.policy();
                let mut flagged = Vec::new();
                {
                    let Ok(mut inv) = p.inventory.lock() else {
                        return;
                    };
                    for mut rec in batch.drain(..) {
                        // A call whose method, path or status could not be decoded (an
                        // HTTP/2 connection joined mid-life) is shown, never filed or judged.
                        let complete = rec.complete();
                        rec.route = inv.route(
                            rec.server.service.as_deref().unwrap_or(""),
                            &rec.method,
                            &rec.path,
                            RouteKind::of(rec.protocol, complete),
                        );
                        if let Some(out) = &p.output {
                            if out.send(rec.clone()).is_err() {
                                p.metrics.records_dropped.inc();
                            }
                        }
                        if complete {
                            pairing.push(rec, now, &mut counted);
                        } else {
                            p.metrics.incomplete_calls.inc();
                            incomplete.push(rec);
                        }
                    }
                    if closed || stop.load(Ordering::Relaxed) {
                        pairing.flush(&mut counted);
                    } else {
                        pairing.expire(now, &mut counted);
                    }
                    for c in &counted {
                        let status = inv.observe(c);
                        p.traffic.record(c, status);
                        if let Some(v) = policy.as_ref().and_then(|pol| Enforcement::check(pol, c))
                        {
                            flagged.push(v);
                        }
                    }
                    p.metrics.inventory_endpoints.set(inv.len() as i64);
                }
                p.metrics.calls_paired.inc_by(pairing.take_paired());
                for v in flagged {
                    p.violations.record(v);
                }
                p.recent.push_all(std::mem::take(&mut counted));
                if !incomplete.is_empty() {
                    p.recent.push_all(std::mem::take(&mut incomplete));
                }
                if closed {
                    return;
                }
            }
        })
}
