//! Everything exported in OpenMetrics text on `/metrics`: the traffic the agent observes
//! (`traffic`), the inventory (`inventory`) and the agent's own health (here).

mod inventory;
pub mod traffic;

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        info::Info,
    },
    registry::Registry,
};

use crate::{capture::counters::CounterReader, inventory::Inventory};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub protocol: String,
    pub role: String,
    /// "true" when the call was captured as TLS plaintext.
    pub tls: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Handles to every userspace metric; cheap to clone (atomics behind `Arc`s).
pub struct Metrics {
    pub registry: Registry,
    pub events_received: Counter,
    pub events_undecodable: Counter,
    pub calls: Family<CallLabels, Counter>,
    pub parse_errors: Family<ProtocolLabels, Counter>,
    pub resyncs: Family<ProtocolLabels, Counter>,
    pub unmatched_responses: Family<ProtocolLabels, Counter>,
    pub dropped_requests: Family<ProtocolLabels, Counter>,
    pub stream_gaps: Family<ProtocolLabels, Counter>,
    pub tracked_connections: Gauge,
    pub parser_buffered_bytes: Gauge,
    pub connections_evicted: Family<ReasonLabels, Counter>,
    pub records_dropped: Counter,
    pub inventory_endpoints: Gauge,
    pub calls_paired: Counter,
    pub incomplete_calls: Counter,
    pub store_errors: Counter,
    pub spec_load_errors: Counter,
    pub policy_load_errors: Counter,
    pub kubernetes_errors: Counter,
    pub specs_loaded: Gauge,
}

impl Metrics {
    #[expect(
        clippy::too_many_lines,
        reason = "to be split into handle groups owned by their parts (issue 12)"
    )]
    pub fn new(attached_programs: usize) -> Self {
        let mut registry = Registry::default();
        let events_received = Counter::default();
        registry.register(
            "monitor_events_received",
            "Ring-buffer records received by userspace",
            events_received.clone(),
        );
        let events_undecodable = Counter::default();
        registry.register(
            "monitor_events_undecodable",
            "Ring-buffer records that could not be decoded",
            events_undecodable.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "monitor_calls",
            "Calls reassembled, by protocol, observed role and TLS",
            calls.clone(),
        );
        let parse_errors = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "monitor_parse_errors",
            "Places where bytes expected to start a message could not be parsed",
            parse_errors.clone(),
        );
        let resyncs = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "monitor_parser_resyncs",
            "Times a parser regained sync after a gap or garbage",
            resyncs.clone(),
        );
        let unmatched_responses = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "monitor_unmatched_responses",
            "Responses discarded because their request was not seen",
            unmatched_responses.clone(),
        );
        let dropped_requests = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "monitor_dropped_requests",
            "Requests discarded without a response (lost sync, closed, evicted)",
            dropped_requests.clone(),
        );
        let stream_gaps = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "monitor_stream_gaps",
            "Stretches of a connection's bytes that were not captured",
            stream_gaps.clone(),
        );
        let tracked_connections = Gauge::default();
        registry.register(
            "monitor_tracked_connections",
            "Connections currently tracked by userspace",
            tracked_connections.clone(),
        );
        let parser_buffered_bytes = Gauge::default();
        registry.register(
            "monitor_parser_buffered_bytes",
            "Bytes held by parsers for incomplete message heads (updated every second)",
            parser_buffered_bytes.clone(),
        );
        let connections_evicted = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "monitor_connections_evicted",
            "Connections forgotten before their close was seen, by reason (idle, capacity)",
            connections_evicted.clone(),
        );
        let records_dropped = Counter::default();
        registry.register(
            "monitor_records_dropped",
            "Call records not written because the output could not keep up",
            records_dropped.clone(),
        );
        let inventory_endpoints = Gauge::default();
        registry.register(
            "monitor_inventory_endpoints",
            "Endpoints in the API inventory",
            inventory_endpoints.clone(),
        );
        let calls_paired = Counter::default();
        registry.register(
            "monitor_calls_seen_by_both_sides",
            "Calls observed from both the client and the server process, counted once",
            calls_paired.clone(),
        );
        let incomplete_calls = Counter::default();
        registry.register(
            "monitor_calls_incomplete",
            "HTTP/2 calls whose method, path or status referred to header table entries sent before the agent joined the connection: reported as unknown, not filed in the inventory",
            incomplete_calls.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "monitor_store_errors",
            "Inventory flushes that could not be written to the database (retried)",
            store_errors.clone(),
        );
        let spec_load_errors = Counter::default();
        registry.register(
            "monitor_spec_load_errors",
            "Spec (re)loads that failed; the previous version stays in force",
            spec_load_errors.clone(),
        );
        let policy_load_errors = Counter::default();
        registry.register(
            "monitor_policy_load_errors",
            "Policy reloads that failed; the previous policy stays in force",
            policy_load_errors.clone(),
        );
        let kubernetes_errors = Counter::default();
        registry.register(
            "monitor_kubernetes_errors",
            "Failed reads of Kubernetes metadata (retried; the last good view is kept)",
            kubernetes_errors.clone(),
        );
        let specs_loaded = Gauge::default();
        registry.register(
            "monitor_specs_loaded",
            "Services with a declared spec in force",
            specs_loaded.clone(),
        );
        registry.register(
            "monitor_build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let attached = Gauge::<i64>::default();
        attached.set(attached_programs as i64);
        registry.register(
            "monitor_attached_programs",
            "eBPF program attachments",
            attached,
        );
        Metrics {
            registry,
            events_received,
            events_undecodable,
            calls,
            parse_errors,
            resyncs,
            unmatched_responses,
            dropped_requests,
            stream_gaps,
            tracked_connections,
            parser_buffered_bytes,
            connections_evicted,
            records_dropped,
            inventory_endpoints,
            calls_paired,
            incomplete_calls,
            store_errors,
            spec_load_errors,
            policy_load_errors,
            kubernetes_errors,
            specs_loaded,
        }
    }

    /// `api_endpoints`, read from the inventory at each scrape.
    pub fn add_inventory(&mut self, inventory: Arc<Mutex<Inventory>>) {
        self.registry
            .register_collector(Box::new(inventory::InventoryCollector { inventory }));
    }

    /// The OpenTelemetry-named traffic families; the pipeline records into them.
    pub fn add_traffic(&mut self, max_routes: usize) -> traffic::TrafficFamilies {
        traffic::TrafficFamilies::register(&mut self.registry, max_routes)
    }

    pub fn add_kernel_counters(&mut self, reader: Arc<CounterReader>) {
        self.registry
            .register_collector(Box::new(KernelCollector { reader }));
    }

    pub fn add_tls_attach(&mut self, attached: Gauge, failures: Counter) {
        self.registry.register(
            "monitor_tls_objects_attached",
            "Distinct OpenSSL libraries the TLS probes are attached to",
            attached,
        );
        self.registry.register(
            "monitor_tls_attach_failures",
            "OpenSSL libraries the TLS probes could not be attached to (reasons in the log)",
            failures,
        );
    }

    /// Exports the kernel's accounting of time spent in each of our programs (zero unless
    /// run-time statistics are enabled, `--kernel-stats`).
    pub fn add_program_stats(&mut self, programs: Vec<(u32, String)>) {
        self.registry
            .register_collector(Box::new(ProgramStats { programs }));
    }

    pub fn encode(&self) -> String {
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

impl Collector for KernelCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let k = self.reader.read();
        counter(
            &mut enc,
            "monitor_ringbuf_events",
            "Records the kernel wrote to the ring buffer",
            k.events,
        )?;
        counter(
            &mut enc,
            "monitor_ringbuf_bytes",
            "Payload bytes the kernel wrote to the ring buffer",
            k.bytes,
        )?;
        counter(
            &mut enc,
            "monitor_ringbuf_drops",
            "Records lost because the ring buffer was full",
            k.drops,
        )?;
        counter(
            &mut enc,
            "monitor_ringbuf_dropped_bytes",
            "Payload bytes of records lost to a full ring buffer",
            k.dropped_bytes,
        )?;
        counter(
            &mut enc,
            "monitor_truncations",
            "Segments captured only in part (longer than the capture limit)",
            k.truncations,
        )?;
        counter(
            &mut enc,
            "monitor_truncated_bytes",
            "Bytes not captured because of truncation",
            k.truncated_bytes,
        )?;
        counter(
            &mut enc,
            "monitor_http_connections",
            "Connections the kernel classified as HTTP",
            k.http_conns,
        )?;
        counter(
            &mut enc,
            "monitor_other_connections",
            "Connections the kernel classified as not HTTP and skips",
            k.not_http_conns,
        )?;
        counter(
            &mut enc,
            "monitor_syscall_args_lost",
            "Syscalls not captured because the argument map was full",
            k.args_lost,
        )?;
        counter(
            &mut enc,
            "monitor_tls_connections",
            "Connections the kernel classified as TLS (ciphertext skipped)",
            k.tls_conns,
        )?;
        counter(
            &mut enc,
            "monitor_tls_unmapped_calls",
            "TLS reads/writes not yet tied to a socket (their plaintext is not reported)",
            k.tls_unmapped,
        )?;
        counter(
            &mut enc,
            "monitor_memory_read_errors",
            "Failed reads of process or kernel memory",
            k.read_errors,
        )?;
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
