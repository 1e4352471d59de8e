//! Everything exported in OpenMetrics text on `/metrics`: the traffic the agent observes
//! (`traffic`), the inventory (`inventory`), the kernel side's counters and program statistics
//! (here), and each part's own health, registered by that part.

mod inventory;
pub(crate) mod traffic;

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::ConstCounter,
        gauge::{ConstGauge, Gauge},
        info::Info,
    },
    registry::{Metric, Registry},
};

use crate::{
    capture::counters::{CounterReader, KernelCounters},
    inventory::Inventory,
};

/// The exporter: one registry every part of the agent registers its own handles in (each
/// part defines its metrics next to the code that records them), encoded at each scrape.
pub(crate) struct Metrics {
    registry: Registry,
}

/// Registers a metric under `name` and returns the handle its part records into.
pub(crate) fn register<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: Metric + Clone + Default,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub(crate) fn new(attached_programs: usize) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "monitor_build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let attached: Gauge = register(
            &mut registry,
            "monitor_attached_programs",
            "eBPF program attachments",
        );
        attached.set(attached_programs as i64);
        registry.register_collector(Box::new(crate::limits::LimitCollector));
        Metrics { registry }
    }

    /// Where the parts register their handles, before the exporter is shared.
    pub(crate) fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// `api_endpoints`, read from the inventory at each scrape.
    pub(crate) fn add_inventory(&mut self, inventory: Arc<Mutex<Inventory>>) {
        self.registry
            .register_collector(Box::new(inventory::InventoryCollector { inventory }));
    }

    pub(crate) fn add_kernel_counters(&mut self, reader: Arc<CounterReader>) {
        self.registry
            .register_collector(Box::new(KernelCollector { reader }));
    }

    /// Exports the kernel's accounting of time spent in each of our programs (zero unless
    /// run-time statistics are enabled, `--kernel-stats`).
    pub(crate) fn add_program_stats(&mut self, programs: Vec<(u32, String)>) {
        self.registry
            .register_collector(Box::new(ProgramStats { programs }));
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Reads the kernel's per-CPU counters at scrape time.
#[derive(Debug)]
struct KernelCollector {
    reader: Arc<CounterReader>,
}

impl std::fmt::Debug for CounterReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CounterReader")
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// The kernel side's counters, in the order they are exported: name, help, value.
type KernelCounter = (&'static str, &'static str, fn(&KernelCounters) -> u64);

const KERNEL_COUNTERS: [KernelCounter; 14] = [
    (
        "monitor_ringbuf_events",
        "Records the kernel wrote to the ring buffer",
        |k| k.events,
    ),
    (
        "monitor_ringbuf_bytes",
        "Payload bytes the kernel wrote to the ring buffer",
        |k| k.bytes,
    ),
    (
        "monitor_ringbuf_drops",
        "Records lost because the ring buffer was full",
        |k| k.drops,
    ),
    (
        "monitor_ringbuf_dropped_bytes",
        "Payload bytes of records lost to a full ring buffer",
        |k| k.dropped_bytes,
    ),
    (
        "monitor_truncations",
        "Segments captured only in part (longer than the capture limit)",
        |k| k.truncations,
    ),
    (
        "monitor_truncated_bytes",
        "Bytes not captured because of truncation",
        |k| k.truncated_bytes,
    ),
    (
        "monitor_http_connections",
        "Connections the kernel classified as HTTP",
        |k| k.http_conns,
    ),
    (
        "monitor_other_connections",
        "Connections the kernel classified as not HTTP and skips",
        |k| k.not_http_conns,
    ),
    (
        "monitor_syscall_args_lost",
        "Syscalls not captured because the kernel's table of syscalls in flight was full",
        |k| k.args_lost,
    ),
    (
        "monitor_fd_cache_misses",
        "Descriptors the kernel's descriptor-to-socket cache did not know (first use, \
         after a close, exec or fork, or evicted), so it walked the process's descriptor table",
        |k| k.fd_walks,
    ),
    (
        "monitor_tls_calls_lost",
        "TLS reads/writes not captured because the kernel's table of calls in flight was full",
        |k| k.tls_lost,
    ),
    (
        "monitor_tls_connections",
        "Connections the kernel classified as TLS (ciphertext skipped)",
        |k| k.tls_conns,
    ),
    (
        "monitor_tls_unmapped_calls",
        "TLS reads/writes not yet tied to a socket (their plaintext is not reported)",
        |k| k.tls_unmapped,
    ),
    (
        "monitor_memory_read_errors",
        "Failed reads of process or kernel memory",
        |k| k.read_errors,
    ),
];

impl Collector for KernelCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let k = self.reader.read();
        for (name, help, value) in KERNEL_COUNTERS {
            counter(&mut enc, name, help, value(&k))?;
        }
        let rss = ConstGauge::new(resident_bytes() as i64);
        rss.encode(enc.encode_descriptor(
            "monitor_resident_memory_bytes",
            "Resident memory of the agent",
            None,
            rss.metric_type(),
        )?)?;
        Ok(())
    }
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    program: String,
}

/// Run time and run count of the agent's eBPF programs, as the kernel accounts them.
#[derive(Debug)]
struct ProgramStats {
    programs: Vec<(u32, String)>,
}

impl Collector for ProgramStats {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut by_name: std::collections::BTreeMap<&str, (f64, u64)> = Default::default();
        for info in aya::programs::loaded_programs().flatten() {
            if let Some((_, name)) = self.programs.iter().find(|(id, _)| *id == info.id()) {
                let e = by_name.entry(name.as_str()).or_default();
                e.0 += info.run_time().as_secs_f64();
                e.1 += info.run_count();
            }
        }
        let c = ConstCounter::new(0.0f64);
        let mut m = enc.encode_descriptor(
            "monitor_program_run_seconds",
            "Time the kernel spent in each eBPF program (with --kernel-stats)",
            None,
            c.metric_type(),
        )?;
        for (name, (secs, _)) in &by_name {
            let labels = ProgramLabels {
                program: name.to_string(),
            };
            ConstCounter::new(*secs).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "monitor_program_runs",
            "Runs of each eBPF program (with --kernel-stats)",
            None,
            c.metric_type(),
        )?;
        for (name, (_, runs)) in &by_name {
            let labels = ProgramLabels {
                program: name.to_string(),
            };
            ConstCounter::new(*runs).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
