//! Traffic metrics named after the OpenTelemetry HTTP semantic conventions as Prometheus
//! exports them (`http_server_request_duration_seconds` and friends), so dashboards and
//! alerts written for instrumented services work on what the agent observes.
//!
//! Cardinality is bounded per service: at most `max_routes` distinct `http_route` values
//! and `MAX_PEERS` distinct `peer_service` values; the rest are counted under `_OTHER`,
//! and how often that happens is itself exported.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
};

use hashbrown::{Equivalent, HashMap as FastMap, HashSet};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};

use crate::{
    inventory::SpecStatus,
    protocol::exchange::Protocol,
    record::{method_or_other, CallRecord, Role, OTHER},
};

/// Distinct callers per service kept as label values.
const MAX_PEERS: usize = 50;
/// Handle cache entries before the cache is dropped and rebuilt.
const MAX_CACHED_SERIES: usize = 100_000;

/// Seconds: OpenTelemetry's default boundaries with finer steps below 5 ms, where most
/// internal APIs answer.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0,
];
/// Bytes: powers of four from 64 B to 16 MiB.
const SIZE_BUCKETS: &[f64] = &[
    0.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    /// The measuring side's service.
    pub service: String,
    pub peer_service: String,
    pub http_request_method: String,
    pub http_route: String,
    pub http_response_status_code: String,
    pub network_protocol_name: String,
    /// `1.1` or `2`.
    pub network_protocol_version: String,
    /// The gRPC status code for gRPC calls, empty (so absent in Prometheus) otherwise.
    pub rpc_grpc_status_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SpecLabels {
    pub service: String,
    pub spec_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ServiceLabels {
    pub service: String,
}

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistFamily = Family<HttpLabels, Histogram, Buckets>;

/// The families, registered once; the recorder holds clones.
#[derive(Clone)]
pub(crate) struct TrafficFamilies {
    duration: [HistFamily; 2],
    request_size: [HistFamily; 2],
    response_size: [HistFamily; 2],
    undeclared: Family<SpecLabels, Counter>,
    route_overflow: Family<ServiceLabels, Counter>,
    peer_overflow: Family<ServiceLabels, Counter>,
}

fn hist(b: &'static [f64]) -> HistFamily {
    Family::new_with_constructor(Buckets(b))
}

impl TrafficFamilies {
    pub(crate) fn register(registry: &mut Registry, max_routes: usize) -> TrafficFamilies {
        let f = TrafficFamilies {
            duration: [hist(DURATION_BUCKETS), hist(DURATION_BUCKETS)],
            request_size: [hist(SIZE_BUCKETS), hist(SIZE_BUCKETS)],
            response_size: [hist(SIZE_BUCKETS), hist(SIZE_BUCKETS)],
            undeclared: Family::default(),
            route_overflow: Family::default(),
            peer_overflow: Family::default(),
        };
        for (i, side) in ["server", "client"].iter().enumerate() {
            registry.register(
                format!("http_{side}_request_duration_seconds"),
                format!("Duration of HTTP calls measured at the {side}'s socket (first request byte to last response byte)"),
                f.duration[i].clone(),
            );
            registry.register(
                format!("http_{side}_request_body_size_bytes"),
                format!("Size of HTTP request bodies seen at the {side}"),
                f.request_size[i].clone(),
            );
            registry.register(
                format!("http_{side}_response_body_size_bytes"),
                format!("Size of HTTP response bodies seen at the {side}"),
                f.response_size[i].clone(),
            );
        }
        registry.register(
            "api_undeclared_calls",
            "Calls to shadow (undeclared) and zombie (deprecated) endpoints",
            f.undeclared.clone(),
        );
        registry.register(
            "monitor_metric_route_overflow_calls",
            "Calls counted under http_route=\"_OTHER\" because their service reached the route cap",
            f.route_overflow.clone(),
        );
        registry.register(
            "monitor_metric_peer_overflow_calls",
            "Calls counted under peer_service=\"_OTHER\" because their service reached the caller cap",
            f.peer_overflow.clone(),
        );
        let cap = Gauge::<i64>::default();
        cap.set(max_routes as i64);
        registry.register(
            "monitor_metric_route_cap",
            "Distinct http_route values kept per service (--max-metric-routes)",
            cap,
        );
        f
    }
}

/// One series' label values, borrowed, for allocation-free lookups of cached handles.
#[derive(Hash)]
struct SeriesRef<'a> {
    side: usize,
    service: &'a str,
    peer: &'a str,
    method: &'a str,
    route: &'a str,
    status: u16,
    protocol: &'static str,
    grpc: Option<u32>,
}

#[derive(PartialEq, Eq)]
struct SeriesKey {
    side: usize,
    service: String,
    peer: String,
    method: String,
    route: String,
    status: u16,
    protocol: &'static str,
    grpc: Option<u32>,
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        SeriesRef {
            side: self.side,
            service: &self.service,
            peer: &self.peer,
            method: &self.method,
            route: &self.route,
            status: self.status,
            protocol: self.protocol,
            grpc: self.grpc,
        }
        .hash(h);
    }
}

impl Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, k: &SeriesKey) -> bool {
        self.side == k.side
            && self.status == k.status
            && self.grpc == k.grpc
            && self.protocol == k.protocol
            && self.route == k.route
            && self.method == k.method
            && self.peer == k.peer
            && self.service == k.service
    }
}

struct Handles {
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
}

/// gRPC defines codes 0 to 16; any other value a server sends is counted as `_OTHER`
/// (kept as `GRPC_OTHER` in series keys), so a workload cannot mint label values.
const GRPC_OTHER: u32 = u32::MAX;

fn grpc_code(status: Option<u32>) -> Option<u32> {
    status.map(|s| if s <= 16 { s } else { GRPC_OTHER })
}

fn grpc_label(code: Option<u32>) -> String {
    match code {
        None => String::new(),
        Some(GRPC_OTHER) => OTHER.to_string(),
        Some(c) => c.to_string(),
    }
}

/// Bounded set of label values per service.
#[derive(Default)]
struct Caps {
    seen: HashMap<String, HashSet<String>>,
}

impl Caps {
    /// `value` when the service already has it or has room for it, else `_OTHER`.
    fn admit<'a>(&mut self, service: &str, value: &'a str, cap: usize) -> &'a str {
        let set = match self.seen.get_mut(service) {
            Some(s) => s,
            None => self.seen.entry(service.to_string()).or_default(),
        };
        if set.contains(value) {
            return value;
        }
        if set.len() < cap {
            set.insert(value.to_string());
            return value;
        }
        OTHER
    }
}

/// Records counted calls into the families; lives on the pipeline thread.
pub(crate) struct TrafficRecorder {
    f: TrafficFamilies,
    max_routes: usize,
    routes: Caps,
    peers: Caps,
    cache: FastMap<SeriesKey, Handles>,
    /// Per server service: [shadow, zombie] counters, looked up without allocating.
    undeclared: FastMap<String, [Option<Counter>; 2]>,
}

impl TrafficRecorder {
    pub(crate) fn new(f: TrafficFamilies, max_routes: usize) -> TrafficRecorder {
        TrafficRecorder {
            f,
            max_routes: max_routes.max(1),
            routes: Caps::default(),
            peers: Caps::default(),
            cache: FastMap::new(),
            undeclared: FastMap::new(),
        }
    }

    /// One counted call; `spec_status` is its endpoint's.
    pub(crate) fn record(&mut self, c: &CallRecord, spec_status: Option<SpecStatus>) {
        let server = c.server.service.as_deref().unwrap_or("");
        let client = c.client.service.as_deref().unwrap_or("");
        // Which sides measured the call, with the duration each saw.
        let server_view = (c.role == Role::Server || c.seen_by_both).then_some(c.duration_us);
        let client_view = match c.role {
            Role::Client => Some(c.duration_us),
            Role::Server => c.client_duration_us,
        };
        if let Some(us) = server_view {
            self.observe(0, server, client, c, us);
        }
        if let Some(us) = client_view {
            self.observe(1, client, server, c, us);
        }
        let slot = match spec_status {
            Some(SpecStatus::Shadow) => 0,
            Some(SpecStatus::Zombie) => 1,
            _ => return,
        };
        if !self.undeclared.contains_key(server) {
            self.undeclared.insert(server.to_string(), [None, None]);
        }
        let counters = self
            .undeclared
            .get_mut(server)
            .expect("present or just inserted");
        let family = &self.f.undeclared;
        counters[slot]
            .get_or_insert_with(|| {
                family
                    .get_or_create(&SpecLabels {
                        service: server.to_string(),
                        spec_status: ["shadow", "zombie"][slot].to_string(),
                    })
                    .clone()
            })
            .inc();
    }

    fn observe(&mut self, side: usize, service: &str, peer: &str, c: &CallRecord, us: u64) {
        let route = self.routes.admit(service, &c.route, self.max_routes);
        if route == OTHER && c.route != OTHER {
            self.f
                .route_overflow
                .get_or_create(&ServiceLabels {
                    service: service.to_string(),
                })
                .inc();
        }
        let peer = self.peers.admit(service, peer, MAX_PEERS);
        if peer == OTHER {
            self.f
                .peer_overflow
                .get_or_create(&ServiceLabels {
                    service: service.to_string(),
                })
                .inc();
        }
        let key = SeriesRef {
            side,
            service,
            peer,
            method: method_or_other(&c.method),
            route,
            status: c.status,
            protocol: c.protocol.as_str(),
            grpc: grpc_code(c.grpc.as_ref().and_then(|g| g.status)),
        };
        if !self.cache.contains_key(&key) {
            if self.cache.len() >= MAX_CACHED_SERIES {
                self.cache.clear();
            }
            let labels = HttpLabels {
                service: service.to_string(),
                peer_service: peer.to_string(),
                http_request_method: key.method.to_string(),
                http_route: route.to_string(),
                http_response_status_code: c.status.to_string(),
                network_protocol_name: "http".to_string(),
                network_protocol_version: if c.protocol == Protocol::Http1 {
                    "1.1"
                } else {
                    "2"
                }
                .to_string(),
                rpc_grpc_status_code: grpc_label(key.grpc),
            };
            let h = Handles {
                duration: self.f.duration[side].get_or_create(&labels).clone(),
                request_size: self.f.request_size[side].get_or_create(&labels).clone(),
                response_size: self.f.response_size[side].get_or_create(&labels).clone(),
            };
            self.cache.insert(
                SeriesKey {
                    side,
                    service: service.to_string(),
                    peer: peer.to_string(),
                    method: key.method.to_string(),
                    route: route.to_string(),
                    status: c.status,
                    protocol: c.protocol.as_str(),
                    grpc: key.grpc,
                },
                h,
            );
        }
        if let Some(h) = self.cache.get(&key) {
            h.duration.observe(us as f64 / 1e6);
            h.request_size.observe(c.request_body_bytes as f64);
            h.response_size.observe(c.response_body_bytes as f64);
        }
    }
}

#[cfg(test)]
mod tests;
