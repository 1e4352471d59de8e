//! Matching paths and observed routes against declared path templates.
//!
//! One segment trie per method, searched depth-first trying literal children, then
//! `{id}.json`-style children, then the `{param}` child. The first complete match is
//! therefore the most specific template by leftmost differing segment, and a lookup visits
//! each trie node at most once, whatever the number of declared operations.

use std::collections::HashMap;

use super::DeclaredOp;

#[derive(Clone, Debug, Default)]
pub(super) struct Index {
    /// Few entries (one per HTTP method), so a scan beats hashing and needs no upper-casing.
    methods: Vec<(String, Node)>,
}

#[derive(Clone, Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    /// Kept longest literal text first: `{id}.tar.gz` is more specific than `{id}.gz`.
    mixed: Vec<(Pattern, Node)>,
    param: Option<Box<Node>>,
    /// Index into the op list; the first op declared for an equivalent template keeps it.
    op: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param,
}

/// A template segment mixing literal text and parameters, e.g. `report-{date}`.
type Pattern = Vec<Part>;

enum Segment<'a> {
    Literal(&'a str),
    Param,
    Mixed(Pattern),
}

impl Index {
    pub(super) fn build(ops: &[DeclaredOp]) -> Index {
        let mut index = Index::default();
        for (i, op) in ops.iter().enumerate() {
            let pos = match index
                .methods
                .iter()
                .position(|(m, _)| m.eq_ignore_ascii_case(&op.method))
            {
                Some(pos) => pos,
                None => {
                    index
                        .methods
                        .push((op.method.to_ascii_uppercase(), Node::default()));
                    index.methods.len() - 1
                }
            };
            index.methods[pos].1.insert(segments(&op.route), i);
        }
        index
    }

    /// The index of the most specific op matching `path` (a request path or an observed
    /// route whose `{...}` segments stand for unknown values).
    pub(super) fn find(&self, method: &str, path: &str) -> Option<usize> {
        let (_, root) = self
            .methods
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(method))?;
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        root.find(segments(path))
    }
}

impl Node {
    fn insert(&mut self, mut rest: Option<&str>, op: usize) {
        let mut node = self;
        while let Some(r) = rest {
            let (seg, next) = split_first(r);
            node = match parse_segment(seg) {
                Segment::Literal(l) => node.literal.entry(l.to_owned()).or_default(),
                Segment::Param => node.param.get_or_insert_with(Box::default),
                Segment::Mixed(p) => node.mixed_child(p),
            };
            rest = next;
        }
        node.op.get_or_insert(op);
    }

    fn mixed_child(&mut self, pattern: Pattern) -> &mut Node {
        let pos = match self.mixed.iter().position(|(p, _)| *p == pattern) {
            Some(pos) => pos,
            None => {
                let len = literal_len(&pattern);
                let pos = self
                    .mixed
                    .iter()
                    .take_while(|(p, _)| literal_len(p) >= len)
                    .count();
                self.mixed.insert(pos, (pattern, Node::default()));
                pos
            }
        };
        &mut self.mixed[pos].1
    }

    fn find(&self, rest: Option<&str>) -> Option<usize> {
        let Some(rest) = rest else { return self.op };
        let (seg, next) = split_first(rest);
        // An observed placeholder stands for an unknown value, which a literal cannot be
        // promised to equal.
        if !is_placeholder(seg) {
            if let Some(hit) = self.literal.get(seg).and_then(|n| n.find(next)) {
                return Some(hit);
            }
            for (pattern, node) in &self.mixed {
                if glob(pattern, seg) {
                    if let Some(hit) = node.find(next) {
                        return Some(hit);
                    }
                }
            }
        }
        if seg.is_empty() {
            return None;
        }
        self.param.as_ref()?.find(next)
    }
}

/// The path without its leading slash and one trailing slash; `None` for the root.
fn segments(path: &str) -> Option<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    (!p.is_empty()).then_some(p)
}

fn split_first(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((seg, next)) => (seg, Some(next)),
        None => (rest, None),
    }
}

fn is_placeholder(seg: &str) -> bool {
    seg.len() >= 2
        && seg.starts_with('{')
        && seg.ends_with('}')
        && !seg[1..seg.len() - 1].contains(['{', '}'])
}

/// Unbalanced braces are literal text: such a template cannot be meant as a parameter.
fn parse_segment(seg: &str) -> Segment<'_> {
    let mut parts = Vec::new();
    let mut rest = seg;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        push_literal(&mut parts, &rest[..open]);
        parts.push(Part::Param);
        rest = &rest[open + len + 1..];
    }
    push_literal(&mut parts, rest);
    match parts.as_slice() {
        [Part::Param] => Segment::Param,
        _ if !parts.contains(&Part::Param) => Segment::Literal(seg),
        _ => Segment::Mixed(parts),
    }
}

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    match parts.last_mut() {
        Some(Part::Literal(l)) => l.push_str(text),
        _ => parts.push(Part::Literal(text.to_owned())),
    }
}

fn literal_len(pattern: &Pattern) -> usize {
    pattern
        .iter()
        .map(|p| match p {
            Part::Literal(l) => l.len(),
            Part::Param => 0,
        })
        .sum()
}

/// Whether `seg` is the pattern's literals around non-empty parameter values.
fn glob(pattern: &[Part], seg: &str) -> bool {
    match pattern.split_first() {
        None => seg.is_empty(),
        Some((Part::Literal(l), rest)) => {
            seg.strip_prefix(l.as_str()).is_some_and(|s| glob(rest, s))
        }
        Some((Part::Param, rest)) => seg
            .char_indices()
            .skip(1)
            .map(|(i, _)| i)
            .chain((!seg.is_empty()).then_some(seg.len()))
            .any(|i| glob(rest, &seg[i..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route matched for GET `path` among GET ops declared in this order.
    fn matched(routes: &[&str], path: &str) -> Option<String> {
        let ops: Vec<_> = routes
            .iter()
            .map(|r| DeclaredOp {
                method: "GET".to_owned(),
                route: (*r).to_owned(),
                deprecated: false,
                operation_id: None,
            })
            .collect();
        let i = Index::build(&ops).find("GET", path)?;
        Some(ops[i].route.clone())
    }

    #[test]
    fn literal_beats_parameter_whatever_the_order() {
        for routes in [["/users/{id}", "/users/me"], ["/users/me", "/users/{id}"]] {
            assert_eq!(matched(&routes, "/users/me").as_deref(), Some("/users/me"));
            assert_eq!(
                matched(&routes, "/users/42").as_deref(),
                Some("/users/{id}")
            );
        }
    }

    #[test]
    fn leftmost_literal_wins_and_search_backtracks() {
        let routes = ["/{a}/b/c", "/x/{b}/{c}", "/x/{b}/d"];
        assert_eq!(matched(&routes, "/x/b/c").as_deref(), Some("/x/{b}/{c}"));
        assert_eq!(matched(&routes, "/y/b/c").as_deref(), Some("/{a}/b/c"));
        let routes = ["/a/{x}/c", "/{y}/b/d"];
        assert_eq!(matched(&routes, "/a/b/d").as_deref(), Some("/{y}/b/d"));
    }

    #[test]
    fn placeholders_only_match_parameters() {
        let routes = ["/users/me", "/users/{userId}"];
        assert_eq!(
            matched(&routes, "/users/{id}").as_deref(),
            Some("/users/{userId}")
        );
        assert_eq!(matched(&["/users/me"], "/users/{id}"), None);
        assert_eq!(matched(&["/files/{name}.json"], "/files/{id}"), None);
        assert_eq!(
            matched(&["/users/{userId}/orders"], "/users/{uuid}/orders").as_deref(),
            Some("/users/{userId}/orders")
        );
    }

    #[test]
    fn mixed_segments() {
        let routes = ["/files/{id}.json", "/reports/report-{date}", "/r/{a}-{b}"];
        assert_eq!(
            matched(&routes, "/files/42.json").as_deref(),
            Some("/files/{id}.json")
        );
        assert_eq!(matched(&routes, "/files/.json"), None);
        assert_eq!(matched(&routes, "/files/42.xml"), None);
        assert_eq!(
            matched(&routes, "/reports/report-2026-01-02").as_deref(),
            Some("/reports/report-{date}")
        );
        assert_eq!(matched(&routes, "/reports/report-"), None);
        assert_eq!(matched(&routes, "/r/x-y-z").as_deref(), Some("/r/{a}-{b}"));
        assert_eq!(matched(&routes, "/r/-y"), None);
        assert_eq!(matched(&routes, "/r/é-ü").as_deref(), Some("/r/{a}-{b}"));
    }

    #[test]
    fn more_specific_mixed_segment_and_mixed_before_parameter() {
        let routes = ["/f/{name}", "/f/{id}.gz", "/f/{id}.tar.gz"];
        assert_eq!(
            matched(&routes, "/f/a.tar.gz").as_deref(),
            Some("/f/{id}.tar.gz")
        );
        assert_eq!(matched(&routes, "/f/a.gz").as_deref(), Some("/f/{id}.gz"));
        assert_eq!(matched(&routes, "/f/a").as_deref(), Some("/f/{name}"));
    }

    #[test]
    fn trailing_slash_root_and_empty_segments() {
        assert_eq!(matched(&["/users"], "/users/").as_deref(), Some("/users"));
        assert_eq!(matched(&["/users/"], "/users").as_deref(), Some("/users/"));
        assert_eq!(matched(&["/"], "/").as_deref(), Some("/"));
        assert_eq!(matched(&["/users"], "/"), None);
        assert_eq!(matched(&["/"], "/users"), None);
        assert_eq!(matched(&["/users/{id}"], "/users//"), None);
        assert_eq!(matched(&["/users/{id}"], "/users"), None);
        assert_eq!(matched(&["/users/{id}"], "/users/1/2"), None);
    }

    #[test]
    fn percent_encoding_is_compared_as_is() {
        assert_eq!(matched(&["/a%20b"], "/a%20b").as_deref(), Some("/a%20b"));
        assert_eq!(matched(&["/a b"], "/a%20b"), None);
        assert_eq!(matched(&["/q/{v}"], "/q/a%2Fb").as_deref(), Some("/q/{v}"));
    }

    #[test]
    fn query_is_ignored_and_method_is_case_insensitive() {
        let ops = vec![DeclaredOp {
            method: "POST".to_owned(),
            route: "/items".to_owned(),
            deprecated: false,
            operation_id: None,
        }];
        let idx = Index::build(&ops);
        assert_eq!(idx.find("post", "/items?x=1"), Some(0));
        assert_eq!(idx.find("GET", "/items"), None);
    }

    #[test]
    fn equivalent_templates_keep_the_first() {
        assert_eq!(
            matched(&["/u/{a}", "/u/{b}"], "/u/1").as_deref(),
            Some("/u/{a}")
        );
    }

    #[test]
    fn unbalanced_braces_are_literal() {
        assert_eq!(matched(&["/a/{b"], "/a/{b").as_deref(), Some("/a/{b"));
        assert_eq!(matched(&["/a/{b"], "/a/x"), None);
    }

    #[test]
    fn many_ops() {
        let routes: Vec<String> = (0..1000)
            .map(|i| format!("/svc{}/items/{{id}}/sub{}", i % 50, i))
            .collect();
        let refs: Vec<&str> = routes.iter().map(String::as_str).collect();
        assert_eq!(
            matched(&refs, "/svc7/items/9/sub57").as_deref(),
            Some("/svc7/items/{id}/sub57")
        );
        assert_eq!(matched(&refs, "/svc8/items/9/sub57"), None);
    }
}
