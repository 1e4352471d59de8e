//! A service's discovered routes as a tree: at each position its literal values, at most
//! one whole-segment parameter, and parameters framed by a fixed suffix (`{id}.json`).
//! Routing a path is one walk, literal first, so a literal sibling (`/users/me`) wins over
//! the parameter beside it; a path that leaves the tree is templated segment by segment
//! by the built-in heuristics from there on.

use hashbrown::HashMap;

use crate::route::{heuristics::placeholder, segment::is_placeholder};

pub(super) type TemplateId = u32;

#[derive(Default, Debug)]
pub(super) struct TemplateNode {
    pub(super) literals: HashMap<Box<str>, TemplateId>,
    /// A whole-segment parameter and its name (`{id}`, `{param}`...).
    pub(super) param: Option<(Box<str>, TemplateId)>,
    /// Parameters with a literal suffix: (name, suffix, child).
    pub(super) framed: Vec<(Box<str>, Box<str>, TemplateId)>,
}

/// One service's routes; the root is node 0.
#[derive(Default, Debug)]
pub(super) struct Templates {
    pub(super) nodes: Vec<TemplateNode>,
}

impl Templates {
    pub(super) fn new() -> Templates {
        Templates {
            nodes: vec![TemplateNode::default()],
        }
    }

    pub(super) fn add(&mut self) -> TemplateId {
        self.nodes.push(TemplateNode::default());
        TemplateId::try_from(self.nodes.len() - 1).unwrap_or(TemplateId::MAX)
    }

    /// The route of `path` (no query string): its segments as the tree names them. A
    /// placeholder segment (a route filed earlier) takes the parameter at its position;
    /// when `filed` (re-filing a route, not routing a call) one where the tree has no
    /// parameter takes the one literal of its look, if there is one.
    pub(super) fn route(&self, path: &str, filed: bool) -> String {
        let mut out = String::with_capacity(path.len());
        self.route_into(path, filed, &mut out);
        out
    }

    /// [`Templates::route`] written into `out` (emptied first), so a caller routing call
    /// after call reuses one buffer.
    pub(super) fn route_into(&self, path: &str, filed: bool, out: &mut String) {
        out.clear();
        let mut at = Some(0);
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            let Some(node) = at.and_then(|a| self.nodes.get(a as usize)) else {
                out.push_str(placeholder(seg).unwrap_or(seg));
                continue;
            };
            if i == 0 {
                // Before the leading slash: nothing, or a path not starting with `/`.
                out.push_str(seg);
                if !seg.is_empty() {
                    at = None;
                }
                continue;
            }
            at = Self::step(node, seg, filed, out);
        }
    }

    /// One segment: written to `out`; the node it leads to, if the tree goes on.
    fn step(node: &TemplateNode, seg: &str, filed: bool, out: &mut String) -> Option<TemplateId> {
        if let Some(&next) = node.literals.get(seg) {
            out.push_str(seg);
            return Some(next);
        }
        for (name, suffix, next) in &node.framed {
            if seg
                .strip_suffix(&**suffix)
                .is_some_and(|core| !core.is_empty())
            {
                out.push_str(name);
                out.push_str(suffix);
                return Some(*next);
            }
        }
        if let Some((name, next)) = &node.param {
            if !seg.is_empty() {
                out.push_str(name);
                return Some(*next);
            }
        }
        if filed && is_placeholder(seg) {
            // A route templated before the routes were worked out (`/{date}/...`) where they
            // have one literal of that look (`/2010-04-01/...`): that literal. Only when
            // re-filing: a call's path could otherwise make each segment cost a scan.
            let mut like = node
                .literals
                .iter()
                .filter(|(l, _)| placeholder(l) == Some(seg));
            if let (Some((l, next)), None) = (like.next(), like.next()) {
                out.push_str(l);
                return Some(*next);
            }
        }
        out.push_str(placeholder(seg).unwrap_or(seg));
        None
    }
}
