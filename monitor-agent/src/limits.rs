//! The caps on state a workload can make the agent hold. Every collection keyed by
//! something a workload controls (paths, methods, streams, connections, processes) is
//! bounded; each time a bound is reached the agent does something safe (sheds the oldest,
//! files under `_OTHER`, stops learning) and counts it here, so an operator sees that a
//! cap was hit and which one. Exported as `monitor_limit_reached_total{limit}`, every cap
//! always present; the first hit of each is logged once.
//!
//! The counts are process-wide statics because the caps sit deep in parsers and tables
//! that know nothing of the metrics registry, and a cap reached is a fact about the agent,
//! not about one of its parts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::counter::ConstCounter,
};

/// One cap. The README's security section lists each with its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The node-wide budget of bytes parsers hold (heads, header blocks, open requests and
    /// streams): the connections holding bytes that were idle longest are shed.
    ParserMemory,
    /// Requests waiting for a response on one HTTP/1 connection: the oldest is dropped.
    Http1Pending,
    /// Streams open at once on one HTTP/2 connection: the oldest is dropped.
    Http2Streams,
    /// Nodes of the learned route tree: routes are shaped without learning more.
    RouteTree,
    /// Distinct values one path position keeps as evidence for route discovery: further
    /// ones are counted, not kept.
    RouteSamples,
    /// Segments of one path kept as evidence for route discovery: deeper ones are routed by
    /// the built-in templating alone.
    RouteDepth,
    /// Endpoints in the inventory: calls to further endpoints are not filed.
    Endpoints,
    /// Distinct callers remembered per endpoint: the rest count under `(other)`.
    Callers,
    /// Distinct query parameter, header or body names per endpoint: the rest count under
    /// `(other)`.
    ParameterNames,
    /// Calls waiting for their other side to be seen: the oldest is counted alone.
    PairingWaiting,
    /// Calls remembered as counted alone, so a late other side is not counted again: the
    /// oldest is forgotten (its other side, if it comes, counts again).
    PairingCounted,
    /// Executions waiting to be looked at for TLS libraries: further ones wait for the
    /// periodic rescan.
    ExecQueue,
    /// Executables and libraries remembered as already inspected: those without probes are
    /// forgotten and inspected again when met.
    InspectedFiles,
    /// Files the TLS probes are attached to: further copies of a TLS library are not
    /// probed.
    TlsObjects,
    /// Processes whose identity is cached: the cache is cleared.
    IdentityCache,
    /// Distinct (caller, endpoint) pairs whose violation logging is rate-limited.
    ViolationLimiters,
    /// Repeating values (methods, hosts, media types, routes) one thread shares between
    /// calls: the table is emptied and filled again.
    InternedValues,
}

impl Limit {
    pub const ALL: [Limit; 17] = [
        Limit::ParserMemory,
        Limit::Http1Pending,
        Limit::Http2Streams,
        Limit::RouteTree,
        Limit::RouteSamples,
        Limit::RouteDepth,
        Limit::Endpoints,
        Limit::Callers,
        Limit::ParameterNames,
        Limit::PairingWaiting,
        Limit::PairingCounted,
        Limit::ExecQueue,
        Limit::InspectedFiles,
        Limit::TlsObjects,
        Limit::IdentityCache,
        Limit::ViolationLimiters,
        Limit::InternedValues,
    ];

    /// The `limit` label value.
    pub fn name(self) -> &'static str {
        match self {
            Limit::ParserMemory => "parser_memory",
            Limit::Http1Pending => "http1_pending_requests",
            Limit::Http2Streams => "http2_open_streams",
            Limit::RouteTree => "route_tree_nodes",
            Limit::RouteSamples => "route_position_values",
            Limit::RouteDepth => "route_path_depth",
            Limit::Endpoints => "inventory_endpoints",
            Limit::Callers => "endpoint_callers",
            Limit::ParameterNames => "endpoint_parameter_names",
            Limit::PairingWaiting => "pairing_waiting_calls",
            Limit::PairingCounted => "pairing_counted_calls",
            Limit::ExecQueue => "exec_queue",
            Limit::InspectedFiles => "inspected_files",
            Limit::TlsObjects => "tls_probed_files",
            Limit::IdentityCache => "identity_cache",
            Limit::ViolationLimiters => "violation_limiters",
            Limit::InternedValues => "interned_values",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The cap was reached once more.
    pub fn reached(self) {
        self.reached_by(1);
    }

    /// The cap was reached `n` times at once (a batch shed, say).
    pub fn reached_by(self, n: u64) {
        if n == 0 {
            return;
        }
        let i = self.index();
        COUNTS[i].fetch_add(n, Ordering::Relaxed);
        if !LOGGED[i].swap(true, Ordering::Relaxed) {
            log::warn!(
                "limit {} reached: state a workload controls is at its cap; further hits \
                 are counted in monitor_limit_reached_total{{limit=\"{}\"}}",
                self.name(),
                self.name()
            );
        }
    }

    /// Times this cap was reached since the agent started.
    pub fn count(self) -> u64 {
        COUNTS[self.index()].load(Ordering::Relaxed)
    }
}

const N: usize = Limit::ALL.len();
static COUNTS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static LOGGED: [AtomicBool; N] = [const { AtomicBool::new(false) }; N];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: String,
}

/// Exports every cap's count at scrape time.
#[derive(Debug)]
pub(crate) struct LimitCollector;

impl Collector for LimitCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = ConstCounter::new(0u64);
        let mut m = enc.encode_descriptor(
            "monitor_limit_reached",
            "Times a cap on state that workloads control was reached, by cap",
            None,
            c.metric_type(),
        )?;
        for l in Limit::ALL {
            let labels = LimitLabels {
                limit: l.name().to_string(),
            };
            ConstCounter::new(l.count()).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_listed_once_in_its_own_slot() {
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(l.index(), i, "{l:?}");
        }
        let mut names: Vec<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N);
    }

    #[test]
    fn hits_are_counted() {
        let before = Limit::ViolationLimiters.count();
        Limit::ViolationLimiters.reached();
        Limit::ViolationLimiters.reached_by(3);
        Limit::ViolationLimiters.reached_by(0);
        assert!(Limit::ViolationLimiters.count() >= before + 4);
    }
}
