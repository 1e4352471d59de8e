//! The inventory itself: endpoints keyed by (service, method, route), classified against
//! the declared specs, with their statistics.

use std::{borrow::Cow, collections::HashMap, sync::Arc, time::UNIX_EPOCH};

use hashbrown::{Equivalent, HashMap as FastMap, HashSet as FastSet};

use serde::{Deserialize, Serialize};

use super::stats::{EndpointStats, Observation};
use crate::{
    limits::Limit,
    record::CallRecord,
    route::{RouteKind, RouteTemplate, Router},
    spec::ServiceSpec,
    text::Text,
};

/// How an observed endpoint relates to its service's declared spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpecStatus {
    /// Declared and not deprecated.
    Documented,
    /// Served but declared nowhere (also every endpoint of a service with no spec).
    Shadow,
    /// Declared `deprecated: true` and still called.
    Zombie,
}

impl SpecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecStatus::Documented => "documented",
            SpecStatus::Shadow => "shadow",
            SpecStatus::Zombie => "zombie",
        }
    }

    /// The status of an endpoint given the declared operation it matches, if any.
    pub fn of(op: Option<&crate::spec::DeclaredOp>) -> SpecStatus {
        match op {
            Some(op) if op.deprecated => SpecStatus::Zombie,
            Some(_) => SpecStatus::Documented,
            None => SpecStatus::Shadow,
        }
    }

    pub fn parse(s: &str) -> Option<SpecStatus> {
        match s {
            "documented" => Some(SpecStatus::Documented),
            "shadow" => Some(SpecStatus::Shadow),
            "zombie" => Some(SpecStatus::Zombie),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointKey {
    pub service: String,
    pub method: String,
    pub route: String,
}

/// A key made of borrowed parts, so filing a call under an existing endpoint allocates
/// nothing. Hashes like `EndpointKey` (a `String` hashes as its `str`).
#[derive(Hash)]
struct KeyRef<'a> {
    service: &'a str,
    method: &'a str,
    route: &'a str,
}

impl Equivalent<EndpointKey> for KeyRef<'_> {
    fn equivalent(&self, k: &EndpointKey) -> bool {
        self.route == k.route && self.method == k.method && self.service == k.service
    }
}

impl KeyRef<'_> {
    fn to_key(&self) -> EndpointKey {
        EndpointKey {
            service: self.service.to_string(),
            method: self.method.to_string(),
            route: self.route.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub stats: EndpointStats,
    pub spec_status: SpecStatus,
    pub operation_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct InventoryConfig {
    pub patterns: Vec<RouteTemplate>,
    /// Distinct values at one path position beyond which it is a parameter whatever they
    /// look like; 0 turns route discovery off.
    pub cardinality_limit: usize,
    /// Endpoints kept at most; calls to further new endpoints are counted as overflow.
    pub max_endpoints: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            patterns: Vec::new(),
            cardinality_limit: 50,
            max_endpoints: 50_000,
        }
    }
}

pub struct Inventory {
    endpoints: FastMap<EndpointKey, Endpoint>,
    router: Router,
    max_endpoints: usize,
    /// Changed since the store last took them.
    dirty: FastSet<EndpointKey>,
    /// Merged into another endpoint since the store last took them.
    removed: FastSet<EndpointKey>,
    /// Calls not recorded because `max_endpoints` was reached.
    pub overflow: u64,
}

fn is_declared_method(m: &str) -> bool {
    matches!(
        m,
        "GET" | "PUT" | "POST" | "DELETE" | "OPTIONS" | "HEAD" | "PATCH" | "TRACE"
    )
}

impl Inventory {
    pub fn new(cfg: InventoryConfig) -> Inventory {
        Inventory {
            endpoints: FastMap::new(),
            router: Router::new(cfg.patterns, cfg.cardinality_limit),
            max_endpoints: cfg.max_endpoints,
            dirty: FastSet::new(),
            removed: FastSet::new(),
            overflow: 0,
        }
    }

    /// The route of a request to `service` (see [`Router::route`]); when the service's
    /// routes were worked out again, its endpoints are re-filed under them.
    pub fn route(&mut self, service: &str, method: &str, target: &str, kind: RouteKind) -> Text {
        let routed = self.router.route(service, method, target, kind);
        if routed.rerouted {
            self.refile(Some(service));
        }
        routed.route
    }

    fn classify(&self, service: &str, method: &str, route: &str) -> (SpecStatus, Option<String>) {
        let op = self.router.declared_op(service, method, route);
        (SpecStatus::of(op), op.and_then(|o| o.operation_id.clone()))
    }

    /// Files one call (already routed, counted once) under its endpoint; returns the
    /// endpoint's spec status (`None` when the endpoint table is full).
    pub fn observe(&mut self, call: &CallRecord) -> Option<SpecStatus> {
        let key = KeyRef {
            service: call.server.service.as_deref().unwrap_or(""),
            method: crate::record::method_or_other(&call.method),
            route: &call.route,
        };
        let auth = auth_label(call);
        let obs = Observation {
            ts_us: call
                .ts
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
            status: call.status,
            duration_us: call.duration_us,
            request_bytes: call.request_bytes,
            response_bytes: call.response_bytes,
            caller: call.client.service.as_deref().unwrap_or("unknown"),
            auth: &auth,
            request_content_type: call.request_content_type.as_deref(),
            response_content_type: call.response_content_type.as_deref(),
            query: call.path.split_once('?').map(|(_, q)| q),
        };
        if let Some(e) = self.endpoints.get_mut(&key) {
            e.stats.observe(&obs);
            let status = e.spec_status;
            if !self.dirty.contains(&key) {
                self.dirty.insert(key.to_key());
            }
            return Some(status);
        }
        if self.endpoints.len() >= self.max_endpoints {
            self.overflow += 1;
            Limit::Endpoints.reached();
            return None;
        }
        let (spec_status, operation_id) = self.classify(key.service, key.method, key.route);
        let mut stats = EndpointStats::default();
        stats.observe(&obs);
        self.endpoints.insert(
            key.to_key(),
            Endpoint {
                stats,
                spec_status,
                operation_id,
            },
        );
        self.dirty.insert(key.to_key());
        Some(spec_status)
    }

    /// Re-files the endpoints of `service` (of every service: `None`) whose route the
    /// current routes name differently; endpoints that now share a route are merged.
    fn refile(&mut self, service: Option<&str>) {
        let affected: Vec<(EndpointKey, String)> = self
            .endpoints
            .keys()
            .filter(|k| service.is_none_or(|s| k.service == s))
            .filter_map(|k| {
                let route = self.router.reroute(&k.service, &k.method, &k.route);
                (route != k.route).then(|| (k.clone(), route))
            })
            .collect();
        for (old, route) in affected {
            self.rekey(old, route);
        }
    }

    fn rekey(&mut self, old: EndpointKey, route: String) {
        let Some(e) = self.endpoints.remove(&old) else {
            return;
        };
        let new = EndpointKey {
            route,
            ..old.clone()
        };
        let (spec_status, operation_id) = self.classify(&new.service, &new.method, &new.route);
        match self.endpoints.get_mut(&new) {
            Some(target) => target.stats.merge(&e.stats),
            None => {
                self.endpoints.insert(
                    new.clone(),
                    Endpoint {
                        stats: e.stats,
                        spec_status,
                        operation_id,
                    },
                );
            }
        }
        self.dirty.remove(&old);
        self.removed.insert(old);
        self.removed.remove(&new);
        self.dirty.insert(new);
    }

    /// Puts new specs in force: endpoints are re-filed under declared templates and
    /// re-classified.
    pub fn set_specs(&mut self, specs: HashMap<String, Arc<ServiceSpec>>) {
        self.router.set_specs(specs);
        let keys: Vec<EndpointKey> = self.endpoints.keys().cloned().collect();
        for k in keys {
            let declared = self.router.declared_route(&k.service, &k.method, &k.route);
            if let Some(route) = declared.filter(|r| *r != k.route).map(str::to_owned) {
                self.rekey(k, route);
                continue;
            }
            let (status, op) = self.classify(&k.service, &k.method, &k.route);
            if let Some(e) = self.endpoints.get_mut(&k) {
                if e.spec_status != status || e.operation_id != op {
                    e.spec_status = status;
                    e.operation_id = op;
                    self.dirty.insert(k);
                }
            }
        }
    }

    pub fn specs(&self) -> &HashMap<String, Arc<ServiceSpec>> {
        self.router.specs()
    }

    pub fn endpoints(&self) -> impl Iterator<Item = (&EndpointKey, &Endpoint)> {
        self.endpoints.iter()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Declared operations never observed, per service with a spec.
    pub fn unused(&self) -> Vec<(String, crate::spec::DeclaredOp)> {
        let mut out = Vec::new();
        for (service, spec) in self.router.specs() {
            for op in &spec.ops {
                let key = EndpointKey {
                    service: service.clone(),
                    method: op.method.clone(),
                    route: op.route.clone(),
                };
                if !self.endpoints.contains_key(&key) && is_declared_method(&op.method) {
                    out.push((service.clone(), op.clone()));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1.route, &a.1.method).cmp(&(&b.0, &b.1.route, &b.1.method)));
        out
    }

    /// What changed since the last call: endpoints to write, keys to delete.
    pub fn take_changes(&mut self) -> (Vec<(EndpointKey, Endpoint)>, Vec<EndpointKey>) {
        let upserts = self
            .dirty
            .drain()
            .filter_map(|k| self.endpoints.get(&k).map(|e| (k.clone(), e.clone())))
            .collect();
        let removed = self.removed.drain().collect();
        (upserts, removed)
    }

    /// Marks a failed flush's changes for the next one.
    pub fn requeue(&mut self, upserts: Vec<(EndpointKey, Endpoint)>, removed: Vec<EndpointKey>) {
        for (k, _) in upserts {
            if !self.removed.contains(&k) {
                self.dirty.insert(k);
            }
        }
        for k in removed {
            if !self.endpoints.contains_key(&k) {
                self.removed.insert(k);
            }
        }
    }

    /// Adds a stored endpoint; false when the inventory is full (`max_endpoints`, counted
    /// in `overflow` as one call each) and it was left out. Its route teaches discovery;
    /// call [`Inventory::restored`] once every endpoint is in.
    pub fn restore(&mut self, key: EndpointKey, stats: EndpointStats) -> bool {
        self.router
            .relearn(&key.service, &key.method, &key.route, stats.calls);
        let (spec_status, operation_id) = self.classify(&key.service, &key.method, &key.route);
        let full = self.endpoints.len() >= self.max_endpoints;
        match self.endpoints.get_mut(&key) {
            Some(e) => e.stats.merge(&stats),
            None if full => {
                self.overflow += 1;
                Limit::Endpoints.reached();
                return false;
            }
            None => {
                self.endpoints.insert(
                    key,
                    Endpoint {
                        stats,
                        spec_status,
                        operation_id,
                    },
                );
            }
        }
        true
    }

    /// Routes worked out from the restored endpoints, which are re-filed under them.
    pub fn restored(&mut self) {
        self.router.relearned();
        self.refile(None);
    }
}

/// `jwt iss=https://issuer`, `api_key x-api-key`, `basic`, `none`...
pub fn auth_label(call: &CallRecord) -> Cow<'static, str> {
    let a = &call.auth;
    match (&a.kind, &a.issuer, &a.detail) {
        (crate::protocol::credentials::AuthKind::Jwt, Some(iss), _) => {
            Cow::Owned(format!("jwt iss={iss}"))
        }
        (crate::protocol::credentials::AuthKind::ApiKey, _, Some(h)) => {
            Cow::Owned(format!("api_key {h}"))
        }
        _ => Cow::Borrowed(a.label()),
    }
}

#[cfg(test)]
mod tests;
