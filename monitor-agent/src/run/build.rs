//! Everything `run` makes before its first thread starts. Each step can fail with a clear
//! error, and a failure here leaves nothing running and nothing attached.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use prometheus_client::metrics::counter::Counter;
use tokio::{
    net::TcpListener,
    runtime::Runtime,
    signal::unix::{signal, Signal, SignalKind},
};

use crate::{
    api,
    capture::{
        self, counters::CounterReader, reader::ReaderMetrics, tls::TlsAttacher, Capture,
        CaptureConfig,
    },
    config::Settings,
    conn::ConnMetrics,
    enforcement::Enforcement,
    identity::kubernetes,
    inventory::{Inventory, InventoryConfig},
    metrics::{traffic::TrafficFamilies, Metrics},
    pipeline::PipelineMetrics,
    reload::ReloadMetrics,
    spec::registry::SpecRegistry,
    store::{self, Store},
    violations::Violations,
};

/// What the agent knows and keeps: the policy, the inventory and its database, the specs.
pub(super) struct State {
    pub enforcement: Arc<Enforcement>,
    pub store: Store,
    pub inventory: Arc<Mutex<Inventory>>,
    pub specs: Arc<Mutex<SpecRegistry>>,
    /// Spec files that failed to load at start, counted once the metrics exist.
    spec_errors: usize,
    /// The database was unreadable and moved aside, counted once the metrics exist.
    moved_aside: bool,
}

impl State {
    fn load(s: &Settings) -> Result<State> {
        // An invalid policy at start is an error: enforcement must not silently be off.
        let enforcement = Arc::new(Enforcement::new(s.policy.clone()));
        if let Some(e) = enforcement.refresh(true) {
            anyhow::bail!("{e}");
        }
        let opened = store::open_or_move_aside(&s.data_dir).with_context(|| {
            "cannot open the inventory database (choose another place with --data-dir)".to_string()
        })?;
        if let Some(m) = &opened.moved_aside {
            log::error!(
                "inventory database unreadable ({}): kept as {}, starting with an empty inventory",
                m.reason,
                m.to.display()
            );
        }
        let mut inventory = Inventory::new(InventoryConfig {
            patterns: s.route_patterns.clone(),
            cardinality_limit: s.route_cardinality,
            max_endpoints: s.max_endpoints,
        });
        let mut specs = SpecRegistry::new(s.specs.clone());
        let first = specs.refresh(true);
        if let Some(in_force) = first.changed {
            inventory.set_specs(in_force);
        }
        let (restored, left_out) = store::restore(opened.rows, &mut inventory);
        log::info!(
            "inventory: {restored} endpoints restored from {}",
            opened.store.path().display()
        );
        if left_out > 0 {
            log::warn!("inventory: {left_out} stored endpoints left out: --max-endpoints reached");
        }
        Ok(State {
            enforcement,
            store: opened.store,
            moved_aside: opened.moved_aside.is_some(),
            inventory: Arc::new(Mutex::new(inventory)),
            specs: Arc::new(Mutex::new(specs)),
            spec_errors: first.errors.len(),
        })
    }
}

/// The API's runtime, its bound socket and the signals that stop or reload the agent.
pub(super) struct Control {
    rt: Runtime,
    term: Signal,
    int: Signal,
    /// Raised by SIGHUP; the reloader lowers it.
    pub hangup: Arc<AtomicBool>,
    /// `None` while the address is held by someone else (see `bind`).
    listener: Option<TcpListener>,
    listen: SocketAddr,
    started: Instant,
}

/// How long an address in use is waited for. A killed agent keeps its listen socket until
/// the kernel has torn down its probes, which takes seconds; the agent restarted in its
/// place captures meanwhile and serves once the address is free.
const BIND_WAIT: Duration = Duration::from_secs(30);

/// Binds `addr`; `Ok(None)` when it is in use (to be retried by `serve`), an error for
/// anything else, which no wait will fix.
async fn bind(addr: SocketAddr) -> Result<Option<TcpListener>> {
    match TcpListener::bind(addr).await {
        Ok(l) => {
            log::info!("listening on {addr}");
            Ok(Some(l))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            log::warn!(
                "{addr} is in use (an agent that is still exiting holds it?); capturing \
                 meanwhile and retrying for up to {} s",
                BIND_WAIT.as_secs()
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// Retries binding `addr` until it is free or `BIND_WAIT` has passed since `since`.
async fn bind_when_free(addr: SocketAddr, since: Instant) -> Result<TcpListener> {
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                log::info!(
                    "listening on {addr} after waiting {:.1} s",
                    since.elapsed().as_secs_f64()
                );
                return Ok(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && since.elapsed() < BIND_WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot listen on {addr} (waited {} s)",
                        since.elapsed().as_secs()
                    )
                })
            }
        }
    }
}

impl Control {
    fn new(s: &Settings) -> Result<Control> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            // Two: a handler waiting on a lock must not stop `/healthz` from answering.
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        // All handlers are registered before anything is loaded or served: the default
        // actions of these signals would kill the agent without detaching its programs.
        let guard = rt.enter();
        let term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let hangup = Arc::new(AtomicBool::new(false));
        let flag = hangup.clone();
        rt.spawn(async move {
            while hup.recv().await.is_some() {
                flag.store(true, Ordering::Relaxed);
            }
        });
        // Bind first: a bad address should fail before anything is loaded into the kernel.
        let listener = rt.block_on(bind(s.listen))?;
        drop(guard);
        Ok(Control {
            rt,
            term,
            int,
            hangup,
            listener,
            listen: s.listen,
            started: Instant::now(),
        })
    }

    /// Serves the API until SIGTERM or SIGINT, or until the server fails.
    pub(super) fn serve(mut self, state: api::ApiState) -> Result<()> {
        self.rt.block_on(async {
            let listener = if let Some(l) = self.listener.take() {
                l
            } else {
                tokio::select! {
                    l = bind_when_free(self.listen, self.started) => l?,
                    _ = self.term.recv() => return Ok(()),
                    _ = self.int.recv() => return Ok(()),
                }
            };
            let guard = state.guard.clone();
            let server = api::serve::serve(listener, api::router(state), guard);
            tokio::select! {
                () = server => Ok(()),
                _ = self.term.recv() => Ok(()),
                _ = self.int.recv() => Ok(()),
            }
        })
    }
}

/// Each part's metric handles, registered before the exporter is shared.
pub(super) struct Handles {
    pub reader: ReaderMetrics,
    pub conn: ConnMetrics,
    pub pipeline: PipelineMetrics,
    pub traffic: TrafficFamilies,
    pub reload: ReloadMetrics,
    pub store_errors: Counter,
    pub kube: kubernetes::WatchCounters,
    pub violations: Arc<Violations>,
    pub api: Arc<api::serve::Guard>,
}

/// The loaded programs and what reads them.
pub(super) struct Kernel {
    pub capture: Capture,
    pub ring: RingBuf<MapData>,
    pub tls: TlsAttacher,
    /// `map::SWITCHED_OFF`, taken by the shards.
    pub switch_off: Option<aya::maps::Array<MapData, u64>>,
}

pub(super) struct Built {
    pub state: State,
    pub control: Control,
    pub kernel: Kernel,
    pub metrics: Arc<Metrics>,
    pub handles: Handles,
}

pub(super) fn build(s: &Settings) -> Result<Built> {
    api::check_listen(s.listen, s.api_token.as_deref())?;
    capture::preflight::check()?;
    let state = State::load(s)?;
    let control = Control::new(s)?;
    let mut capture = Capture::load(&CaptureConfig {
        ring_buffer_bytes: s.ring_buffer_mb << 20,
        connections: s.kernel_connections,
        blocked_reads: s.kernel_blocked_reads,
        kernel_stats: s.kernel_stats,
        hooks_only: s.hooks_only,
    })?;
    let ring = capture.take_events()?;
    let switch_off = Some(capture.take_switch_off()?);
    let mut metrics = Metrics::new(capture.attached);
    let handles = register(&mut metrics, s, &state);
    metrics.add_inventory(state.inventory.clone());
    metrics.add_kernel_counters(Arc::new(CounterReader::new(
        capture.take_counters()?,
        capture.blocked_reads_refused,
    )));
    metrics.add_program_stats(capture.programs.clone());
    let mut tls = capture.tls_attacher(metrics.registry());
    // Before /healthz answers: a client started right after should already be covered.
    tls.scan_system();
    tls.scan_all();
    log::info!("attached {} tracepoints; capturing", capture.attached);
    Ok(Built {
        state,
        control,
        kernel: Kernel {
            capture,
            ring,
            tls,
            switch_off,
        },
        metrics: Arc::new(metrics),
        handles,
    })
}

fn register(metrics: &mut Metrics, s: &Settings, state: &State) -> Handles {
    let r = metrics.registry();
    let pipeline = PipelineMetrics::register(r);
    let reload = ReloadMetrics::register(r);
    reload.spec_load_errors.inc_by(state.spec_errors as u64);
    let recoveries = store::recoveries(r);
    if state.moved_aside {
        recoveries.inc();
    }
    Handles {
        reader: ReaderMetrics::register(r),
        conn: ConnMetrics::register(r, pipeline.records_dropped.clone()),
        traffic: TrafficFamilies::register(r, s.max_metric_routes as usize),
        store_errors: store::flush_errors(r),
        kube: kubernetes::WatchCounters::register(r),
        violations: Arc::new(Violations::new(s.recent_calls as usize, r)),
        api: Arc::new(api::serve::Guard::register(r)),
        pipeline,
        reload,
    }
}
