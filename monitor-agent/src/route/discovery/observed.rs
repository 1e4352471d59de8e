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
/// Segments of one path kept as evidence; APIs nest far less deeply, and a deeper path must
/// not make the tree (and each look at it) as deep as a workload likes.
pub const MAX_DEPTH: usize = 48;
/// What one node costs besides its segment's text.
pub const NODE_COST: usize = size_of::<Node>() + 48;

#[derive(Default)]
pub struct Node {
    pub children: HashMap<Box<str>, NodeId>,
    /// Requests whose path passes through (or ends at) this node.
    pub through: u32,
    /// Requests whose path ends here.
    pub ends: u32,
    /// Requests whose value was refused at this position because it already held
    /// `MAX_VALUES` values (a refused value counts each time it comes).
    pub unseen: u32,
    /// The methods of the requests that end here, one bit each ([`method_bit`]).
    pub methods: u8,
}

/// One bit per common method, the rest sharing the last: which methods a path was called
/// with is evidence too (an action like `POST /orders/clone` beside `GET /orders/{id}`).
pub fn method_bit(method: &str) -> u8 {
    match method {
        "GET" => 1,
        "POST" => 2,
        "PUT" => 4,
        "DELETE" => 8,
        "PATCH" => 16,
        "HEAD" => 32,
        "OPTIONS" => 64,
        _ => 128,
    }
}

/// One service's observed paths.
#[derive(Default)]
pub struct Observed {
    pub nodes: Vec<Node>,
    /// Distinct paths recorded (nodes some path ends at), for deciding when to look again.
    pub distinct: usize,
}

impl Observed {
    pub fn new() -> Observed {
        Observed {
            nodes: vec![Node::default()],
            ..Observed::default()
        }
    }

    pub const ROOT: NodeId = 0;

    /// Records one request for `segments`, `weight` times, made with `methods`; `budget`
    /// is what the tree may still grow by, in bytes, and is reduced by what it grew.
    /// Segments past a full position, the depth or the budget are not recorded.
    pub fn record<'a>(
        &mut self,
        segments: impl Iterator<Item = &'a str>,
        weight: u32,
        methods: u8,
        budget: &mut usize,
    ) {
        let mut at = Self::ROOT;
        self.bump(at, weight);
        let mut whole = true;
        for (depth, seg) in segments.enumerate() {
            if depth >= MAX_DEPTH {
                Limit::RouteDepth.reached();
                whole = false;
                break;
            }
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
        }
        if whole {
            let node = &mut self.nodes[at as usize];
            if node.ends == 0 {
                self.distinct += 1;
            }
            node.ends = node.ends.saturating_add(weight);
            node.methods |= methods;
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
