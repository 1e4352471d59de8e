//! The most specific of many templates for one path, in one walk: a segment trie whose
//! children are tried literal first, then mixed segments (most literal text first), then
//! a parameter, then `**`. The first complete match is therefore the most specific
//! template by leftmost differing segment. The walk uses an explicit stack and enters each
//! trie node at most once, so a lookup costs at most the trie's size plus the path's length,
//! whatever the path's depth.

use hashbrown::HashMap;

use super::{
    path::{segment_body, split_first},
    pattern::{Input, RoutePattern},
    segment::{is_placeholder, Seg},
};

type NodeId = u32;

#[derive(Clone, Debug, Default)]
struct Node {
    literal: HashMap<Box<str>, NodeId>,
    /// Longest literal text first: `{id}.tar.gz` is more specific than `{id}.gz`.
    mixed: Vec<(Seg, NodeId)>,
    param: Option<NodeId>,
    /// The template ending in `**` here.
    rest: Option<usize>,
    /// The template ending exactly here; the first inserted of equivalent ones keeps it.
    end: Option<usize>,
}

/// Templates indexed by the caller's numbers (an op's position in its spec, say).
#[derive(Clone, Debug)]
pub struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    pub fn insert(&mut self, template: &RoutePattern, id: usize) {
        let mut at = 0;
        for seg in template.segments() {
            at = self.child(at, seg);
        }
        let node = &mut self.nodes[at as usize];
        let slot = if template.has_rest() {
            &mut node.rest
        } else {
            &mut node.end
        };
        slot.get_or_insert(id);
    }

    fn child(&mut self, at: NodeId, seg: &Seg) -> NodeId {
        let next = NodeId::try_from(self.nodes.len()).unwrap_or(NodeId::MAX);
        let node = &mut self.nodes[at as usize];
        let (id, new) = match seg {
            Seg::Literal(l) => {
                if let Some(&id) = node.literal.get(l) {
                    (id, false)
                } else {
                    node.literal.insert(l.clone(), next);
                    (next, true)
                }
            }
            Seg::Param(_) => {
                if let Some(id) = node.param {
                    (id, false)
                } else {
                    node.param = Some(next);
                    (next, true)
                }
            }
            Seg::Mixed(_) => {
                if let Some(&(_, id)) = node.mixed.iter().find(|(s, _)| s == seg) {
                    (id, false)
                } else {
                    let len = seg.literal_len();
                    let pos = node
                        .mixed
                        .iter()
                        .take_while(|(s, _)| s.literal_len() >= len)
                        .count();
                    node.mixed.insert(pos, (seg.clone(), next));
                    (next, true)
                }
            }
        };
        if new {
            self.nodes.push(Node::default());
        }
        id
    }

    /// The most specific template matching `path` (query ignored, one trailing slash
    /// folded). With [`Input::Route`], a `{x}` segment matches only parameters and `**`.
    pub fn find(&self, path: &str, input: Input) -> Option<usize> {
        let root = &self.nodes[0];
        if self.nodes.len() == 1 && root.end.is_none() && root.rest.is_none() {
            return None;
        }
        // Pushed in reverse order of preference.
        let mut stack = vec![Step::Visit(0, segment_body(path))];
        while let Some(step) = stack.pop() {
            let (at, rest) = match step {
                Step::Visit(at, rest) => (at, rest),
                Step::Remainder(template) => return Some(template),
            };
            let node = &self.nodes[at as usize];
            let Some(rest) = rest else {
                if node.end.is_some() {
                    return node.end;
                }
                if node.rest.is_some() {
                    return node.rest;
                }
                continue;
            };
            let (seg, next) = split_first(rest);
            if let Some(template) = node.rest {
                stack.push(Step::Remainder(template));
            }
            if let Some(p) = node.param.filter(|_| !seg.is_empty()) {
                stack.push(Step::Visit(p, next));
            }
            if input == Input::Route && is_placeholder(seg) {
                continue;
            }
            for (m, child) in node.mixed.iter().rev() {
                if m.matches(seg) {
                    stack.push(Step::Visit(*child, next));
                }
            }
            if let Some(&l) = node.literal.get(seg) {
                stack.push(Step::Visit(l, next));
            }
        }
        None
    }
}

/// One step of the walk: a node with the path still to match after it (`None` once every
/// segment is consumed), or a `**` that accepts whatever is left.
enum Step<'p> {
    Visit(NodeId, Option<&'p str>),
    Remainder(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template matched for `path` (read as a route) among templates declared in this
    /// order.
    fn matched(routes: &[&str], path: &str) -> Option<String> {
        let mut trie = Trie::default();
        for (i, r) in routes.iter().enumerate() {
            trie.insert(&RoutePattern::declared(r), i);
        }
        let i = trie.find(path, Input::Route)?;
        Some(routes[i].to_owned())
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
    fn query_and_fragment_are_ignored() {
        assert_eq!(
            matched(&["/items"], "/items?x=1").as_deref(),
            Some("/items")
        );
        assert_eq!(
            matched(&["/items"], "/items#top").as_deref(),
            Some("/items")
        );
    }

    #[test]
    fn double_star_is_the_least_specific() {
        let mut trie = Trie::default();
        for (i, p) in ["/static/**", "/static/{f}", "/static/app.js"]
            .iter()
            .enumerate()
        {
            trie.insert(&p.parse().unwrap(), i);
        }
        assert_eq!(trie.find("/static/app.js", Input::Path), Some(2));
        assert_eq!(trie.find("/static/x.css", Input::Path), Some(1));
        assert_eq!(trie.find("/static/a/b", Input::Path), Some(0));
        assert_eq!(trie.find("/static", Input::Path), Some(0));
        assert_eq!(trie.find("/static/{id}/b", Input::Route), Some(0));
        assert_eq!(trie.find("/other", Input::Path), None);
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
