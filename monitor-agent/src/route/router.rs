//! The one place a call's route is decided: the service's declared template when its spec
//! has one for the path, else the operator's pattern, else the routes discovered from the
//! service's traffic (see [`super::discovery`]). gRPC paths are routes as they are.

use std::{collections::HashMap, sync::Arc};

use super::{
    discovery::{Declared, Discovery},
    heuristics::template,
    path::path_of,
    pattern::{Input, RoutePattern, RouteTemplate},
    trie::Trie,
};
use crate::{
    protocol::exchange::Protocol,
    spec::{DeclaredOp, ServiceSpec},
    text::Text,
};

/// How much of a call is known, which decides how its route may be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// Method, path and status known: routed in full, and learned from.
    Complete,
    /// Some field could not be decoded: heuristics only, never learned from, because the
    /// call is not filed in the inventory.
    Partial,
    /// A gRPC method: a declared, finite name, never templated or merged.
    Rpc,
}

impl RouteKind {
    pub fn of(protocol: Protocol, complete: bool) -> RouteKind {
        match (protocol, complete) {
            (Protocol::Grpc, _) => RouteKind::Rpc,
            (_, true) => RouteKind::Complete,
            (_, false) => RouteKind::Partial,
        }
    }
}

/// The route a call is filed under, and whether its service's discovered routes changed
/// because of it (what was filed under the old ones must then be re-filed, see
/// [`Router::reroute`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    /// Shared with the other calls of the route.
    pub route: Text,
    pub rerouted: bool,
}

impl Routed {
    fn plain(route: &str) -> Routed {
        Routed {
            route: Text::interned(route),
            rerouted: false,
        }
    }
}

pub struct Router {
    specs: HashMap<String, Arc<ServiceSpec>>,
    patterns: Vec<RouteTemplate>,
    pattern_trie: Trie,
    discovery: Discovery,
}

impl Router {
    /// `limit`: distinct values at one position beyond which it is a parameter whatever
    /// they look like; 0 turns discovery off (the built-in heuristics alone).
    pub fn new(patterns: Vec<RouteTemplate>, limit: usize) -> Router {
        let mut pattern_trie = Trie::default();
        for (i, p) in patterns.iter().enumerate() {
            pattern_trie.insert(p.pattern(), i);
        }
        Router {
            specs: HashMap::new(),
            patterns,
            pattern_trie,
            discovery: Discovery::new(limit),
        }
    }

    /// Puts specs in force; discovery keeps each spec's literals from then on.
    pub fn set_specs(&mut self, specs: HashMap<String, Arc<ServiceSpec>>) {
        for name in self.specs.keys().filter(|n| !specs.contains_key(*n)) {
            self.discovery.set_declared(name, None);
        }
        for (name, spec) in &specs {
            let patterns: Vec<RoutePattern> = spec
                .ops
                .iter()
                .map(|op| RoutePattern::declared(&op.route))
                .collect();
            self.discovery
                .set_declared(name, Some(Declared::new(patterns.iter())));
        }
        self.specs = specs;
    }

    pub fn specs(&self) -> &HashMap<String, Arc<ServiceSpec>> {
        &self.specs
    }

    /// The route of a request to `service` (`target` may carry a query string).
    pub fn route(&mut self, service: &str, method: &str, target: &str, kind: RouteKind) -> Routed {
        let path = path_of(target);
        match kind {
            RouteKind::Rpc => Routed::plain(path),
            RouteKind::Partial => Routed::plain(&template(path)),
            RouteKind::Complete => {
                if let Some(route) = self.declared_route(service, method, path) {
                    return Routed::plain(route);
                }
                if let Some(i) = self.pattern_trie.find(path, Input::Path) {
                    return Routed::plain(self.patterns[i].as_str());
                }
                let (route, rerouted) = self.discovery.route(service, method, path);
                Routed { route, rerouted }
            }
        }
    }

    /// Teaches discovery a route filed before a restart, `calls` times (its parameters stay
    /// parameters); the routes are worked out when [`Router::relearned`] is called.
    pub fn relearn(&mut self, service: &str, method: &str, route: &str, calls: u64) {
        let weight = u32::try_from(calls.max(1)).unwrap_or(u32::MAX);
        self.discovery.learn(service, method, route, weight);
    }

    /// Every service's routes worked out from what was relearned.
    pub fn relearned(&mut self) {
        self.discovery.look_all();
    }

    /// The route that a route filed earlier has under `service`'s current routes: a
    /// declared or operator template stays as it is.
    pub fn reroute(&self, service: &str, method: &str, route: &str) -> String {
        if self.declared_route(service, method, route).is_some()
            || self.pattern_trie.find(route, Input::Route).is_some()
        {
            return route.to_owned();
        }
        self.discovery.reroute(service, route)
    }

    /// A declared template for a path or route (its `{x}` segments match only declared
    /// parameters): the method's own, else another method's (an undeclared method on a
    /// declared path is still filed under the declared path).
    pub fn declared_route(&self, service: &str, method: &str, path: &str) -> Option<&str> {
        let spec = self.specs.get(service)?;
        if let Some(op) = spec.match_op(method, path) {
            return Some(&op.route);
        }
        spec.match_any_method(path).map(|op| op.route.as_str())
    }

    /// The declared operation an endpoint's route matches, for classification.
    pub fn declared_op(&self, service: &str, method: &str, route: &str) -> Option<&DeclaredOp> {
        self.specs.get(service)?.match_op(method, route)
    }
}
