//! `monitor-agent run`: wires capture, shards, output and the API together.

use std::sync::{atomic::AtomicBool, mpsc, Arc};

use anyhow::{Context, Result};
use ringbuf::{traits::Split, HeapRb};

use crate::{
    api,
    capture::{self, counters::CounterReader, reader::ShardInlet, Capture, CaptureConfig},
    cli::RunArgs,
    clock::Clock,
    conn::{shard, ConnTracker, TrackerConfig},
    metrics::Metrics,
    output::{self, OutputFormat},
    redact::Redactor,
};

/// Events buffered between the reader and each shard.
const SHARD_QUEUE: usize = 1 << 16;

pub fn run(args: RunArgs) -> Result<()> {
    api::check_listen(args.listen, args.api_token.as_deref())?;
    capture::preflight::check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
    metrics.add_kernel_counters(Arc::new(CounterReader::new(cap.take_counters()?)));
    metrics.add_program_stats(cap.programs.clone());
    let mut tls_attacher = cap.tls_attacher();
    // Before /healthz answers: a client started right after should already be covered.
    tls_attacher.scan_system();
    tls_attacher.scan_all();
    metrics.add_tls_attach(tls_attacher.attached.clone(), tls_attacher.failures.clone());
    let metrics = Arc::new(metrics);
    log::info!(
        "attached {} tracepoints; listening on {}",
        cap.attached,
        args.listen
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(1 << 16);
    let out_thread = match args.output {
        OutputFormat::None => None,
        f => Some(output::spawn(f, rx)?),
    };
    let records = (args.output != OutputFormat::None).then_some(tx);

    let workers = args
        .workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
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
        let tracker = ConnTracker::new(cfg.clone(), clock, redactor.clone(), &metrics);
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
    let reader = capture::reader::spawn(ring, inlets, exec_tx, metrics.clone(), stop.clone())?;
    let tls = tls_attacher.spawn(exec_rx, stop.clone())?;
    let kernel_log = cap.spawn_kernel_log(stop.clone())?;

    let state = api::ApiState {
        metrics: metrics.clone(),
    };
    rt.block_on(async {
        let server = axum::serve(listener, api::router(state));
        tokio::select! {
            r = server => r.context("API server failed"),
            r = shutdown_signal() => r,
        }
    })?;

    log::info!("stopping: detaching programs");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    for t in shard_threads {
        t.thread().unpark();
        let _ = t.join();
    }
    if let Some(t) = out_thread {
        let _ = t.join();
    }
    if let Some(t) = kernel_log {
        let _ = t.join();
    }
    let _ = tls.join();
    drop(cap);
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}
