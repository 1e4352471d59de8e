//! Route shaping beyond the built-in rules: operator patterns, and cardinality merging for
//! path positions that turn out to be parameters (user names, slugs, file names) which no
//! syntax rule can recognise.

use std::{fmt, str::FromStr};

use hashbrown::HashMap;

use thiserror::Error;

/// What a merged position becomes.
pub const PARAM: &str = "{param}";

/// A placeholder segment, whether from the built-in rules, a pattern, a spec or merging.
pub fn is_placeholder(seg: &str) -> bool {
    seg.len() >= 2 && seg.starts_with('{') && seg.ends_with('}')
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("route pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: &'static str,
}

/// An operator's `--route-pattern`, e.g. `/users/{id}/repos/{repo}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct RoutePattern {
    raw: String,
    /// `None` for a parameter position.
    segments: Vec<Option<String>>,
}

impl FromStr for RoutePattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        let err = |reason| PatternError {
            pattern: s.to_string(),
            reason,
        };
        if !s.starts_with('/') {
            return Err(err("must start with /"));
        }
        if s.contains(['?', '#', ' ']) {
            return Err(err("must be a path: no query, fragment or spaces"));
        }
        let mut segments = Vec::new();
        for seg in s.split('/') {
            if is_placeholder(seg) {
                if seg[1..seg.len() - 1].contains(['{', '}']) {
                    return Err(err("unbalanced braces"));
                }
                segments.push(None);
            } else if seg.contains(['{', '}']) {
                return Err(err("a parameter must be a whole segment, like /users/{id}"));
            } else {
                segments.push(Some(seg.to_string()));
            }
        }
        Ok(RoutePattern {
            raw: s.to_string(),
            segments,
        })
    }
}

impl TryFrom<String> for RoutePattern {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, PatternError> {
        s.parse()
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl RoutePattern {
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether a request path (or a route whose placeholders sit where the pattern has
    /// parameters) fits the pattern.
    fn matches(&self, path: &str) -> bool {
        let mut n = 0;
        for (i, seg) in path.split('/').enumerate() {
            match self.segments.get(i) {
                None => return false,
                Some(Some(lit)) if lit != seg => return false,
                Some(None) if seg.is_empty() => return false,
                _ => {}
            }
            n += 1;
        }
        n == self.segments.len()
    }

    /// Literal segments from the left decide which of two matching patterns is more
    /// specific: `/users/me` beats `/users/{id}`.
    fn specificity(&self) -> Vec<bool> {
        self.segments.iter().map(Option::is_some).collect()
    }
}

/// Patterns, most specific first so the first match wins.
#[derive(Clone, Debug, Default)]
pub struct Patterns(Vec<RoutePattern>);

impl Patterns {
    pub fn new(mut patterns: Vec<RoutePattern>) -> Patterns {
        patterns.sort_by_key(|p| std::cmp::Reverse(p.specificity()));
        Patterns(patterns)
    }

    pub fn find(&self, path: &str) -> Option<&str> {
        self.0.iter().find(|p| p.matches(path)).map(|p| p.as_str())
    }
}

#[derive(Default)]
struct Node {
    children: HashMap<String, Node>,
    literals: usize,
    variable: bool,
}

impl Node {
    fn absorb(&mut self, other: Node) {
        self.variable |= other.variable;
        for (k, child) in other.children {
            self.child(&k).absorb(child);
        }
    }

    fn child(&mut self, seg: &str) -> &mut Node {
        // One lookup; the key is allocated only when the segment is new.
        let literals = &mut self.literals;
        self.children.entry_ref(seg).or_insert_with(|| {
            if !is_placeholder(seg) {
                *literals += 1;
            }
            Node::default()
        })
    }

    /// Folds every literal child into the `{param}` child.
    fn collapse(&mut self) {
        self.variable = true;
        let literals: Vec<String> = self
            .children
            .keys()
            .filter(|k| !is_placeholder(k))
            .cloned()
            .collect();
        let mut merged = self.children.remove(PARAM).unwrap_or_default();
        for k in literals {
            if let Some(n) = self.children.remove(&k) {
                merged.absorb(n);
            }
        }
        self.literals = 0;
        self.children.insert(PARAM.to_string(), merged);
    }
}

/// A path position that just became a parameter: every endpoint of `service` whose route
/// starts with `prefix` has a literal at index `prefix.len()` that must become `{param}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    pub service: String,
    pub prefix: Vec<String>,
}

/// Learns, per service, how many distinct literal values each route position takes.
pub struct Cardinality {
    limit: usize,
    services: HashMap<String, Node>,
}

impl Cardinality {
    /// `limit`: distinct literal values under one prefix beyond which the position is a
    /// parameter. 0 disables merging.
    pub fn new(limit: usize) -> Cardinality {
        Cardinality {
            limit,
            services: HashMap::new(),
        }
    }

    /// The route with known parameter positions replaced, learning from it; positions that
    /// became parameters because of this route are appended to `merges`.
    pub fn shape(&mut self, service: &str, route: &str, merges: &mut Vec<Merge>) -> String {
        if self.limit == 0 {
            return route.to_string();
        }
        let mut node = self.services.entry_ref(service).or_default();
        let mut out: Vec<&str> = Vec::new();
        for seg in route.split('/') {
            let mut seg = if node.variable && !is_placeholder(seg) {
                PARAM
            } else {
                seg
            };
            if seg == PARAM {
                // A merged position restored from the store stays merged.
                node.variable = true;
            }
            node.child(seg);
            if node.literals > self.limit {
                node.collapse();
                merges.push(Merge {
                    service: service.to_string(),
                    prefix: out.iter().map(|s| s.to_string()).collect(),
                });
                seg = PARAM;
            }
            out.push(seg);
            node = node.children.get_mut(seg).expect("created by child()");
        }
        out.join("/")
    }
}

/// Applies a merge to one route: `Some(new route)` when the route is affected.
pub fn apply_merge(route: &str, prefix: &[String]) -> Option<String> {
    let mut segs: Vec<&str> = route.split('/').collect();
    let at = prefix.len();
    if segs.len() <= at || is_placeholder(segs[at]) {
        return None;
    }
    if segs[..at].iter().zip(prefix).any(|(a, b)| a != b) {
        return None;
    }
    segs[at] = PARAM;
    Some(segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::template::template;

    #[test]
    fn patterns_parse_and_win_by_specificity() {
        let p = Patterns::new(
            ["/users/{id}", "/users/me", "/files/{path}/raw"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
        );
        assert_eq!(p.find("/users/me"), Some("/users/me"));
        assert_eq!(p.find("/users/alice"), Some("/users/{id}"));
        assert_eq!(p.find("/users/{id}"), Some("/users/{id}"));
        assert_eq!(p.find("/users/alice/x"), None);
        assert_eq!(p.find("/users/"), None);
        assert_eq!(p.find("/files/a.txt/raw"), Some("/files/{path}/raw"));
        for bad in ["users/{id}", "/u/{id", "/u/x{id}", "/u?x=1", "/u/{{a}}"] {
            assert!(bad.parse::<RoutePattern>().is_err(), "{bad}");
        }
    }

    fn learn(c: &mut Cardinality, paths: &[String]) -> (Vec<String>, Vec<Merge>) {
        let mut merges = Vec::new();
        let routes = paths
            .iter()
            .map(|p| c.shape("svc", &template(p), &mut merges))
            .collect();
        (routes, merges)
    }

    #[test]
    fn many_names_under_one_prefix_merge() {
        let mut c = Cardinality::new(20);
        let names: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    "/users/{}/repos",
                    ["alice", "bob", "carol", "dave", "erin"][i % 5].to_string()
                        + &"x".repeat(i / 5)
                )
            })
            .collect();
        let (routes, merges) = learn(&mut c, &names);
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].prefix, ["", "users"]);
        assert_eq!(routes[0], "/users/alice/repos");
        assert_eq!(routes[49], "/users/{param}/repos");
        assert_eq!(
            apply_merge("/users/alice/repos", &merges[0].prefix).as_deref(),
            Some("/users/{param}/repos")
        );
        assert_eq!(apply_merge("/users/{id}", &merges[0].prefix), None);
        assert_eq!(apply_merge("/orders/x", &merges[0].prefix), None);
        // Later paths are shaped directly.
        let (r, m) = learn(&mut c, &["/users/zed/repos".to_string()]);
        assert_eq!(r, ["/users/{param}/repos"]);
        assert!(m.is_empty());
    }

    #[test]
    fn few_distinct_values_stay_literal() {
        let mut c = Cardinality::new(20);
        let mut paths = Vec::new();
        for v in ["v1", "v2", "v3"] {
            for r in ["users", "orders", "health", "me", "search", "items"] {
                paths.push(format!("/api/{v}/{r}"));
                paths.push(format!("/api/{v}/{r}/123"));
            }
        }
        let (routes, merges) = learn(&mut c, &paths);
        assert!(merges.is_empty(), "{merges:?}");
        assert!(routes.contains(&"/api/v2/me".to_string()));
        assert!(routes.contains(&"/api/v1/users/{id}".to_string()));
    }

    #[test]
    fn merged_positions_survive_a_restart() {
        let mut c = Cardinality::new(3);
        let mut m = Vec::new();
        assert_eq!(c.shape("s", "/tags/{param}", &mut m), "/tags/{param}");
        assert_eq!(c.shape("s", "/tags/new", &mut m), "/tags/{param}");
        assert!(m.is_empty());
        // Other services learn separately.
        assert_eq!(c.shape("t", "/tags/new", &mut m), "/tags/new");
    }

    #[test]
    fn disabled_merging_is_identity() {
        let mut c = Cardinality::new(0);
        let mut m = Vec::new();
        for i in 0..100 {
            let r = format!("/u/n{i}x");
            assert_eq!(c.shape("s", &r, &mut m), r);
        }
    }
}

/// Templating and merging together on URL sets shaped like real APIs.
#[cfg(test)]
mod realistic {
    use std::collections::BTreeSet;

    use super::*;
    use crate::inventory::template::template;

    fn routes(paths: &[String]) -> BTreeSet<String> {
        let mut c = Cardinality::new(50);
        let mut merges = Vec::new();
        let mut seen: Vec<String> = paths
            .iter()
            .map(|p| c.shape("api", &template(p), &mut merges))
            .collect();
        // Routes filed before a merge are re-filed, as the inventory does.
        for m in &merges {
            for r in seen.iter_mut() {
                if let Some(new) = apply_merge(r, &m.prefix) {
                    *r = new;
                }
            }
        }
        seen.into_iter().collect()
    }

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn code_hosting_api() {
        let owners = [
            "torvalds",
            "rust-lang",
            "aya-rs",
            "grafana",
            "cilium",
            "kubernetes",
        ];
        let mut paths = Vec::new();
        for i in 0..80 {
            let owner = format!("{}{}", owners[i % owners.len()], i / owners.len());
            paths.push(format!(
                "/api/v3/repos/{owner}/project/commits/a{:039x}",
                i * 7919
            ));
            paths.push(format!("/api/v3/repos/{owner}/project/issues/{}", 1000 + i));
            paths.push(format!("/api/v3/users/{}", 5000 + i));
        }
        paths.extend(
            [
                "/api/v3/users/me",
                "/api/v3/users/me/settings",
                "/api/v3/rate_limit",
                "/api/v3",
                "/healthz",
            ]
            .map(String::from),
        );
        assert_eq!(
            routes(&paths),
            set(&[
                "/api/v3",
                "/api/v3/rate_limit",
                "/api/v3/repos/{param}/project/commits/{hex}",
                "/api/v3/repos/{param}/project/issues/{id}",
                "/api/v3/users/me",
                "/api/v3/users/me/settings",
                "/api/v3/users/{id}",
                "/healthz",
            ])
        );
    }

    #[test]
    fn shop_api_with_uuids_dates_and_versions() {
        let mut paths = Vec::new();
        for i in 0..30u32 {
            let order = format!(
                "{:08x}-4f89-11d3-9a0c-{:012x}",
                i.wrapping_mul(2654435761),
                i
            );
            paths.push(format!("/v1/orders/{order}"));
            paths.push(format!("/v2/orders/{order}/items/{i}"));
            paths.push(format!("/v2/reports/2026-11-{:02}/summary", 1 + i % 28));
            paths.push(format!("/v2/customers/c{i}x@example.com/orders"));
        }
        paths.extend(
            [
                "/v1/orders",
                "/v2/orders/pending",
                "/v2/orders/export.csv",
                "/v2/cart",
                "/v2/cart/checkout",
            ]
            .map(String::from),
        );
        assert_eq!(
            routes(&paths),
            set(&[
                "/v1/orders",
                "/v1/orders/{uuid}",
                "/v2/cart",
                "/v2/cart/checkout",
                "/v2/customers/{email}/orders",
                "/v2/orders/export.csv",
                "/v2/orders/pending",
                "/v2/orders/{uuid}/items/{id}",
                "/v2/reports/{date}/summary",
            ])
        );
    }

    #[test]
    fn content_sites_merge_slugs_but_keep_sections() {
        let mut paths = Vec::new();
        let words = [
            "how", "why", "when", "rust", "ebpf", "kernel", "tracing", "apis",
        ];
        for i in 0..120 {
            paths.push(format!(
                "/blog/{}-{}-{}",
                words[i % 8],
                words[(i / 8) % 8],
                i
            ));
        }
        for section in ["about", "pricing", "docs", "careers", "contact"] {
            paths.push(format!("/{section}"));
        }
        paths.push("/blog".into());
        paths.push("/blog/feed.xml".into());
        let got = routes(&paths);
        assert!(got.contains("/blog/{param}"), "{got:?}");
        assert!(got.contains("/pricing") && got.contains("/blog"), "{got:?}");
        // feed.xml arrived after the merge: it is one more value of the position.
        assert!(!got.contains("/blog/feed.xml"), "{got:?}");
        assert_eq!(got.len(), 7, "{got:?}");
    }
}
