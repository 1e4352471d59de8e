//! A declared spec's templates as a tree of literals and parameters, so that discovery can
//! ask, at any position it is deciding, which literals the spec names there: those stay
//! literal, whatever their traffic looks like.

use hashbrown::{HashMap, HashSet};

use crate::route::{segment::is_placeholder, RoutePattern, Seg};

pub(super) type DeclId = u32;

#[derive(Default)]
struct DeclNode {
    literals: HashMap<Box<str>, DeclId>,
    /// Any parameter (whole or within a segment): it matches every value.
    param: Option<DeclId>,
}

pub struct Declared {
    nodes: Vec<DeclNode>,
}

impl Declared {
    pub const ROOT: DeclId = 0;

    /// The tree of `patterns` (a service's declared routes).
    pub fn new<'a>(patterns: impl Iterator<Item = &'a RoutePattern>) -> Declared {
        let mut d = Declared {
            nodes: vec![DeclNode::default()],
        };
        for p in patterns {
            let mut at = Self::ROOT;
            for seg in p.segments() {
                at = match seg {
                    Seg::Literal(l) if !is_placeholder(l) => d.literal(at, l),
                    Seg::Literal(_) | Seg::Param(_) | Seg::Mixed(_) => d.param(at),
                };
            }
        }
        d
    }

    fn add(&mut self) -> DeclId {
        self.nodes.push(DeclNode::default());
        DeclId::try_from(self.nodes.len() - 1).unwrap_or(DeclId::MAX)
    }

    fn literal(&mut self, at: DeclId, l: &str) -> DeclId {
        if let Some(&id) = self.nodes[at as usize].literals.get(l) {
            return id;
        }
        let id = self.add();
        self.nodes[at as usize].literals.insert(l.into(), id);
        id
    }

    fn param(&mut self, at: DeclId) -> DeclId {
        if let Some(id) = self.nodes[at as usize].param {
            return id;
        }
        let id = self.add();
        self.nodes[at as usize].param = Some(id);
        id
    }

    /// The literals declared at a position matched by `at`.
    pub fn literals(&self, at: &[DeclId]) -> HashSet<&str> {
        at.iter()
            .filter_map(|&a| self.nodes.get(a as usize))
            .flat_map(|n| n.literals.keys().map(|k| &**k))
            .collect()
    }

    /// The positions below `at` for `value` (`None`: the parameter's branch).
    pub fn follow(&self, at: &[DeclId], value: Option<&str>) -> Vec<DeclId> {
        let mut out = Vec::new();
        for n in at.iter().filter_map(|&a| self.nodes.get(a as usize)) {
            if let Some(&id) = value.and_then(|v| n.literals.get(v)) {
                out.push(id);
            }
            if let Some(id) = n.param {
                out.push(id);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
