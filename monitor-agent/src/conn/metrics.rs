//! What the connection layer tells an operator about itself: calls reassembled, parser
//! trouble, connections tracked and forgotten. Registered once, shared by every shard.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    metrics::register,
    protocol::{exchange::Protocol, session::SessionStats},
    record::Role,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    protocol: String,
    role: String,
    /// "true" when the call was captured as TLS plaintext.
    tls: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The shards' metric families and gauges; cheap to clone (atomics behind `Arc`s).
#[derive(Clone)]
pub(crate) struct ConnMetrics {
    calls: Family<CallLabels, Counter>,
    parse_errors: Family<ProtocolLabels, Counter>,
    resyncs: Family<ProtocolLabels, Counter>,
    unmatched_responses: Family<ProtocolLabels, Counter>,
    dropped_requests: Family<ProtocolLabels, Counter>,
    stream_gaps: Family<ProtocolLabels, Counter>,
    connections_evicted: Family<ReasonLabels, Counter>,
    stream_holes: Family<ReasonLabels, Counter>,
    overlap_bytes: Counter,
    switched_off: Counter,
    pub(super) tracked_connections: Gauge,
    pub(super) parser_buffered_bytes: Gauge,
    /// Records a shard could not hand on (the pipeline's counter, shared).
    pub(super) records_dropped: Counter,
}

impl ConnMetrics {
    pub(crate) fn register(registry: &mut Registry, records_dropped: Counter) -> Self {
        ConnMetrics {
            calls: register(
                registry,
                "monitor_calls",
                "Calls reassembled, by protocol, observed role and TLS",
            ),
            parse_errors: register(
                registry,
                "monitor_parse_errors",
                "Places where bytes expected to start a message could not be parsed",
            ),
            resyncs: register(
                registry,
                "monitor_parser_resyncs",
                "Times a parser regained sync after a gap or garbage",
            ),
            unmatched_responses: register(
                registry,
                "monitor_unmatched_responses",
                "Responses discarded because their request was not seen",
            ),
            dropped_requests: register(
                registry,
                "monitor_dropped_requests",
                "Requests discarded without a response (lost sync, closed, evicted)",
            ),
            stream_gaps: register(
                registry,
                "monitor_stream_gaps",
                "Stretches of a connection's bytes that were not captured",
            ),
            tracked_connections: register(
                registry,
                "monitor_tracked_connections",
                "Connections currently tracked by userspace",
            ),
            parser_buffered_bytes: register(
                registry,
                "monitor_parser_buffered_bytes",
                "Bytes held by parsers for incomplete message heads (updated every second)",
            ),
            connections_evicted: register(
                registry,
                "monitor_connections_evicted",
                "Connections forgotten before their close was seen, by reason (idle, capacity, memory)",
            ),
            stream_holes: register(
                registry,
                "monitor_stream_holes",
                "Places where the kernel lost a connection's bytes without knowing how many: \
                 it could not keep a syscall's state until its exit (syscall_state_lost), or it forgot \
                 the connection's state (connection_forgotten)",
            ),
            overlap_bytes: register(
                registry,
                "monitor_stream_overlap_bytes",
                "Bytes captured twice and kept once: the part a write that moved fewer bytes \
                 than asked sends again",
            ),
            switched_off: register(
                registry,
                "monitor_connections_switched_off",
                "Connections whose capture the agent switched off in the kernel after they \
                 left HTTP (a WebSocket, a tunnel, bytes that were not HTTP)",
            ),
            records_dropped,
        }
    }

    /// The shards' switch for the kernel's table (`None`: counting only).
    pub(crate) fn switch_off(
        &self,
        table: Option<aya::maps::Array<aya::maps::MapData, u64>>,
    ) -> super::SwitchOff {
        super::SwitchOff::new(table, self.switched_off.clone())
    }

    /// Resolves every label set a tracker records under, once per shard.
    pub(super) fn handles(&self) -> Handles {
        let calls = |p: Protocol, role: Role, tls: bool| {
            self.calls
                .get_or_create(&CallLabels {
                    protocol: p.as_str().into(),
                    role: role.as_str().into(),
                    tls: tls.to_string(),
                })
                .clone()
        };
        let parser = |p: Protocol| {
            let l = ProtocolLabels {
                protocol: p.as_str().into(),
            };
            ParserHandles {
                parse_errors: self.parse_errors.get_or_create(&l).clone(),
                resyncs: self.resyncs.get_or_create(&l).clone(),
                unmatched: self.unmatched_responses.get_or_create(&l).clone(),
                dropped_requests: self.dropped_requests.get_or_create(&l).clone(),
                gaps: self.stream_gaps.get_or_create(&l).clone(),
            }
        };
        let reason = |r: &str| {
            self.connections_evicted
                .get_or_create(&ReasonLabels { reason: r.into() })
                .clone()
        };
        let hole = |r: &str| {
            self.stream_holes
                .get_or_create(&ReasonLabels { reason: r.into() })
                .clone()
        };
        Handles {
            calls: PROTOCOLS.map(|p| {
                [Role::Client, Role::Server].map(|role| [false, true].map(|t| calls(p, role, t)))
            }),
            parsers: [parser(Protocol::Http1), parser(Protocol::Http2)],
            evicted_idle: reason("idle"),
            evicted_capacity: reason("capacity"),
            evicted_memory: reason("memory"),
            hole_syscall: hole("syscall_state_lost"),
            hole_forgotten: hole("connection_forgotten"),
            overlap_bytes: self.overlap_bytes.clone(),
        }
    }
}

const PROTOCOLS: [Protocol; 3] = [Protocol::Http1, Protocol::Http2, Protocol::Grpc];

/// Counters resolved once so the hot path does not hash label sets.
pub(super) struct Handles {
    /// Indexed by [protocol][role is server][tls].
    calls: [[[Counter; 2]; 2]; 3],
    /// Indexed by [parser is HTTP/2].
    parsers: [ParserHandles; 2],
    pub(super) evicted_idle: Counter,
    pub(super) evicted_capacity: Counter,
    pub(super) evicted_memory: Counter,
    pub(super) hole_syscall: Counter,
    pub(super) hole_forgotten: Counter,
    pub(super) overlap_bytes: Counter,
}

struct ParserHandles {
    parse_errors: Counter,
    resyncs: Counter,
    unmatched: Counter,
    dropped_requests: Counter,
    gaps: Counter,
}

impl Handles {
    pub(super) fn call(&self, protocol: Protocol, role: Role, tls: bool) {
        let p = match protocol {
            Protocol::Http1 => 0,
            Protocol::Http2 => 1,
            Protocol::Grpc => 2,
        };
        self.calls[p][usize::from(role == Role::Server)][usize::from(tls)].inc();
    }

    /// Adds what a session of `protocol` counted between `was` and `now`.
    pub(super) fn session(&self, protocol: Protocol, was: &SessionStats, now: &SessionStats) {
        let h = &self.parsers[usize::from(protocol != Protocol::Http1)];
        let add = |c: &Counter, now: u64, was: u64| c.inc_by(now.saturating_sub(was));
        add(&h.parse_errors, now.parse_errors, was.parse_errors);
        add(&h.resyncs, now.resyncs, was.resyncs);
        add(
            &h.unmatched,
            now.unmatched_responses,
            was.unmatched_responses,
        );
        add(
            &h.dropped_requests,
            now.dropped_requests,
            was.dropped_requests,
        );
        add(&h.gaps, now.gaps, was.gaps);
    }
}
