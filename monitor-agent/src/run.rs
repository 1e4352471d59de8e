//! `monitor-agent run`: wires capture, shards, output and the API together.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result};
use ringbuf::{traits::Split, HeapRb};

use crate::{
    api,
    calls::RecentCalls,
    capture::{self, counters::CounterReader, reader::ShardInlet, Capture, CaptureConfig},
    cli::RunArgs,
    clock::Clock,
    config::Settings,
    conn::{shard, ConnTracker, TrackerConfig},
    enforcement::Enforcement,
    identity::{kubernetes, Identity, KubeIndex},
    inventory::{Inventory, InventoryConfig},
    metrics::{traffic::TrafficRecorder, Metrics},
    output::{self, OutputFormat},
    pipeline::{self, Pipeline},
    redact::Redactor,
    spec::registry::SpecRegistry,
    store::{self, Store},
    violations::Violations,
};

/// Events buffered between the reader and each shard.
const SHARD_QUEUE: usize = 1 << 16;

const RECORD_QUEUE: usize = 8192;

/// How often spec files are checked for changes.
const SPEC_POLL: Duration = Duration::from_secs(1);

#[expect(
    clippy::too_many_lines,
    reason = "to be split into build, start and join (issue 12)"
)]
pub fn run(args: RunArgs) -> Result<()> {
    let args = Settings::resolve(args)?;
    api::check_listen(args.listen, args.api_token.as_deref())?;
    capture::preflight::check()?;
    // An invalid policy at start is an error: enforcement must not silently be off.
    let enforcement = Arc::new(Enforcement::new(args.policy.clone()));
    if let Some(e) = enforcement.refresh(true) {
        anyhow::bail!("{e}");
    }
    let store = Store::open(&args.data_dir).with_context(|| {
        "cannot open the inventory database (choose another place with --data-dir)".to_string()
    })?;
    let mut inventory = Inventory::new(InventoryConfig {
        patterns: args.route_patterns.clone(),
        cardinality_limit: args.route_cardinality,
        max_endpoints: args.max_endpoints,
    });
    let mut specs = SpecRegistry::new(args.specs.clone());
    let first = specs.refresh(true);
    if let Some(in_force) = first.changed {
        inventory.set_specs(in_force);
    }
    let restored = store::restore(&store, &mut inventory)?;
    log::info!(
        "inventory: {restored} endpoints restored from {}",
        store.path().display()
    );
    let inventory = Arc::new(Mutex::new(inventory));
    let specs = Arc::new(Mutex::new(specs));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let hangup = Arc::new(AtomicBool::new(false));
    // All handlers are registered before anything is loaded or served: the default actions
    // of these signals would kill the agent without detaching its programs.
    let (term, int) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _guard = rt.enter();
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        )
    };
    {
        let _guard = rt.enter();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let flag = hangup.clone();
        rt.spawn(async move {
            while hup.recv().await.is_some() {
                flag.store(true, Ordering::Relaxed);
            }
        });
    }
    // Bind first: a busy port should fail before anything is loaded into the kernel.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {}", args.listen))?;

    let mut cap = Capture::load(&CaptureConfig {
        ring_buffer_bytes: args.ring_buffer_mb << 20,
        kernel_stats: args.kernel_stats,
    })?;
    let ring = cap.take_events()?;
    let mut metrics = Metrics::new(cap.attached);
    metrics.spec_load_errors.inc_by(first.errors.len() as u64);
    metrics.add_inventory(inventory.clone());
    let traffic = metrics.add_traffic(args.max_metric_routes as usize);
    metrics.add_kernel_counters(Arc::new(CounterReader::new(cap.take_counters()?)));
    metrics.add_program_stats(cap.programs.clone());
    let mut tls_attacher = cap.tls_attacher();
    // Before /healthz answers: a client started right after should already be covered.
    tls_attacher.scan_system();
    tls_attacher.scan_all();
    metrics.add_tls_attach(tls_attacher.attached.clone(), tls_attacher.failures.clone());
    let violations = Arc::new(Violations::new(
        args.recent_calls as usize,
        &mut metrics.registry,
    ));
    let metrics = Arc::new(metrics);
    log::info!(
        "attached {} tracepoints; listening on {}",
        cap.attached,
        args.listen
    );

    let stop = Arc::new(AtomicBool::new(false));
    // Bounded queues of whole records (~0.5 KiB each): deep enough to ride out a burst,
    // small enough not to dominate the agent's memory. A full queue slows the shards
    // (backpressure) rather than losing calls.
    let (out_tx, out_rx) = mpsc::sync_channel(RECORD_QUEUE);
    let out_thread = match args.output {
        OutputFormat::None => None,
        f => Some(output::spawn(f, out_rx)?),
    };
    let recent = Arc::new(RecentCalls::new(args.recent_calls as usize));
    let (tx, rx) = mpsc::sync_channel(RECORD_QUEUE);
    let pipeline_thread = pipeline::spawn(
        Pipeline {
            inventory: inventory.clone(),
            recent: recent.clone(),
            output: (args.output != OutputFormat::None).then_some(out_tx),
            metrics: metrics.clone(),
            traffic: TrafficRecorder::new(traffic, args.max_metric_routes as usize),
            enforcement: enforcement.clone(),
            violations: violations.clone(),
        },
        rx,
        stop.clone(),
    )?;
    let records = Some(tx);
    let flusher = store::spawn_flusher(
        store,
        inventory.clone(),
        Duration::from_secs(args.flush_interval_secs),
        stop.clone(),
        metrics.store_errors.clone(),
    )?;
    let spec_thread = spawn_reloader(
        specs.clone(),
        enforcement.clone(),
        inventory.clone(),
        metrics.clone(),
        hangup,
        stop.clone(),
    )?;
    let mut identity = Identity::new(args.services.clone());
    let kube_thread = match &args.kubernetes {
        Some(cfg) => {
            let index = Arc::new(std::sync::RwLock::new(KubeIndex::default()));
            let t = kubernetes::spawn(
                cfg.clone(),
                index.clone(),
                metrics.kubernetes_errors.clone(),
                stop.clone(),
            )
            .context("Kubernetes metadata is configured but unusable")?;
            identity = identity.with_kubernetes(index);
            Some(t)
        }
        None => None,
    };
    let identity = Arc::new(identity);

    let workers = args
        .workers
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, std::num::NonZero::get))
        .max(1);
    let clock = Clock::new();
    let redactor = Redactor::default();
    let cfg = TrackerConfig {
        max_connections: (args.max_connections / workers).max(16),
        idle_timeout_ns: args.idle_timeout_secs.saturating_mul(1_000_000_000),
    };
    let mut inlets = Vec::new();
    let mut shard_threads = Vec::new();
    for i in 0..workers {
        let (prod, cons) = HeapRb::new(SHARD_QUEUE).split();
        let tracker = ConnTracker::new(
            cfg.clone(),
            clock,
            redactor.clone(),
            identity.clone(),
            &metrics,
        );
        let handle = shard::spawn(
            i,
            cons,
            tracker,
            records.clone(),
            metrics.clone(),
            stop.clone(),
        )?;
        inlets.push(ShardInlet {
            queue: prod,
            worker: handle.thread().clone(),
        });
        shard_threads.push(handle);
    }
    drop(records);
    let (exec_tx, exec_rx) = mpsc::channel();
    let reader = capture::reader::spawn(
        ring,
        inlets,
        exec_tx,
        identity.clone(),
        metrics.clone(),
        stop.clone(),
    )?;
    let tls = tls_attacher.spawn(exec_rx, stop.clone())?;
    let kernel_log = cap.spawn_kernel_log(stop.clone())?;

    let state = api::ApiState {
        metrics: metrics.clone(),
        inventory: inventory.clone(),
        recent,
        specs,
        violations,
        enforcement: enforcement.clone(),
        token: args
            .api_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    rt.block_on(async {
        let server = axum::serve(listener, api::router(state));
        tokio::select! {
            r = server => r.context("API server failed"),
            r = shutdown_signal(term, int) => r,
        }
    })?;

    log::info!("stopping: detaching programs");
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    for t in shard_threads {
        t.thread().unpark();
        let _ = t.join();
    }
    let _ = pipeline_thread.join();
    if let Some(t) = out_thread {
        let _ = t.join();
    }
    // After the pipeline: its last calls are in the final flush.
    let _ = flusher.join();
    let _ = spec_thread.join();
    if let Some(t) = kube_thread {
        let _ = t.join();
    }
    if let Some(t) = kernel_log {
        let _ = t.join();
    }
    let _ = tls.join();
    drop(cap);
    Ok(())
}

/// Reloads specs and the policy whose files changed, and all of them on SIGHUP.
fn spawn_reloader(
    specs: Arc<Mutex<SpecRegistry>>,
    enforcement: Arc<Enforcement>,
    inventory: Arc<Mutex<Inventory>>,
    metrics: Arc<Metrics>,
    hangup: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name("reload".into()).spawn(move || {
        let mut waited = Duration::ZERO;
        let tick = Duration::from_millis(100);
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(tick);
            waited += tick;
            let forced = hangup.swap(false, Ordering::Relaxed);
            if !forced && waited < SPEC_POLL {
                continue;
            }
            waited = Duration::ZERO;
            if forced {
                log::info!("SIGHUP: reloading specs and policy");
            }
            if enforcement.refresh(forced).is_some() {
                metrics.policy_load_errors.inc();
            }
            let Ok(mut reg) = specs.lock() else { return };
            if reg.is_empty() {
                continue;
            }
            let r = reg.refresh(forced);
            metrics.spec_load_errors.inc_by(r.errors.len() as u64);
            metrics.specs_loaded.set(reg.in_force().len() as i64);
            drop(reg);
            if let Some(in_force) = r.changed {
                if let Ok(mut inv) = inventory.lock() {
                    inv.set_specs(in_force);
                }
            }
        }
    })
}

async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) -> Result<()> {
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}
