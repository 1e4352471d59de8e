//! Starts the agent's threads, downstream first so nothing is produced before its consumer
//! exists, and stops them in the order that loses no call.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, SyncSender},
        Arc, RwLock,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context, Result};
use ringbuf::{traits::Split, HeapRb};

use super::build::{Built, Control, Kernel};
use crate::{
    api::ApiState,
    calls::RecentCalls,
    capture::{
        self,
        reader::{Parsing, ReaderMetrics, ShardInlet},
        Capture,
    },
    clock::Clock,
    config::Settings,
    conn::{
        shard::{self, Records, Worker},
        ConnMetrics, ConnTracker, SwitchOff, TrackerConfig,
    },
    health::{Alive, Health},
    identity::{kubernetes, Identity, KubeIndex},
    metrics::traffic::TrafficRecorder,
    output::{self, OutputFormat},
    pipeline::{self, Pipeline},
    record::CallRecord,
    redact::Redactor,
    reload::{self, Reloaded},
    store,
};

/// Events buffered between the reader and each shard (~150 bytes each, all touched as the
/// queue cycles): enough to ride out a shard's pause, while the kernel's ring buffer holds
/// the rest of a burst (a full queue makes the reader wait, not drop). No drops at
/// saturation with 4096 (BENCHMARKS.md).
const SHARD_QUEUE: usize = 1 << 12;

/// Bounded queues of whole records (~0.5 KiB each): deep enough to ride out a burst, small
/// enough not to dominate the agent's memory. A full queue slows the shards (backpressure)
/// rather than losing calls.
const RECORD_QUEUE: usize = 8192;

/// The running threads, in the order they are stopped: the reader first, so nothing new
/// arrives, then each consumer after its producers, and the store after the pipeline so its
/// last calls are in the final flush.
pub(super) struct Parts {
    stop: Arc<AtomicBool>,
    shards: Vec<JoinHandle<()>>,
    /// None when the pipeline runs on the reader thread (one parsing worker).
    pipeline: Option<JoinHandle<()>>,
    output: Option<JoinHandle<()>>,
    flusher: JoinHandle<()>,
    reload: JoinHandle<()>,
    kube: Option<JoinHandle<()>>,
    kernel: Capturing,
}

/// The threads that read the kernel side, and the loaded programs themselves.
struct Capturing {
    reader: JoinHandle<()>,
    kernel_log: Option<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
    tls: JoinHandle<()>,
    /// Dropped last: detaches the programs.
    capture: Capture,
}

impl Parts {
    pub(super) fn join(self) {
        log::info!("stopping: detaching programs");
        let started = std::time::Instant::now();
        let detaching = self.kernel.capture.start_detaching();
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.kernel.reader.join();
        for t in self.shards {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(p) = self.pipeline {
            let _ = p.join();
        }
        let rest = [
            Some(self.flusher),
            Some(self.reload),
            self.kube,
            self.kernel.kernel_log,
            Some(self.kernel.sweeper),
        ];
        for t in self.output.into_iter().chain(rest.into_iter().flatten()) {
            let _ = t.join();
        }
        let _ = self.kernel.tls.join();
        let joined = started.elapsed();
        if let Ok(d) = detaching {
            let _ = d.join();
        }
        drop(self.kernel.capture);
        log::info!(
            "stopped in {} ms ({} ms for the threads to finish)",
            started.elapsed().as_millis(),
            joined.as_millis()
        );
    }
}

pub(super) fn start(b: Built, s: &Settings) -> Result<(Control, ApiState, Parts)> {
    let Built {
        state,
        control,
        mut kernel,
        metrics,
        handles: h,
    } = b;
    let stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(Health::default());
    let recent = Arc::new(RecentCalls::new(s.recent_calls as usize));
    let (out_tx, output) = start_output(s.output)?.unzip();
    let kube_index = s.kubernetes.as_ref().map(|_| Arc::default());
    let calls = Pipeline {
        inventory: state.inventory.clone(),
        recent: recent.clone(),
        output: out_tx,
        metrics: h.pipeline.clone(),
        traffic: TrafficRecorder::new(h.traffic, s.max_metric_routes as usize),
        enforcement: state.enforcement.clone(),
        violations: h.violations.clone(),
        kube: kube_index.clone(),
    };
    let workers = s.workers.unwrap_or_else(default_workers).max(1);
    let (records, pipeline) = start_pipeline(calls, workers, &stop, &health)?;
    let flusher = store::spawn_flusher(
        state.store,
        state.inventory.clone(),
        Duration::from_secs(s.flush_interval_secs),
        stop.clone(),
        h.store_errors.clone(),
    )?;
    let reload = reload::spawn(
        Reloaded {
            specs: state.specs.clone(),
            enforcement: state.enforcement.clone(),
            inventory: state.inventory.clone(),
        },
        h.reload.clone(),
        control.hangup.clone(),
        stop.clone(),
    )?;
    let (identity, kube) = start_identity(s, kube_index.clone(), &h.kube, &stop)?;
    let shared = Shared {
        identity: &identity,
        metrics: &h.conn,
        records,
        switch: h.conn.switch_off(kernel.switch_off.take()),
    };
    // Consumed: once the shard threads are gone, the pipeline thread sees its channel
    // close; with one worker the pipeline is the reader's own, and files what is left
    // when the reader ends.
    let (parsing, shards) = start_shards(workers, s, shared, &stop, &health)?;
    let reader_alive = health.watch("capture reader");
    let kernel = start_capture(kernel, parsing, identity, h.reader, &stop, reader_alive)?;
    let api = ApiState {
        health,
        metrics,
        inventory: state.inventory,
        recent,
        specs: state.specs,
        violations: h.violations,
        enforcement: state.enforcement,
        kube: kube_index,
        token: api_token(s),
        guard: h.api,
    };
    let parts = Parts {
        stop,
        shards,
        pipeline,
        output,
        flusher,
        reload,
        kube,
        kernel,
    };
    Ok((control, api, parts))
}

/// Where parsed calls go. With one worker the pipeline runs where the calls are parsed,
/// with no thread of its own: a call is built, filed and freed on one core.
fn start_pipeline(
    calls: Pipeline,
    workers: usize,
    stop: &Arc<AtomicBool>,
    health: &Health,
) -> Result<(Records, Option<JoinHandle<()>>)> {
    if workers == 1 {
        return Ok((Records::Here(Box::new(pipeline::Filer::new(calls))), None));
    }
    let (tx, rx) = mpsc::sync_channel(RECORD_QUEUE / shard::RECORD_BATCH);
    let thread = pipeline::spawn(calls, rx, stop.clone(), health.watch("pipeline"))?;
    Ok((Records::Queue(tx), Some(thread)))
}

/// The query API's token; an empty one is none.
fn api_token(s: &Settings) -> Option<Arc<str>> {
    s.api_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(Arc::from)
}

/// The ring-buffer reader feeding the shards, the TLS attacher following its exec events,
/// and the kernel side's log.
fn start_capture(
    kernel: Kernel,
    parsing: Parsing,
    identity: Arc<Identity>,
    metrics: ReaderMetrics,
    stop: &Arc<AtomicBool>,
    alive: Alive,
) -> Result<Capturing> {
    let Kernel {
        mut capture,
        ring,
        tls,
        ..
    } = kernel;
    let (execs, exec_rx) = mpsc::sync_channel(capture::tls::EXEC_QUEUE);
    let reader =
        capture::reader::spawn(ring, parsing, execs, identity, metrics, stop.clone(), alive)?;
    Ok(Capturing {
        reader,
        tls: tls.spawn(exec_rx, stop.clone())?,
        kernel_log: capture.spawn_kernel_log(stop.clone())?,
        sweeper: capture.spawn_sweeper(stop.clone())?,
        capture,
    })
}

/// Where the pipeline sends calls for stdout, and the thread writing them.
type StdoutWriter = (SyncSender<Arc<CallRecord>>, JoinHandle<()>);

/// The stdout writer, if records are written at all.
fn start_output(format: OutputFormat) -> Result<Option<StdoutWriter>> {
    if format == OutputFormat::None {
        return Ok(None);
    }
    let (tx, rx) = mpsc::sync_channel(RECORD_QUEUE);
    Ok(Some((tx, output::spawn(format, rx)?)))
}

/// Service rules, and pod names from the API server when Kubernetes is configured.
fn start_identity(
    s: &Settings,
    index: Option<Arc<RwLock<KubeIndex>>>,
    counters: &kubernetes::WatchCounters,
    stop: &Arc<AtomicBool>,
) -> Result<(Arc<Identity>, Option<JoinHandle<()>>)> {
    let identity = Identity::new(s.services.clone());
    let (Some(cfg), Some(index)) = (&s.kubernetes, index) else {
        return Ok((Arc::new(identity), None));
    };
    let t = kubernetes::spawn(cfg.clone(), index.clone(), counters.clone(), stop.clone())
        .context("Kubernetes metadata is configured but unusable")?;
    Ok((Arc::new(identity.with_kubernetes(index)), Some(t)))
}

/// What every shard shares.
struct Shared<'a> {
    identity: &'a Arc<Identity>,
    metrics: &'a ConnMetrics,
    /// Where calls go: the pipeline thread's queue, or the pipeline itself (one worker).
    records: Records,
    /// The kernel's switch for connections no parser follows.
    switch: SwitchOff,
}

/// Half the CPUs the agent may use (its cgroup quota counts), at least one. The reader
/// and the pipeline are threads too, and a call handed between threads on different cores
/// costs more than its parsing: on 2 CPUs, one parsing thread spends about a tenth less
/// CPU per call than two (measured with both agents on the same traffic).
fn default_workers() -> usize {
    (thread::available_parallelism().map_or(1, std::num::NonZero::get) / 2).max(1)
}

/// One shard per worker, each with its own connection table and inlet queue; with one
/// worker, the reader thread parses inline instead.
fn start_shards(
    workers: usize,
    s: &Settings,
    shared: Shared<'_>,
    stop: &Arc<AtomicBool>,
    health: &Health,
) -> Result<(Parsing, Vec<JoinHandle<()>>)> {
    let Shared {
        identity,
        metrics,
        records,
        switch,
    } = shared;
    let clock = Clock::new();
    let redactor = Redactor::default();
    let cfg = TrackerConfig {
        max_connections: (s.max_connections / workers).max(16),
        idle_timeout_ns: s.idle_timeout_secs.saturating_mul(1_000_000_000),
        max_parser_bytes: usize::try_from(s.parser_memory_mb << 20).unwrap_or(usize::MAX) / workers,
    };
    let worker = |records| {
        let tracker = ConnTracker::new(
            cfg.clone(),
            clock,
            redactor.clone(),
            identity.clone(),
            metrics,
        )
        .switching_off(switch.clone());
        Worker::new(tracker, records, metrics.clone())
    };
    if workers == 1 {
        return Ok((
            Parsing::Inline(Box::new(worker(records)), Vec::new()),
            Vec::new(),
        ));
    }
    let Records::Queue(queue) = records else {
        anyhow::bail!("several parsing workers need the pipeline's queue");
    };
    let mut inlets = Vec::new();
    let mut threads = Vec::new();
    for i in 0..workers {
        let (prod, cons) = HeapRb::new(SHARD_QUEUE).split();
        let (spare_in, spare_out) = HeapRb::new(shard::SPARES).split();
        let handle = shard::spawn(
            i,
            shard::ShardQueues {
                events: cons,
                spares: spare_in,
            },
            worker(Records::Queue(queue.clone())),
            stop.clone(),
            health.watch(&format!("shard-{i}")),
        )?;
        inlets.push(ShardInlet {
            queue: prod,
            worker: handle.thread().clone(),
            spares: spare_out,
        });
        threads.push(handle);
    }
    Ok((Parsing::Shards(inlets), threads))
}
