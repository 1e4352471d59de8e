//! Route discovery: each service's routes found from the whole set of paths it was seen
//! serving, not segment by segment. A path position is a parameter when the values there
//! look like identifiers, or when many names lead to the same continuations; a literal
//! when its values are few, frequent, or lead to different places (see [`infer`]).
//!
//! Decisions are revisable: every service keeps its observed paths ([`observed`], bounded)
//! and its routes are worked out again from all of them as the set grows (when it grew by
//! an eighth, and at most once a minute after that while traffic changes only the counts),
//! so a merge
//! that later traffic contradicts is split again, and the result depends on what was
//! seen, not on the order it came in. Routing one call is a walk of the service's
//! current routes ([`templates`]); segments beyond them are templated by the built-in
//! heuristics. When a service's routes change, the caller re-files what it filed under
//! the old ones ([`Discovery::reroute`]).

mod declared;
mod infer;
pub mod observed;
pub mod shape;
mod templates;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use hashbrown::HashMap;

pub use declared::Declared;
use observed::Observed;
use templates::Templates;

use super::heuristics::template;
use crate::text::Text;

/// Bytes the observed paths of all services may hold.
pub const OBSERVED_BUDGET: usize = 32 << 20;
/// Distinct paths a service needs before its routes are first worked out.
const FIRST_LOOK: usize = 8;
/// The routes are worked out again when the distinct paths grew by this fraction...
const GROWTH_DIVISOR: usize = 8;
/// ...or this long after the last time, if requests came since.
const LOOK_AGAIN: Duration = Duration::from_mins(1);
/// Calls between two looks at the clock.
const CLOCK_EVERY: u32 = 1024;

struct Service {
    observed: Observed,
    templates: Templates,
    /// The tree's size (distinct paths and nodes) when the routes were last worked out.
    looked_at: usize,
    looked_when: Instant,
    calls_since: u32,
    declared: Option<Declared>,
}

impl Service {
    fn new() -> Service {
        Service {
            observed: Observed::new(),
            templates: Templates::new(),
            looked_at: 0,
            looked_when: Instant::now(),
            calls_since: 0,
            declared: None,
        }
    }

    /// What a look costs and what makes it worth doing: distinct paths and nodes.
    fn size(&self) -> usize {
        self.observed.distinct + self.observed.nodes.len()
    }

    /// Whether to look again: the tree grew by an eighth since the last look (so the work
    /// of all looks stays within a few times the tree's size, whatever a workload sends),
    /// or a minute passed with traffic.
    fn due(&mut self) -> bool {
        let grown = self.size().saturating_sub(self.looked_at);
        if self.observed.distinct >= FIRST_LOOK && grown >= (self.looked_at / GROWTH_DIVISOR).max(1)
        {
            return true;
        }
        if self.calls_since >= CLOCK_EVERY {
            self.calls_since = 0;
            return self.looked_at > 0 && self.looked_when.elapsed() >= LOOK_AGAIN;
        }
        false
    }
}

/// Every service's observed paths and discovered routes.
pub struct Discovery {
    services: HashMap<String, Service>,
    /// Distinct values at one position beyond which it is a parameter; 0: no discovery,
    /// the built-in heuristics alone.
    limit: usize,
    /// Bytes the observed paths may still grow by.
    budget: usize,
    initial_budget: usize,
    /// Where each call's route is written before it is looked up among the shared ones.
    scratch: String,
}

impl Discovery {
    pub fn new(limit: usize) -> Discovery {
        Discovery::with_budget(limit, OBSERVED_BUDGET)
    }

    pub fn with_budget(limit: usize, budget: usize) -> Discovery {
        Discovery {
            services: HashMap::new(),
            limit,
            budget,
            initial_budget: budget,
            scratch: String::new(),
        }
    }

    /// The route of `path` (no query string) served by `service`, called with `method`,
    /// learning from it; true when the service's routes were worked out again, so routes
    /// filed earlier may have to be re-filed through [`Discovery::reroute`].
    pub fn route(&mut self, service: &str, method: &str, path: &str) -> (Text, bool) {
        let limit = self.limit;
        let mut out = std::mem::take(&mut self.scratch);
        let Some(svc) = self.record(service, method, path, 1) else {
            self.scratch = out;
            return (Text::interned(&template(path)), false);
        };
        svc.calls_since = svc.calls_since.saturating_add(1);
        let changed = svc.due();
        if changed {
            Self::look(svc, limit);
        }
        svc.templates.route_into(path, false, &mut out);
        let route = Text::interned(&out);
        self.scratch = out;
        (route, changed)
    }

    /// Records `path` for `service` without routing it (a route filed before a restart).
    pub fn learn(&mut self, service: &str, method: &str, path: &str, weight: u32) {
        self.record(service, method, path, weight);
    }

    /// Records `path` among what `service` served, `weight` times; the service's state, or
    /// `None` when discovery is off or the budget has no room for another service.
    fn record(
        &mut self,
        service: &str,
        method: &str,
        path: &str,
        weight: u32,
    ) -> Option<&mut Service> {
        if self.limit == 0 {
            return None;
        }
        let svc = Self::service(&mut self.services, &mut self.budget, service)?;
        if let Some(body) = path.strip_prefix('/') {
            let bit = observed::method_bit(method);
            svc.observed
                .record(body.split('/'), weight, bit, &mut self.budget);
        }
        Some(svc)
    }

    /// The route a route filed earlier has now (placeholders take the parameters at their
    /// positions), without learning from it.
    pub fn reroute(&self, service: &str, route: &str) -> String {
        match self.services.get(service) {
            Some(svc) if self.limit > 0 => svc.templates.route(route, true),
            _ => route.to_owned(),
        }
    }

    /// The spec's literals stay literal in `service`'s routes from the next look on.
    pub fn set_declared(&mut self, service: &str, declared: Option<Declared>) {
        if let Some(svc) = Self::service(&mut self.services, &mut self.budget, service) {
            svc.declared = declared;
            svc.looked_at = 0;
        }
    }

    /// The service's state, made if new and the budget allows it.
    fn service<'s>(
        services: &'s mut HashMap<String, Service>,
        budget: &mut usize,
        service: &str,
    ) -> Option<&'s mut Service> {
        if !services.contains_key(service) {
            let cost = observed::NODE_COST + service.len();
            if cost > *budget {
                crate::limits::Limit::RouteTree.reached();
                return None;
            }
            *budget -= cost;
            services.insert(service.to_owned(), Service::new());
        }
        services.get_mut(service)
    }

    fn look(svc: &mut Service, limit: usize) {
        svc.templates = infer::infer(&svc.observed, svc.declared.as_ref(), limit);
        svc.looked_at = svc.size();
        svc.looked_when = Instant::now();
        svc.calls_since = 0;
    }

    /// Works every service's routes out now (after a restart's routes were fed in).
    pub fn look_all(&mut self) {
        let limit = self.limit;
        for svc in self.services.values_mut() {
            Self::look(svc, limit);
        }
    }

    /// Bytes the observed paths hold, all services together.
    pub fn held_bytes(&self) -> usize {
        self.initial_budget.saturating_sub(self.budget)
    }
}
