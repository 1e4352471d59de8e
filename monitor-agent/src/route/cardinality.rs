//! Cardinality merging: a path position that takes more distinct literal values under one
//! prefix than any set of resource names would (user names, slugs, file names, which no
//! syntax rule can recognise) becomes a `{param}`.
//!
//! An empty segment (`/users/`, `/a//b`) is never a value: it stays as it is and does not
//! count, as a parameter never matches an empty segment anywhere else.
//!
//! The learned tree lives in one arena: nodes refer to children by index, so neither
//! merging nor dropping a tree recurses, however deep the paths that built it. The tree
//! has a memory budget (its nodes and the text of their segments): once it is spent,
//! routes are shaped from what was learned, their unknown parts kept as they are, and
//! nothing more is learned (counted as `route_tree_nodes` in `monitor_limit_reached`).

use hashbrown::HashMap;

use super::segment::{is_placeholder, PARAM};
use crate::limits::Limit;

type NodeId = u32;

/// Bytes the learned tree may hold, all services together.
pub const TREE_BUDGET: usize = 32 << 20;
/// What one node costs besides its segment's text (its slot, its map, the map entry).
const NODE_COST: usize = size_of::<Node>() + 48;

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, NodeId>,
    /// Distinct literal (non-placeholder) children.
    literals: usize,
    /// Every value at this position is a parameter.
    variable: bool,
}

/// Path positions that just became parameters, all along one route: every endpoint of
/// `service` whose route agrees with `segments` up to a position, and has a literal there,
/// must have `{param}` there. One route can turn many positions of a deep path into
/// parameters; they are kept as one record so that neither making nor applying them costs
/// more than the route's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    pub service: String,
    /// The route as shaped, up to its last merged position.
    pub segments: Vec<String>,
    /// Indices into `segments` that became parameters, ascending.
    pub positions: Vec<usize>,
}

impl Merge {
    /// The route prefix before each merged position (what tests and logs read).
    pub fn prefixes(&self) -> Vec<Vec<&str>> {
        let prefix = |p: usize| self.segments[..p].iter().map(String::as_str).collect();
        self.positions.iter().map(|&p| prefix(p)).collect()
    }
}

/// Learns, per service, how many distinct literal values each route position takes.
pub struct Cardinality {
    limit: usize,
    services: HashMap<String, NodeId>,
    nodes: Vec<Node>,
    /// Nodes emptied by a merge, reused before the arena grows.
    free: Vec<NodeId>,
    /// Bytes of segment and service text the tree holds.
    text_bytes: usize,
    budget: usize,
}

impl Cardinality {
    /// `limit`: distinct literal values under one prefix beyond which the position is a
    /// parameter. 0 disables merging.
    pub fn new(limit: usize) -> Cardinality {
        Cardinality::with_budget(limit, TREE_BUDGET)
    }

    /// As `new`, with the tree's memory budget in bytes.
    pub fn with_budget(limit: usize, budget: usize) -> Cardinality {
        Cardinality {
            limit,
            services: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            text_bytes: 0,
            budget,
        }
    }

    /// Bytes the learned tree holds (an estimate: nodes at a fixed cost, plus text).
    pub fn held_bytes(&self) -> usize {
        (self.nodes.len() - self.free.len()) * NODE_COST + self.text_bytes
    }

    /// Whether a node with `text` bytes of segment fits the budget; counts it when not.
    fn fits(&self, text: usize) -> bool {
        if self.held_bytes() + NODE_COST + text <= self.budget {
            return true;
        }
        Limit::RouteTree.reached();
        false
    }

    /// The route with known parameter positions replaced, learning from it; positions that
    /// became parameters because of this route are appended to `merges`, as one record.
    pub fn shape(&mut self, service: &str, route: &str, merges: &mut Vec<Merge>) -> String {
        if self.limit == 0 {
            return route.to_string();
        }
        let mut at = if let Some(&id) = self.services.get(service) {
            id
        } else if self.fits(service.len()) {
            let id = self.alloc();
            self.text_bytes += service.len();
            self.services.insert(service.to_owned(), id);
            id
        } else {
            return route.to_string();
        };
        let mut out: Vec<&str> = Vec::new();
        let mut positions = Vec::new();
        let mut segs = route.split('/');
        for seg in segs.by_ref() {
            let node = &mut self.nodes[at as usize];
            let mut seg = if node.variable && is_value(seg) {
                PARAM
            } else {
                seg
            };
            if seg == PARAM {
                // A merged position restored from the store stays merged.
                node.variable = true;
            }
            let Some(mut next) = self.child(at, seg) else {
                // Out of budget: the rest of the route stays as it is.
                out.push(seg);
                break;
            };
            if self.nodes[at as usize].literals > self.limit {
                next = self.collapse(at);
                positions.push(out.len());
                seg = PARAM;
            }
            out.push(seg);
            at = next;
        }
        if let Some(&last) = positions.last() {
            merges.push(Merge {
                service: service.to_string(),
                segments: out[..=last].iter().map(ToString::to_string).collect(),
                positions,
            });
        }
        out.extend(segs);
        out.join("/")
    }

    fn alloc(&mut self) -> NodeId {
        if let Some(id) = self.free.pop() {
            return id;
        }
        self.nodes.push(Node::default());
        NodeId::try_from(self.nodes.len() - 1).unwrap_or(NodeId::MAX)
    }

    /// The child of `at` for `seg`, made if new and the budget allows it.
    fn child(&mut self, at: NodeId, seg: &str) -> Option<NodeId> {
        if let Some(&id) = self.nodes[at as usize].children.get(seg) {
            return Some(id);
        }
        if !self.fits(seg.len()) {
            return None;
        }
        Some(self.add_child(at, seg))
    }

    fn add_child(&mut self, at: NodeId, seg: &str) -> NodeId {
        let id = self.alloc();
        self.text_bytes += seg.len();
        let node = &mut self.nodes[at as usize];
        node.children.insert(seg.into(), id);
        node.literals += usize::from(is_value(seg));
        id
    }

    /// Folds every literal child of `at` into its `{param}` child, which it returns.
    fn collapse(&mut self, at: NodeId) -> NodeId {
        let node = &mut self.nodes[at as usize];
        node.variable = true;
        let literals: Vec<(Box<str>, NodeId)> =
            node.children.extract_if(|k, _| is_value(k)).collect();
        node.literals = 0;
        for (k, _) in &literals {
            self.text_bytes -= k.len();
        }
        // Made even over budget: the merge frees far more than this one node.
        let merged = match self.nodes[at as usize].children.get(PARAM) {
            Some(&id) => id,
            None => self.add_child(at, PARAM),
        };
        for (_, id) in literals {
            self.absorb(merged, id);
        }
        merged
    }

    /// Moves the subtree at `src` into the one at `dst`, with a worklist rather than
    /// recursion, and frees the emptied nodes.
    fn absorb(&mut self, dst: NodeId, src: NodeId) {
        let mut work = vec![(dst, src)];
        while let Some((dst, src)) = work.pop() {
            let node = std::mem::take(&mut self.nodes[src as usize]);
            self.nodes[dst as usize].variable |= node.variable;
            for (k, child) in node.children {
                let target = &mut self.nodes[dst as usize];
                if let Some(&d) = target.children.get(&k) {
                    self.text_bytes -= k.len();
                    work.push((d, child));
                } else {
                    target.literals += usize::from(is_value(&k));
                    target.children.insert(k, child);
                }
            }
            self.free.push(src);
        }
    }
}

/// A literal that may be one value of a parameter: not a placeholder, not empty.
fn is_value(seg: &str) -> bool {
    !seg.is_empty() && !is_placeholder(seg)
}

/// Applies a merge to one route: `Some(new route)` when the route is affected. One pass:
/// each merged position applies when the route agrees with the merge up to it.
pub fn apply_merge(route: &str, m: &Merge) -> Option<String> {
    let mut segs: Vec<&str> = route.split('/').collect();
    let mut positions = m.positions.iter().copied().peekable();
    let mut changed = false;
    for (i, seg) in segs.iter_mut().enumerate() {
        if positions.next_if_eq(&i).is_some() && is_value(seg) {
            *seg = PARAM;
            changed = true;
        }
        if positions.peek().is_none() || m.segments.get(i).map(String::as_str) != Some(*seg) {
            break;
        }
    }
    changed.then(|| segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::heuristics::template;

    fn learn(c: &mut Cardinality, paths: &[String]) -> (Vec<String>, Vec<Merge>) {
        let mut merges = Vec::new();
        let routes = paths
            .iter()
            .map(|p| c.shape("svc", &template(p), &mut merges))
            .collect();
        (routes, merges)
    }

    #[test]
    fn the_tree_stops_learning_at_its_budget_and_keeps_routes_whole() {
        let mut c = Cardinality::with_budget(100_000, 64 * 1024);
        let before = Limit::RouteTree.count();
        let mut merges = Vec::new();
        for i in 0..2000 {
            let route = format!("/a{i}/{}/b/{i}", "x".repeat(100));
            assert_eq!(c.shape("svc", &route, &mut merges), route);
            assert!(c.held_bytes() <= 64 * 1024, "{}", c.held_bytes());
        }
        assert!(Limit::RouteTree.count() > before);
        // Deep paths cost their depth once, then nothing.
        let deep = format!("/d{}", "/".repeat(15_000));
        assert_eq!(c.shape("svc", &deep, &mut merges), deep);
        assert!(c.held_bytes() <= 64 * 1024);
        // What was learned before the budget ran out still shapes routes.
        let mut c = Cardinality::with_budget(3, 16 * 1024);
        for i in 0..10 {
            c.shape("svc", &format!("/u/n{i}"), &mut merges);
        }
        assert_eq!(c.shape("svc", "/u/zed", &mut merges), "/u/{param}");
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
        assert_eq!(merges[0].prefixes(), [["", "users"]]);
        assert_eq!(routes[0], "/users/alice/repos");
        assert_eq!(routes[49], "/users/{param}/repos");
        assert_eq!(
            apply_merge("/users/alice/repos", &merges[0]).as_deref(),
            Some("/users/{param}/repos")
        );
        assert_eq!(apply_merge("/users/{id}", &merges[0]), None);
        assert_eq!(apply_merge("/orders/x", &merges[0]), None);
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
    use crate::route::heuristics::template;

    fn routes(paths: &[String]) -> BTreeSet<String> {
        let mut c = Cardinality::new(50);
        let mut merges = Vec::new();
        let mut seen: Vec<String> = paths
            .iter()
            .map(|p| c.shape("api", &template(p), &mut merges))
            .collect();
        // Routes filed before a merge are re-filed, as the inventory does.
        for m in &merges {
            for r in &mut seen {
                if let Some(new) = apply_merge(r, m) {
                    *r = new;
                }
            }
        }
        seen.into_iter().collect()
    }

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(ToString::to_string).collect()
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
                i.wrapping_mul(2_654_435_761),
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

#[cfg(test)]
mod deep {
    use super::*;

    /// Paths thousands of segments deep build, merge and drop without recursing.
    #[test]
    fn deep_paths_merge_and_drop_without_recursion() {
        let mut c = Cardinality::new(3);
        let mut merges = Vec::new();
        for i in 0..10 {
            let route = format!("/u{i}{}", "/".repeat(20_000));
            assert!(c.shape("s", &route, &mut merges).len() >= route.len() - 4);
        }
        assert_eq!(merges.len(), 1, "{merges:?}");
        assert_eq!(merges[0].prefixes(), [[""]]);
        drop(c);
    }

    /// One route that turns every position of a deep path into a parameter makes one
    /// record, applied in one pass (fuzzing found a path of 16,000 segments that cost
    /// minutes when each position was its own merge, its prefix copied).
    #[test]
    fn one_route_merging_every_position_is_one_record() {
        let depth = 20_000;
        let mut c = Cardinality::new(2);
        let mut merges = Vec::new();
        for name in ["/a", "/b"] {
            c.shape("s", &name.repeat(depth), &mut merges);
        }
        assert!(merges.is_empty());
        let all_params = "/{param}".repeat(depth);
        assert_eq!(c.shape("s", &"/c".repeat(depth), &mut merges), all_params);
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].positions, (1..=depth).collect::<Vec<_>>());
        let m = &merges[0];
        assert_eq!(apply_merge(&"/a".repeat(depth), m), Some(all_params));
        assert_eq!(
            apply_merge("/x/a/a", m).as_deref(),
            Some("/{param}/{param}/{param}")
        );
        // A position that is not a value stops the merge where the route leaves it.
        assert_eq!(apply_merge("/{id}/a", m), None);
        assert_eq!(
            apply_merge("/a/{id}/b", m).as_deref(),
            Some("/{param}/{id}/b")
        );
    }

    /// An empty segment is never a parameter's value, even at a merged position.
    #[test]
    fn empty_segments_stay_empty() {
        let mut c = Cardinality::new(2);
        let mut merges = Vec::new();
        for r in ["/a", "/b", "/c", "/d/x"] {
            c.shape("s", r, &mut merges);
        }
        assert_eq!(merges.len(), 1);
        assert_eq!(c.shape("s", "/", &mut merges), "/");
        assert_eq!(c.shape("s", "/e/", &mut merges), "/{param}/");
        assert_eq!(c.shape("s", "//", &mut merges), "//");
        assert_eq!(apply_merge("/", &merges[0]), None);
        assert_eq!(apply_merge("/x/", &merges[0]).as_deref(), Some("/{param}/"));
    }
}
