//! What the inventory remembers about one endpoint. Everything here merges, because
//! endpoints merge when a route position turns out to be a parameter, and because the
//! store adds what was flushed before a restart to what is seen after it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::limits::Limit;

/// Latency bucket upper bounds grow by this factor from 10 µs, so any percentile is
/// within ~12% of the true value across 10 µs..2 min with 70 buckets.
const GROWTH: f64 = 1.25;
const FIRST_BOUND_US: f64 = 10.0;
const BUCKETS: usize = 74;

/// Bounds on per-endpoint sets, so one noisy endpoint cannot grow without limit; the rest
/// are counted under `OTHER`.
const MAX_CALLERS: usize = 256;
const MAX_KEYS: usize = 64;

/// A per-endpoint set's size and the cap it counts under.
#[derive(Clone, Copy)]
struct Bound {
    max: usize,
    limit: Limit,
}

const CALLERS: Bound = Bound {
    max: MAX_CALLERS,
    limit: Limit::Callers,
};
const NAMES: Bound = Bound {
    max: MAX_KEYS,
    limit: Limit::ParameterNames,
};
pub const OTHER: &str = "(other)";

fn upper_bound_us(i: usize) -> f64 {
    FIRST_BOUND_US * GROWTH.powi(i as i32)
}

/// A fixed-bucket latency histogram: cheap to update, exact to merge.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Sparse: bucket index → count.
    buckets: BTreeMap<u16, u64>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Histogram {
    pub fn observe(&mut self, us: u64) {
        let i = if (us as f64) <= FIRST_BOUND_US {
            0
        } else {
            (((us as f64) / FIRST_BOUND_US).ln() / GROWTH.ln()).ceil() as usize
        };
        *self.buckets.entry(i.min(BUCKETS - 1) as u16).or_default() += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (i, n) in &o.buckets {
            *self.buckets.entry(*i).or_default() += n;
        }
        self.count += o.count;
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
        self.max_us = self.max_us.max(o.max_us);
    }

    /// The `q` quantile (0..=1) in microseconds, interpolated inside its bucket and never
    /// above the largest value seen.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).max(1.0);
        let mut seen = 0u64;
        for (&i, &n) in &self.buckets {
            if (seen + n) as f64 >= rank {
                let hi = upper_bound_us(i as usize);
                let lo = if i == 0 {
                    0.0
                } else {
                    upper_bound_us(i as usize - 1)
                };
                let within = (rank - seen as f64) / n as f64;
                return Some((lo + (hi - lo) * within).min(self.max_us as f64));
            }
            seen += n;
        }
        Some(self.max_us as f64)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_us as f64 / self.count as f64)
    }

    pub fn max(&self) -> u64 {
        self.max_us
    }
}

/// Sum and largest of a size, for averages and outliers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub total: u64,
    pub max: u64,
}

impl Sizes {
    fn add(&mut self, n: u64) {
        self.total = self.total.saturating_add(n);
        self.max = self.max.max(n);
    }
    fn merge(&mut self, o: &Sizes) {
        self.total = self.total.saturating_add(o.total);
        self.max = self.max.max(o.max);
    }
}

/// Counts by key, bounded: keys beyond the limit are counted under `OTHER`.
fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64, bound: Bound) {
    if let Some(v) = map.get_mut(key) {
        *v += n;
    } else if map.len() < bound.max {
        map.insert(key.to_string(), n);
    } else {
        bound.limit.reached();
        *map.entry(OTHER.to_string()).or_default() += n;
    }
}

/// One observed call, reduced to what the inventory keeps.
#[derive(Clone, Debug, Default)]
pub struct Observation<'a> {
    /// Microseconds since the Unix epoch.
    pub ts_us: i64,
    pub status: u16,
    pub duration_us: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub caller: &'a str,
    /// `none`, `basic`, `bearer`, `jwt iss=...`, `api_key x-api-key`...
    pub auth: &'a str,
    pub request_content_type: Option<&'a str>,
    pub response_content_type: Option<&'a str>,
    /// The request target's query string (names are kept, values never).
    pub query: Option<&'a str>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Microseconds since the Unix epoch.
    pub first_seen_us: i64,
    pub last_seen_us: i64,
    pub calls: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub latency: Histogram,
    pub request_bytes: Sizes,
    pub response_bytes: Sizes,
    pub statuses: BTreeMap<u16, u64>,
    pub callers: BTreeMap<String, u64>,
    pub auth: BTreeMap<String, u64>,
    pub request_content_types: BTreeMap<String, u64>,
    pub response_content_types: BTreeMap<String, u64>,
    pub query_params: BTreeSet<String>,
}

impl EndpointStats {
    pub fn observe(&mut self, o: &Observation<'_>) {
        if self.calls == 0 || o.ts_us < self.first_seen_us {
            self.first_seen_us = o.ts_us;
        }
        self.last_seen_us = self.last_seen_us.max(o.ts_us);
        self.calls += 1;
        match o.status {
            400..=499 => self.errors_4xx += 1,
            500..=599 => self.errors_5xx += 1,
            _ => {}
        }
        self.latency.observe(o.duration_us);
        self.request_bytes.add(o.request_bytes);
        self.response_bytes.add(o.response_bytes);
        *self.statuses.entry(o.status).or_default() += 1;
        bump(&mut self.callers, o.caller, 1, CALLERS);
        bump(&mut self.auth, o.auth, 1, NAMES);
        if let Some(ct) = o.request_content_type {
            bump(&mut self.request_content_types, ct, 1, NAMES);
        }
        if let Some(ct) = o.response_content_type {
            bump(&mut self.response_content_types, ct, 1, NAMES);
        }
        if let Some(q) = o.query {
            for name in query_names(q) {
                if self.query_params.contains(name) {
                    continue;
                }
                if self.query_params.len() >= MAX_KEYS {
                    Limit::ParameterNames.reached();
                    break;
                }
                self.query_params.insert(name.to_string());
            }
        }
    }

    pub fn merge(&mut self, o: &EndpointStats) {
        if o.calls == 0 {
            return;
        }
        if self.calls == 0 || o.first_seen_us < self.first_seen_us {
            self.first_seen_us = o.first_seen_us;
        }
        self.last_seen_us = self.last_seen_us.max(o.last_seen_us);
        self.calls += o.calls;
        self.errors_4xx += o.errors_4xx;
        self.errors_5xx += o.errors_5xx;
        self.latency.merge(&o.latency);
        self.request_bytes.merge(&o.request_bytes);
        self.response_bytes.merge(&o.response_bytes);
        for (s, n) in &o.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        for (dst, src, bound) in [
            (&mut self.callers, &o.callers, CALLERS),
            (&mut self.auth, &o.auth, NAMES),
            (
                &mut self.request_content_types,
                &o.request_content_types,
                NAMES,
            ),
            (
                &mut self.response_content_types,
                &o.response_content_types,
                NAMES,
            ),
        ] {
            for (k, n) in src {
                bump(dst, k, *n, bound);
            }
        }
        for q in &o.query_params {
            if self.query_params.len() < MAX_KEYS {
                self.query_params.insert(q.clone());
            } else if !self.query_params.contains(q) {
                Limit::ParameterNames.reached();
            }
        }
    }
}

/// Query parameter names: printable, bounded, never the values.
fn query_names(q: &str) -> impl Iterator<Item = &str> {
    q.split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(n, _)| n))
        .filter(|n| !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_graphic()))
        // A bare word the redactor hashed was a secret, not a name.
        .filter(|n| !n.starts_with(crate::redact::HASHED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.observe(us);
        }
        for (q, want) in [(0.5, 5_000.0), (0.95, 9_500.0), (0.99, 9_900.0)] {
            let got = h.quantile(q).unwrap();
            assert!((got - want).abs() / want < 0.13, "q{q}: {got} vs {want}");
        }
        assert!((h.quantile(1.0).unwrap() - 10_000.0).abs() < f64::EPSILON);
        assert!(Histogram::default().quantile(0.5).is_none());
        let mut one = Histogram::default();
        one.observe(0);
        assert_eq!(one.quantile(0.99), Some(0.0));
        let mut huge = Histogram::default();
        huge.observe(u64::MAX);
        assert!(huge.quantile(0.5).is_some());
    }

    #[test]
    fn merging_equals_observing_everything() {
        let obs = |i: u64| Observation {
            ts_us: 1_000 + i as i64,
            status: if i.is_multiple_of(10) {
                500
            } else if i.is_multiple_of(7) {
                404
            } else {
                200
            },
            duration_us: i * 13,
            request_bytes: i,
            response_bytes: 2 * i,
            caller: if i.is_multiple_of(2) { "a" } else { "b" },
            auth: "none",
            request_content_type: Some("application/json"),
            response_content_type: None,
            query: Some("page=1&limit=5&secret=zzz&h:0a1b2c3d"),
        };
        let (mut all, mut x, mut y) = Default::default();
        for i in 0..100 {
            EndpointStats::observe(&mut all, &obs(i));
            if i < 37 {
                EndpointStats::observe(&mut x, &obs(i));
            } else {
                EndpointStats::observe(&mut y, &obs(i));
            }
        }
        let mut merged: EndpointStats = y.clone();
        merged.merge(&x);
        assert_eq!(merged, all);
        assert_eq!(all.calls, 100);
        assert_eq!(all.errors_5xx, 10);
        assert_eq!(all.first_seen_us, 1_000);
        assert_eq!(all.last_seen_us, 1_099);
        assert_eq!(all.callers["a"], 50);
        let names: Vec<_> = all.query_params.iter().map(String::as_str).collect();
        assert_eq!(names, ["limit", "page", "secret"]);
        let json = serde_json::to_string(&all).unwrap();
        assert!(!json.contains("zzz"));
        let back: EndpointStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn sets_are_bounded() {
        let (callers, names) = (Limit::Callers.count(), Limit::ParameterNames.count());
        let mut s = EndpointStats::default();
        for i in 0..1000 {
            let caller = format!("c{i}");
            let q = format!("p{i}=1");
            s.observe(&Observation {
                caller: &caller,
                auth: "none",
                query: Some(&q),
                ..Default::default()
            });
        }
        assert_eq!(s.callers.len(), MAX_CALLERS + 1);
        assert_eq!(s.callers[OTHER], 1000 - MAX_CALLERS as u64);
        assert_eq!(s.query_params.len(), MAX_KEYS);
        // Other tests may hit the caps at the same time: at least ours are counted.
        assert!(Limit::Callers.count() - callers >= 1000 - MAX_CALLERS as u64);
        assert!(Limit::ParameterNames.count() - names >= 1000 - MAX_KEYS as u64);
    }
}
