//! Route discovery for one service from everything observed, top down: at each position
//! the values seen there (pooled over every branch already found to be the same route)
//! are split into literals and one parameter.
//!
//! A value is taken for a parameter's when:
//! - it looks like an identifier (see [`shape`]), or a placeholder of a route filed
//!   earlier;
//! - or it is a name whose sub-tree looks like its siblings': the words that follow it
//!   (or, below a second name, the words after that) are shared with at least two other
//!   values, as `/repos/{owner}/{repo}/pulls` shares `pulls` across owners; a segment
//!   followed mostly by identifiers is a collection (`/users/42`), a literal;
//! - or it ends a path where identifiers or such names are the parameter's values and it
//!   is not requested much more often than they are (a literal sibling such as
//!   `/containers/json` is: a list call gathers the traffic of a whole collection);
//! - or the position is open: many distinct values, many of them seen once (more than
//!   `limit` distinct values always are).
//!
//! Versions (`v2`, `1.0`) and every other name stay literal. The leading segments that
//! every path of the service shares stay literal whatever they look like (`/2010-04-01`),
//! and so does every literal a declared spec names at that place. Parameter values that
//! share a file-like suffix (`17.json`) become a framed parameter (`{id}.json`).
//!
//! Each observed node belongs to exactly one group, so the work is linear in the tree.

use hashbrown::{HashMap, HashSet};

use super::{
    declared::{DeclId, Declared},
    observed::{NodeId, Observed},
    shape::{shape, split_ext, Shape},
    templates::{TemplateId, Templates},
};
use crate::route::{heuristics::placeholder, segment::is_placeholder, PARAM};

/// Distinct values from which a position may be open (a parameter of names).
const OPEN_MIN_VALUES: usize = 6;
/// Siblings a value must share its continuation with to be one of them.
const SHARED_BY: u32 = 3;
/// Values (identifiers and structural names) a parameter needs before names join it.
const STRUCTURE_MIN: usize = 3;

/// Routes of one service from its observed paths; `limit`: distinct values at one
/// position beyond which it is a parameter.
pub(super) fn infer(obs: &Observed, declared: Option<&Declared>, limit: usize) -> Templates {
    let mut out = Templates::new();
    let root_decl: Vec<DeclId> = declared.map(|_| vec![Declared::ROOT]).unwrap_or_default();
    let mut work = vec![Group {
        at: 0,
        members: vec![Observed::ROOT],
        on_base: true,
        declared: root_decl,
    }];
    let total = obs.node(Observed::ROOT).through;
    while let Some(g) = work.pop() {
        let values = Values::gather(obs, &g.members);
        if values.list.is_empty() {
            continue;
        }
        let through: u64 = g
            .members
            .iter()
            .map(|&m| u64::from(obs.node(m).through))
            .sum();
        let ends: u64 = g.members.iter().map(|&m| u64::from(obs.node(m).ends)).sum();
        let on_base = g.on_base && through == u64::from(total) && ends == 0;
        let forced = declared
            .map(|d| d.literals(&g.declared))
            .unwrap_or_default();
        let unseen = g.members.iter().map(|&m| obs.node(m).unseen as usize).sum();
        let ctx = Context {
            obs,
            on_base,
            forced: &forced,
            unseen,
            limit,
        };
        let split = decide(&ctx, &values);
        emit(&mut out, &mut work, &g, &values, &split, declared);
    }
    out
}

/// Observed nodes that are one route position, and where that route is in the output.
struct Group {
    at: TemplateId,
    members: Vec<NodeId>,
    on_base: bool,
    /// Nodes of the declared spec's tree this position matches.
    declared: Vec<DeclId>,
}

struct Context<'a> {
    obs: &'a Observed,
    on_base: bool,
    forced: &'a HashSet<&'a str>,
    unseen: usize,
    limit: usize,
}

/// The values seen at one position, each with the nodes it names and its request count.
struct Values<'a> {
    list: Vec<Value<'a>>,
}

struct Value<'a> {
    key: &'a str,
    nodes: Vec<NodeId>,
    through: u64,
}

impl<'a> Values<'a> {
    fn gather(obs: &'a Observed, members: &[NodeId]) -> Values<'a> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut list: Vec<Value<'a>> = Vec::new();
        for &m in members {
            for (k, &child) in &obs.node(m).children {
                let i = *index.entry(&**k).or_insert_with(|| {
                    list.push(Value {
                        key: k,
                        nodes: Vec::new(),
                        through: 0,
                    });
                    list.len() - 1
                });
                list[i].nodes.push(child);
                list[i].through += u64::from(obs.node(child).through);
            }
        }
        // A stable order, so that the output does not depend on hashing.
        list.sort_unstable_by(|a, b| a.key.cmp(b.key));
        Values { list }
    }
}

/// Which values are literals; the rest are the parameter's.
struct Split {
    literal: Vec<bool>,
}

/// What follows one value: the words one and two segments below it, how many of its
/// children are identifiers, whether paths end at it.
struct Continuation<'a> {
    words: HashSet<&'a str>,
    words_below: HashSet<&'a str>,
    ids: usize,
}

fn continuation<'a>(obs: &'a Observed, v: &Value<'a>) -> Continuation<'a> {
    let mut c = Continuation {
        words: HashSet::new(),
        words_below: HashSet::new(),
        ids: 0,
    };
    for &n in &v.nodes {
        for (k, &child) in &obs.node(n).children {
            match shape(k) {
                Shape::Id => c.ids += 1,
                Shape::Empty => {}
                _ if is_placeholder(k) => c.ids += 1,
                _ => {
                    c.words.insert(k);
                }
            }
            for k2 in obs.node(child).children.keys() {
                if matches!(shape(k2), Shape::Word | Shape::Version) && !is_placeholder(k2) {
                    c.words_below.insert(k2);
                }
            }
        }
    }
    c
}

/// How the words following the values of one position recur among them: by word, the
/// number of values it follows.
struct Sharing<'a> {
    by_word: HashMap<&'a str, u32>,
    /// The words recur as a small vocabulary does (every word follows two values on
    /// average), not as the values of a parameter below, of which a few recur by chance.
    vocabulary: bool,
}

impl<'a> Sharing<'a> {
    fn of<'c>(sets: impl Iterator<Item = &'c HashSet<&'a str>>) -> Sharing<'a>
    where
        'a: 'c,
    {
        let mut by_word: HashMap<&'a str, u32> = HashMap::new();
        let mut total = 0u64;
        for set in sets {
            for w in set {
                *by_word.entry(w).or_default() += 1;
                total += 1;
            }
        }
        let vocabulary = total >= 2 * by_word.len() as u64;
        Sharing {
            by_word,
            vocabulary,
        }
    }

    /// How many of `set` follow at least `SHARED_BY` values; 0 unless a vocabulary.
    fn shared(&self, set: &HashSet<&str>) -> usize {
        if !self.vocabulary {
            return 0;
        }
        set.iter()
            .filter(|w| self.by_word.get(*w).copied().unwrap_or(0) >= SHARED_BY)
            .count()
    }
}

/// A name whose continuation is its siblings': it is one of their kind.
fn alike(c: &Continuation<'_>, here: &Sharing<'_>, below: &Sharing<'_>) -> bool {
    if c.ids > 0 && c.ids >= c.words.len() {
        // Followed by identifiers: a collection's name.
        return false;
    }
    if c.words.is_empty() {
        return false;
    }
    let shared_here = here.shared(&c.words);
    if shared_here * 2 >= c.words.len() {
        return true;
    }
    // Names below names (`/repos/{owner}/{repo}/pulls`): the words after the next level.
    shared_here == 0
        && !c.words_below.is_empty()
        && below.shared(&c.words_below) * 2 >= c.words_below.len()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Literal,
    Param,
    /// A name: decided from its continuation and frequency.
    Name,
}

fn first_kind(ctx: &Context<'_>, key: &str) -> Kind {
    if ctx.forced.contains(key) {
        return Kind::Literal;
    }
    if is_placeholder(key) {
        return Kind::Param;
    }
    match shape(key) {
        Shape::Empty => Kind::Literal,
        Shape::Id => Kind::Param,
        Shape::Version | Shape::Word => Kind::Name,
    }
}

fn decide(ctx: &Context<'_>, values: &Values<'_>) -> Split {
    let list = &values.list;
    if ctx.on_base && list.len() == 1 && !is_placeholder(list[0].key) {
        return Split {
            literal: vec![true],
        };
    }
    let kinds: Vec<Kind> = list.iter().map(|v| first_kind(ctx, v.key)).collect();
    if !kinds.contains(&Kind::Name) {
        return Split {
            literal: kinds.iter().map(|k| *k == Kind::Literal).collect(),
        };
    }
    let conts: Vec<Continuation<'_>> = list.iter().map(|v| continuation(ctx.obs, v)).collect();
    let here = Sharing::of(conts.iter().map(|c| &c.words));
    let below = Sharing::of(conts.iter().map(|c| &c.words_below));
    let structural: Vec<bool> = kinds
        .iter()
        .zip(&conts)
        .map(|(k, c)| *k == Kind::Name && alike(c, &here, &below))
        .collect();
    let literal = names_decided(ctx, list, &kinds, &conts, &structural);
    Split { literal }
}

/// Literal or not for every value, names decided from the rest.
fn names_decided(
    ctx: &Context<'_>,
    list: &[Value<'_>],
    kinds: &[Kind],
    follows: &[Continuation<'_>],
    structural: &[bool],
) -> Vec<bool> {
    let params = kinds.iter().filter(|k| **k == Kind::Param).count();
    let n_structural = structural.iter().filter(|s| **s).count();
    let mut seen: Vec<u64> = list
        .iter()
        .zip(kinds.iter().zip(structural))
        .filter(|(_, (k, s))| **k == Kind::Param || **s)
        .map(|(v, _)| v.through)
        .collect();
    seen.sort_unstable();
    let median = seen.get(seen.len() / 2).copied().unwrap_or(1);
    let candidates = list.len() - kinds.iter().filter(|k| **k == Kind::Literal).count();
    let seen_once = list
        .iter()
        .zip(kinds)
        .filter(|(v, k)| **k != Kind::Literal && v.through == 1)
        .count();
    let leaves = follows
        .iter()
        .zip(kinds)
        .filter(|(c, k)| **k == Kind::Name && c.words.is_empty() && c.ids == 0)
        .count();
    let open = (candidates >= OPEN_MIN_VALUES && seen_once * 4 >= candidates)
        || (ctx.limit > 0 && candidates + ctx.unseen > ctx.limit);
    let grouped = params + n_structural >= STRUCTURE_MIN;
    let methods = |v: &Value<'_>| {
        v.nodes
            .iter()
            .fold(0u8, |m, &n| m | ctx.obs.node(n).methods)
    };
    // How the parameter's values ending here were called: a name called otherwise is an
    // action of its own (`POST /orders/clone` beside `GET /orders/{id}`).
    let param_methods = list
        .iter()
        .zip(kinds)
        .filter(|(_, k)| **k == Kind::Param)
        .fold(0u8, |m, (v, _)| m | methods(v));
    list.iter()
        .enumerate()
        .map(|(i, v)| match kinds[i] {
            Kind::Literal => true,
            Kind::Param => false,
            Kind::Name => {
                let frequent = v.through >= (4 * median).max(4);
                let leaf = follows[i].words.is_empty() && follows[i].ids == 0;
                let version = shape(v.key) == Shape::Version;
                let param = if version {
                    open && !frequent
                } else {
                    (structural[i] && grouped)
                        || (leaf
                            && (params > 0 || n_structural >= STRUCTURE_MIN)
                            && !frequent
                            && (params == 0 || methods(v) & param_methods != 0))
                        || (leaf && open && leaves >= OPEN_MIN_VALUES && !frequent)
                };
                !param
            }
        })
        .collect()
}

/// Writes one group's decision into the output and queues its children.
fn emit(
    out: &mut Templates,
    work: &mut Vec<Group>,
    g: &Group,
    values: &Values<'_>,
    split: &Split,
    declared: Option<&Declared>,
) {
    let mut params: Vec<&Value<'_>> = Vec::new();
    for (v, &lit) in values.list.iter().zip(&split.literal) {
        if !lit {
            params.push(v);
            continue;
        }
        let id = out.add();
        out.nodes[g.at as usize].literals.insert(v.key.into(), id);
        work.push(Group {
            at: id,
            members: v.nodes.clone(),
            on_base: g.on_base,
            declared: declared
                .map(|d| d.follow(&g.declared, Some(v.key)))
                .unwrap_or_default(),
        });
    }
    if params.is_empty() {
        return;
    }
    let decl = declared
        .map(|d| d.follow(&g.declared, None))
        .unwrap_or_default();
    let (framed, whole) = frame(&params);
    if let Some((suffix, members)) = framed {
        let cores: Vec<&str> = members
            .iter()
            .filter_map(|v| v.key.strip_suffix(suffix))
            .collect();
        let id = out.add();
        let name = param_name(cores.iter().copied());
        out.nodes[g.at as usize]
            .framed
            .push((name.into(), suffix.into(), id));
        work.push(Group {
            at: id,
            members: members
                .iter()
                .flat_map(|v| v.nodes.iter().copied())
                .collect(),
            on_base: false,
            declared: decl.clone(),
        });
    }
    if !whole.is_empty() {
        let id = out.add();
        let name = param_name(whole.iter().map(|v| v.key));
        out.nodes[g.at as usize].param = Some((name.into(), id));
        work.push(Group {
            at: id,
            members: whole.iter().flat_map(|v| v.nodes.iter().copied()).collect(),
            on_base: false,
            declared: decl,
        });
    }
}

type Framed<'v, 'a> = (Option<(&'a str, Vec<&'v Value<'a>>)>, Vec<&'v Value<'a>>);

/// The parameter's values that share one file-like suffix (`.json`), when most values
/// with a suffix have it and their names are plain (not encoded paths or URLs, not file
/// names with an extension of their own); the rest.
fn frame<'v, 'a>(params: &[&'v Value<'a>]) -> Framed<'v, 'a> {
    let mut exts: HashMap<&str, usize> = HashMap::new();
    for v in params {
        if let Some((_, ext)) = split_ext(v.key) {
            *exts.entry(ext).or_default() += 1;
        }
    }
    let with_ext: usize = exts.values().sum();
    let best = exts
        .iter()
        .filter(|(_, &n)| n >= 2 && n * 5 >= with_ext * 4)
        .map(|(e, _)| *e)
        .next();
    let Some(ext) = best else {
        return (None, params.to_vec());
    };
    let (mine, rest): (Vec<&Value<'a>>, Vec<&Value<'a>>) = params
        .iter()
        .partition(|v| split_ext(v.key).is_some_and(|(_, e)| e == ext));
    let plain = mine.iter().all(|v| {
        let core = &v.key[..v.key.len() - ext.len()];
        split_ext(core).is_none() && !core.contains(['%', '@', ':'])
    });
    if plain {
        (Some((ext, mine)), rest)
    } else {
        (None, params.to_vec())
    }
}

/// `{id}` when nearly every value is a number, `{uuid}` for UUIDs...: the built-in name
/// most values get; `{param}` otherwise.
fn param_name<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut total = 0;
    for v in values {
        total += 1;
        let name = if is_placeholder(v) {
            v
        } else {
            placeholder(v).unwrap_or(PARAM)
        };
        *names.entry(name).or_default() += 1;
    }
    names
        .into_iter()
        .filter(|(_, n)| n * 10 >= total * 9)
        .map(|(name, _)| name.to_owned())
        .next()
        .unwrap_or_else(|| PARAM.to_owned())
}
