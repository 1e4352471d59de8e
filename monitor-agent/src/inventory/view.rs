//! The inventory as the query API and the CLI show it: stable JSON, percentiles computed,
//! times in RFC 3339.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{
    book::{Endpoint, EndpointKey, Inventory, SpecStatus},
    stats::Sizes,
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyView {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
    pub mean: Option<u64>,
    pub max: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SizeView {
    pub avg: u64,
    pub max: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallerView {
    pub service: String,
    pub calls: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    pub service: String,
    pub method: String,
    pub route: String,
    pub spec_status: SpecStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    pub calls: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub latency_us: LatencyView,
    pub request_bytes: SizeView,
    pub response_bytes: SizeView,
    pub statuses: BTreeMap<String, u64>,
    pub callers: Vec<CallerView>,
    pub auth: BTreeMap<String, u64>,
    pub request_content_types: BTreeMap<String, u64>,
    pub response_content_types: BTreeMap<String, u64>,
    pub query_params: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusedView {
    pub service: String,
    pub method: String,
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    pub deprecated: bool,
}

/// What `GET /api/v1/inventory` narrows to.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub service: Option<String>,
    pub spec_status: Option<SpecStatus>,
    /// Only endpoints called at or after this time.
    pub since: Option<SystemTime>,
}

pub fn rfc3339_us(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_micros(t).to_string()
}

fn size(s: &Sizes, calls: u64) -> SizeView {
    SizeView {
        avg: s.total.checked_div(calls).unwrap_or(0),
        max: s.max,
    }
}

pub fn endpoint_view(k: &EndpointKey, e: &Endpoint) -> EndpointView {
    let s = &e.stats;
    let q = |x| s.latency.quantile(x).map(|v| v.round() as u64);
    let mut callers: Vec<CallerView> = s
        .callers
        .iter()
        .map(|(service, calls)| CallerView {
            service: service.clone(),
            calls: *calls,
        })
        .collect();
    callers.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.service.cmp(&b.service)));
    EndpointView {
        service: k.service.clone(),
        method: k.method.clone(),
        route: k.route.clone(),
        spec_status: e.spec_status,
        operation_id: e.operation_id.clone(),
        calls: s.calls,
        first_seen: rfc3339_us(s.first_seen_us),
        last_seen: rfc3339_us(s.last_seen_us),
        errors_4xx: s.errors_4xx,
        errors_5xx: s.errors_5xx,
        latency_us: LatencyView {
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            mean: s.latency.mean().map(|v| v.round() as u64),
            max: s.latency.max(),
        },
        request_bytes: size(&s.request_bytes, s.calls),
        response_bytes: size(&s.response_bytes, s.calls),
        statuses: s
            .statuses
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect(),
        callers,
        auth: s.auth.clone(),
        request_content_types: s.request_content_types.clone(),
        response_content_types: s.response_content_types.clone(),
        query_params: s.query_params.iter().cloned().collect(),
    }
}

/// Matching endpoints, sorted by service, route, method.
pub fn endpoints(inv: &Inventory, f: &Filter) -> Vec<EndpointView> {
    let since_us = f.since.map(|t| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    });
    let mut out: Vec<EndpointView> = inv
        .endpoints()
        .filter(|(k, _)| f.service.as_ref().is_none_or(|s| *s == k.service))
        .filter(|(_, e)| f.spec_status.is_none_or(|s| s == e.spec_status))
        .filter(|(_, e)| since_us.is_none_or(|t| e.stats.last_seen_us >= t))
        .map(|(k, e)| endpoint_view(k, e))
        .collect();
    out.sort_by(|a, b| (&a.service, &a.route, &a.method).cmp(&(&b.service, &b.route, &b.method)));
    out
}

pub fn unused(inv: &Inventory, service: Option<&str>) -> Vec<UnusedView> {
    inv.unused()
        .into_iter()
        .filter(|(s, _)| service.is_none_or(|want| want == s))
        .map(|(service, op)| UnusedView {
            service,
            method: op.method,
            route: op.route,
            operation_id: op.operation_id,
            deprecated: op.deprecated,
        })
        .collect()
}
