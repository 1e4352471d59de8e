//! The paths one service was seen serving, as a tree of segments with request counts: the
//! evidence route discovery decides from. Bounded: each position keeps at most
//! `MAX_VALUES` distinct values (further ones are counted, which is itself evidence that
//! the position holds a parameter), and every service's tree draws on one byte budget.
//! Nodes live in an arena and refer to children by index, so nothing here recurses.

use hashbrown::HashMap;

use crate::limits::Limit;

pub type NodeId = u32;

/// Distinct values one position keeps as evidence.
pub const MAX_VALUES: usize = 512;
/// What one node costs besides its segment's text.
pub const NODE_COST: usize = size_of::<Node>() + 48;

#[derive(Default)]
pub struct Node {
    pub children: HashMap<Box<str>, NodeId>,
    /// Requests whose path passes through (or ends at) this node.
    pub through: u32,
    /// Requests whose path ends here.
    pub ends: u32,
    /// Distinct values refused at this position because it already held `MAX_VALUES`.
    pub unseen: u32,
}

/// One service's observed paths.
pub struct Observed {
    pub nodes: Vec<Node>,
    /// Distinct paths recorded (new leaves or new ends), for deciding when to look again.
    pub distinct: usize,
}

impl Observed {
    pub fn new() -> Observed {
        Observed {
            nodes: vec![Node::default()],
            distinct: 0,
        }
    }

    pub const ROOT: NodeId = 0;

    /// Bytes this tree holds (an estimate: nodes at a fixed cost; text is added by the
    /// caller as it inserts).
    pub fn node_bytes(&self) -> usize {
        self.nodes.len() * NODE_COST
    }

    /// Records one request for `segments`, `weight` times; `budget` is what the tree may
    /// still grow by, in bytes, and is reduced by what it grew. Segments past a full
    /// position or the budget are not recorded.
    pub fn record<'a>(
        &mut self,
        segments: impl Iterator<Item = &'a str>,
        weight: u32,
        budget: &mut usize,
    ) {
        let mut at = Self::ROOT;
        self.bump(at, weight);
        let mut whole = true;
        for seg in segments {
            let node = &mut self.nodes[at as usize];
            if let Some(&next) = node.children.get(seg) {
                at = next;
                self.bump(at, weight);
                continue;
            }
            if node.children.len() >= MAX_VALUES {
                node.unseen = node.unseen.saturating_add(1);
                Limit::RouteSamples.reached();
                whole = false;
                break;
            }
            let cost = NODE_COST + seg.len();
            if cost > *budget {
                Limit::RouteTree.reached();
                whole = false;
                break;
            }
            *budget -= cost;
            let id = NodeId::try_from(self.nodes.len()).unwrap_or(NodeId::MAX);
            self.nodes.push(Node::default());
            self.nodes[at as usize].children.insert(seg.into(), id);
            at = id;
            self.bump(at, weight);
            self.distinct += 1;
        }
        if whole {
            let node = &mut self.nodes[at as usize];
            if node.ends == 0 {
                self.distinct += 1;
            }
            node.ends = node.ends.saturating_add(weight);
        }
    }

    fn bump(&mut self, at: NodeId, weight: u32) {
        let n = &mut self.nodes[at as usize].through;
        *n = n.saturating_add(weight);
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}
