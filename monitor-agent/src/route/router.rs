//! The one place a call's route is decided: the service's declared template when its spec
//! has one for the path, else the operator's pattern, else the built-in heuristics with
//! the positions cardinality merging has learned. gRPC paths are routes as they are.

use std::{collections::HashMap, sync::Arc};

use super::{
    cardinality::{Cardinality, Merge},
    heuristics::template,
    path::path_of,
    pattern::{Input, RouteTemplate},
    trie::Trie,
};
use crate::{
    protocol::exchange::Protocol,
    spec::{DeclaredOp, ServiceSpec},
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

/// The route a call is filed under, and positions that became parameters because of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub route: String,
    pub merges: Vec<Merge>,
}

impl Routed {
    fn plain(route: String) -> Routed {
        Routed {
            route,
            merges: Vec::new(),
        }
    }
}

pub struct Router {
    specs: HashMap<String, Arc<ServiceSpec>>,
    patterns: Vec<RouteTemplate>,
    pattern_trie: Trie,
    cardinality: Cardinality,
}

impl Router {
    /// `cardinality_limit`: distinct literals under one prefix before the position becomes
    /// `{param}`; 0 turns merging off.
    pub fn new(patterns: Vec<RouteTemplate>, cardinality_limit: usize) -> Router {
        let mut pattern_trie = Trie::default();
        for (i, p) in patterns.iter().enumerate() {
            pattern_trie.insert(p.pattern(), i);
        }
        Router {
            specs: HashMap::new(),
            patterns,
            pattern_trie,
            cardinality: Cardinality::new(cardinality_limit),
        }
    }

    pub fn set_specs(&mut self, specs: HashMap<String, Arc<ServiceSpec>>) {
        self.specs = specs;
    }

    pub fn specs(&self) -> &HashMap<String, Arc<ServiceSpec>> {
        &self.specs
    }

    /// The route of a request to `service` (`target` may carry a query string).
    pub fn route(&mut self, service: &str, method: &str, target: &str, kind: RouteKind) -> Routed {
        let path = path_of(target);
        match kind {
            RouteKind::Rpc => Routed::plain(path.to_owned()),
            RouteKind::Partial => Routed::plain(template(path)),
            RouteKind::Complete => {
                if let Some(route) = self.declared_route(service, method, path) {
                    return Routed::plain(route.to_owned());
                }
                if let Some(i) = self.pattern_trie.find(path, Input::Path) {
                    return Routed::plain(self.patterns[i].as_str().to_owned());
                }
                let mut merges = Vec::new();
                let route = self
                    .cardinality
                    .shape(service, &template(path), &mut merges);
                Routed { route, merges }
            }
        }
    }

    /// Teaches merging a route filed before a restart (merged positions stay merged), and
    /// returns it as merging now shapes it.
    pub fn relearn(&mut self, service: &str, route: &str) -> Routed {
        let mut merges = Vec::new();
        let route = self.cardinality.shape(service, route, &mut merges);
        Routed { route, merges }
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
