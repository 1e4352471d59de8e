//! A least-privilege policy from what the inventory observed: the starting point an
//! operator edits, rather than a blank file.
//!
//! The suggestion must never flag the traffic it was made from, or nobody would trust it.
//! So it allows exactly the edges seen, with the methods and routes seen on each, and
//! only requires credentials where every call that a requirement's pattern would cover
//! carried them. Two limits are deliberate: there is one rule per (caller, server), short
//! to read, so it allows each seen method on each seen route of the pair, combinations
//! not seen included; and token expiry is not in the inventory, so replaying a call made
//! with an expired JWT still reports `token_expired` (`reject_expired` stays on).
//! What the inventory could not keep (callers beyond its per-endpoint bound, counted as
//! `(other)`) or cannot be written as a pattern is listed in the returned warnings.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::schema::{
    AllowRule, ClaimValue, DefaultAction, EndpointRule, Method, NonEmpty, Policy, Require,
    ServiceName,
};
use crate::{
    inventory::{stats::OTHER, view::EndpointView},
    route::{segment_count, RoutePattern},
};

const JWT_ISSUER: &str = "jwt iss=";

/// One endpoint, reduced to what the policy can say about it.
struct Seen<'a> {
    service: ServiceName,
    method: Method,
    route: &'a str,
    pattern: RoutePattern,
    auth: &'a BTreeMap<String, u64>,
}

/// What one (caller, server) pair was seen doing; sorted, so the output is stable.
#[derive(Default)]
struct Edge {
    methods: BTreeSet<Method>,
    /// Keyed by the pattern's text.
    routes: BTreeMap<String, RoutePattern>,
}

/// The suggested policy and what keeps it from covering everything observed.
pub fn suggest(endpoints: &[EndpointView]) -> (Policy, Vec<String>) {
    let mut warnings = Vec::new();
    let mut seen = Vec::new();
    let mut edges: BTreeMap<(ServiceName, ServiceName), Edge> = BTreeMap::new();
    for ev in endpoints {
        let what = format!("{} {} {}", ev.service, ev.method, ev.route);
        let Some(service) = service_name(&ev.service, &what, &mut warnings) else {
            continue;
        };
        let Ok(method) = ev.method.parse::<Method>() else {
            warnings.push(format!(
                "{what}: the method cannot be written in a policy; its calls are not allowed"
            ));
            continue;
        };
        let Some(pattern) = pattern_of(&ev.route, &what, &mut warnings) else {
            continue;
        };
        for caller in &ev.callers {
            if caller.service == OTHER {
                warnings.push(format!(
                    "{what}: {} calls from callers beyond the inventory's per-endpoint limit (counted as {OTHER}) are not allowed",
                    caller.calls
                ));
                continue;
            }
            let Some(caller) = service_name(&caller.service, &what, &mut warnings) else {
                continue;
            };
            let edge = edges.entry((caller, service.clone())).or_default();
            edge.methods.insert(method.clone());
            edge.routes
                .insert(pattern.as_str().to_owned(), pattern.clone());
        }
        if ev.auth.contains_key(OTHER) {
            warnings.push(format!(
                "{what}: more kinds of credentials than the inventory keeps; no credential requirement suggested"
            ));
        }
        seen.push(Seen {
            service,
            method,
            route: &ev.route,
            pattern,
            auth: &ev.auth,
        });
    }
    let allow = edges
        .into_iter()
        .filter_map(|((from, to), edge)| {
            Some(AllowRule {
                from: NonEmpty::new(vec![from])?,
                to: NonEmpty::new(vec![to])?,
                methods: Some(NonEmpty::new(edge.methods.into_iter().collect())?),
                routes: Some(NonEmpty::new(edge.routes.into_values().collect())?),
            })
        })
        .collect();
    let endpoints = requirements(&seen);
    warnings.dedup();
    (Policy::new(DefaultAction::Deny, allow, endpoints), warnings)
}

/// One entry per route, with the methods that require the same of their calls.
fn requirements(seen: &[Seen<'_>]) -> Vec<EndpointRule> {
    // A pattern made from a route has no `**`, so it covers only routes with as many
    // segments: the candidates are found without comparing every pair of endpoints.
    let mut peers: HashMap<(&ServiceName, &Method, usize), Vec<&Seen<'_>>> = HashMap::new();
    for f in seen {
        peers
            .entry((&f.service, &f.method, segment_count(f.route)))
            .or_default()
            .push(f);
    }
    let mut found: Vec<(&Seen<'_>, Require)> = seen
        .iter()
        .filter_map(|e| {
            let key = (&e.service, &e.method, segment_count(e.route));
            let covered = peers[&key]
                .iter()
                .filter(|f| std::ptr::eq(**f, e) || e.pattern.matches_route(f.route));
            requirement(covered).map(|r| (e, r))
        })
        .collect();
    found.sort_by(|(a, _), (b, _)| {
        (&a.service, a.pattern.as_str(), &a.method).cmp(&(
            &b.service,
            b.pattern.as_str(),
            &b.method,
        ))
    });
    // An equivalent route (`{uuid}` after `{id}`) matches the same calls, so it requires
    // the same and is left out.
    let mut listed = HashSet::new();
    let mut out: Vec<EndpointRule> = Vec::new();
    for (e, require) in found {
        if !listed.insert((&e.service, &e.method, e.pattern.shape_key())) {
            continue;
        }
        let same_route = out.iter_mut().rev().take_while(|r| {
            r.service == e.service && r.routes.as_ref().is_some_and(|p| p[0] == e.pattern)
        });
        match same_route.into_iter().find(|r| r.require == require) {
            Some(r) => r.methods = r.methods.take().map(|m| m.with(e.method.clone())),
            None => out.push(EndpointRule {
                service: e.service.clone(),
                methods: NonEmpty::new(vec![e.method.clone()]),
                routes: NonEmpty::new(vec![e.pattern.clone()]),
                require,
            }),
        }
    }
    out
}

/// What every call a requirement would apply to had in common: calls to other endpoints
/// its pattern also covers (`/users/{id}` covers `/users/me`) count too, so a
/// requirement never flags observed traffic.
fn requirement<'s, 'a: 's>(covered: impl Iterator<Item = &'s &'s Seen<'a>>) -> Option<Require> {
    let mut issuers: Option<BTreeSet<&str>> = Some(BTreeSet::new());
    for f in covered {
        if f.auth.is_empty() || f.auth.contains_key("none") || f.auth.contains_key(OTHER) {
            return None;
        }
        for key in f.auth.keys() {
            match (key.strip_prefix(JWT_ISSUER), issuers.as_mut()) {
                (Some(iss), Some(set)) => {
                    set.insert(iss);
                }
                _ => issuers = None,
            }
        }
    }
    let issuers = issuers
        .and_then(|set| {
            set.into_iter()
                .map(|i| i.parse::<ClaimValue>().ok())
                .collect::<Option<Vec<_>>>()
        })
        .and_then(NonEmpty::new);
    Some(Require {
        credentials: true,
        issuers,
        ..Require::default()
    })
}

/// A name the policy can use; `*` would mean any service, so it is refused.
fn service_name(name: &str, what: &str, warnings: &mut Vec<String>) -> Option<ServiceName> {
    match name.parse::<ServiceName>() {
        Ok(s) if !s.is_any() => Some(s),
        _ => {
            warnings.push(format!(
                "{what}: service name {name:?} cannot be written in a policy; its calls are not allowed"
            ));
            None
        }
    }
}

/// The route as a pattern; segments the pattern syntax cannot say literally (a literal
/// `*`, stray braces) become `*`, which is broader and said so.
fn pattern_of(route: &str, what: &str, warnings: &mut Vec<String>) -> Option<RoutePattern> {
    match RoutePattern::covering(route) {
        Ok((p, broader)) => {
            if broader {
                warnings.push(format!(
                    "{what}: allowed as {p}, broader than the route, which a pattern cannot spell"
                ));
            }
            Some(p)
        }
        Err(e) => {
            warnings.push(format!("{what}: {e}; its calls are not allowed"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{view::CallerView, SpecStatus};

    fn view(
        service: &str,
        method: &str,
        route: &str,
        callers: &[(&str, u64)],
        auth: &[(&str, u64)],
    ) -> EndpointView {
        EndpointView {
            service: service.into(),
            method: method.into(),
            route: route.into(),
            spec_status: SpecStatus::Shadow,
            operation_id: None,
            calls: callers.iter().map(|(_, n)| n).sum(),
            first_seen: String::new(),
            last_seen: String::new(),
            errors_4xx: 0,
            errors_5xx: 0,
            latency_us: Default::default(),
            request_bytes: Default::default(),
            response_bytes: Default::default(),
            statuses: BTreeMap::new(),
            callers: callers
                .iter()
                .map(|(s, n)| CallerView {
                    service: (*s).into(),
                    calls: *n,
                })
                .collect(),
            auth: auth.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            request_content_types: BTreeMap::new(),
            response_content_types: BTreeMap::new(),
            query_params: Vec::new(),
        }
    }

    #[test]
    fn one_rule_per_edge_sorted_with_exact_methods_and_routes() {
        let views = [
            view("orders", "POST", "/orders", &[("web", 3)], &[("none", 3)]),
            view(
                "orders",
                "GET",
                "/orders/{id}",
                &[("web", 2), ("batch", 1)],
                &[("none", 3)],
            ),
            view(
                "billing",
                "GET",
                "/invoices",
                &[("orders", 5)],
                &[("none", 5)],
            ),
        ];
        let (p, warnings) = suggest(&views);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            p.to_yaml(),
            "default: deny\n\
             allow:\n  \
               - from: [batch]\n    to: [orders]\n    methods: [GET]\n    routes: [\"/orders/{id}\"]\n  \
               - from: [orders]\n    to: [billing]\n    methods: [GET]\n    routes: [/invoices]\n  \
               - from: [web]\n    to: [orders]\n    methods: [GET, POST]\n    routes: [/orders, \"/orders/{id}\"]\n\
             endpoints: []\n"
        );
    }

    #[test]
    fn credentials_and_issuers_when_every_call_had_them() {
        let views = [
            view(
                "a",
                "GET",
                "/jwt",
                &[("c", 2)],
                &[("jwt iss=https://i1", 1), ("jwt iss=https://i2", 1)],
            ),
            view(
                "a",
                "GET",
                "/mixed",
                &[("c", 2)],
                &[("jwt iss=https://i1", 1), ("api_key x-api-key", 1)],
            ),
            view(
                "a",
                "GET",
                "/some",
                &[("c", 2)],
                &[("basic", 1), ("none", 1)],
            ),
            view("a", "GET", "/nojwtiss", &[("c", 1)], &[("jwt", 1)]),
            view(
                "a",
                "GET",
                "/overflow",
                &[("c", 1)],
                &[("bearer", 1), (OTHER, 1)],
            ),
        ];
        let (p, warnings) = suggest(&views);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("/overflow"));
        let req: Vec<(&str, bool, Option<Vec<&str>>)> = p
            .endpoint_rules()
            .iter()
            .map(|e| {
                (
                    e.routes.as_ref().unwrap()[0].as_str(),
                    e.require.credentials,
                    e.require
                        .issuers
                        .as_ref()
                        .map(|v| v.iter().map(ClaimValue::as_str).collect()),
                )
            })
            .collect();
        assert_eq!(
            req,
            [
                ("/jwt", true, Some(vec!["https://i1", "https://i2"])),
                ("/mixed", true, None),
                ("/nojwtiss", true, None),
            ]
        );
        assert!(p.endpoint_rules().iter().all(|e| e.require.reject_expired));
    }

    #[test]
    fn a_template_does_not_require_what_a_literal_it_covers_lacked() {
        let views = [
            view("u", "GET", "/users/{id}", &[("c", 1)], &[("bearer", 1)]),
            view("u", "GET", "/users/me", &[("c", 1)], &[("none", 1)]),
            view("u", "POST", "/users/me", &[("c", 1)], &[("bearer", 1)]),
        ];
        let (p, _) = suggest(&views);
        let routes: Vec<(&str, &str)> = p
            .endpoint_rules()
            .iter()
            .map(|e| {
                (
                    e.methods.as_ref().unwrap()[0].as_str(),
                    e.routes.as_ref().unwrap()[0].as_str(),
                )
            })
            .collect();
        assert_eq!(routes, [("POST", "/users/me")]);
    }

    #[test]
    fn requirements_are_grouped_by_route() {
        let jwt = [("jwt iss=https://i", 1)];
        let views = [
            view("a", "GET", "/o", &[("c", 1)], &jwt),
            view("a", "POST", "/o", &[("c", 1)], &jwt),
            view("a", "PUT", "/o", &[("c", 1)], &[("basic", 1)]),
            view("a", "GET", "/o/{id}", &[("c", 1)], &jwt),
            view("a", "get", "/o/{id}", &[("c", 1)], &jwt),
            view("a", "GET", "/o/{uuid}", &[("c", 1)], &jwt),
        ];
        let (p, _) = suggest(&views);
        let yaml = p.to_yaml();
        let endpoints = &yaml[yaml.find("endpoints:").unwrap()..];
        assert_eq!(
            endpoints,
            "endpoints:\n  \
               - service: a\n    methods: [GET, POST]\n    routes: [/o]\n    require:\n      credentials: true\n      issuers: [\"https://i\"]\n  \
               - service: a\n    methods: [PUT]\n    routes: [/o]\n    require:\n      credentials: true\n  \
               - service: a\n    methods: [GET]\n    routes: [\"/o/{id}\"]\n    require:\n      credentials: true\n      issuers: [\"https://i\"]\n"
        );
    }

    #[test]
    fn what_cannot_be_written_is_warned_about() {
        let views = [
            // A mixed segment is spelled as it is; a literal `*` cannot be.
            view(
                "s",
                "GET",
                "/files/{name}.json",
                &[("c", 1)],
                &[("none", 1)],
            ),
            view("s", "GET", "/files/v*2", &[("c", 1)], &[("none", 1)]),
            view("s", "OPTIONS", "*", &[("c", 1)], &[("none", 1)]),
            view("s", "GET", "/x", &[("c", 1), (OTHER, 7)], &[("none", 8)]),
            view("*", "GET", "/y", &[("c", 1)], &[("none", 1)]),
            view("s", "GET", "/z", &[("*", 1)], &[("none", 1)]),
            view("s", "BAD METHOD", "/w", &[("c", 1)], &[("none", 1)]),
        ];
        let (p, warnings) = suggest(&views);
        let joined = warnings.join("\n");
        for needle in [
            "/files/v*2: allowed as /files/*",
            "OPTIONS *: route \"*\" must start with /",
            "7 calls from callers beyond",
            "service name \"*\" cannot be written",
            "BAD METHOD /w: the method cannot be written",
        ] {
            assert!(joined.contains(needle), "{needle}: {joined}");
        }
        assert_eq!(warnings.len(), 6, "{joined}");
        let rule = &p.allow_rules()[0];
        let routes: Vec<&str> = rule
            .routes
            .as_ref()
            .unwrap()
            .iter()
            .map(RoutePattern::as_str)
            .collect();
        assert!(!joined.contains("{name}.json"), "{joined}");
        assert_eq!(routes, ["/files/*", "/files/{name}.json", "/x"]);
    }
}
