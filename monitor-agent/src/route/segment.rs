//! The grammar of one template segment, shared by declared specs, operator route patterns,
//! policies and observed routes: a literal, a parameter (`{name}`, or `*` in patterns), or
//! literal text around parameters (`{sid}.json`, `report-{date}`, `{z}-{x}-{y}.png`).

use std::fmt;

/// What a merged position becomes.
pub const PARAM: &str = "{param}";

/// Whether an observed route segment is a placeholder: `{name}` with a non-empty name and
/// no nested braces. `{}` and `{a}x{b}` are not: the first names nothing, the second is a
/// segment that mixes text and parameters.
pub fn is_placeholder(seg: &str) -> bool {
    seg.len() > 2
        && seg.starts_with('{')
        && seg.ends_with('}')
        && !seg[1..seg.len() - 1].contains(['{', '}'])
}

/// Who wrote the template, which decides what its special characters mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grammar {
    /// A spec's path template: OpenAPI knows no wildcards, so `*` is text, and a segment
    /// with unbalanced braces cannot be meant as a parameter, so it is text too.
    Declared,
    /// An operator's pattern or a policy's route: `*` is any one segment, and a malformed
    /// segment is an error the operator must see.
    Pattern,
}

/// One piece of a mixed segment.
#[derive(Clone, Debug)]
pub enum Part {
    Literal(Box<str>),
    /// A parameter's name (possibly empty for `*`).
    Param(Box<str>),
}

impl PartialEq for Part {
    /// Parameter names never change which paths match.
    fn eq(&self, other: &Part) -> bool {
        match (self, other) {
            (Part::Literal(a), Part::Literal(b)) => a == b,
            (Part::Param(_), Part::Param(_)) => true,
            _ => false,
        }
    }
}
impl Eq for Part {}

/// One parsed template segment.
#[derive(Clone, Debug)]
pub enum Seg {
    Literal(Box<str>),
    /// Exactly one non-empty segment; the name (empty for `*`) is kept for exports.
    Param(Box<str>),
    /// At least one parameter and at least one literal, adjacent literals joined.
    Mixed(Box<[Part]>),
}

impl PartialEq for Seg {
    /// Parameter names never change which paths match.
    fn eq(&self, other: &Seg) -> bool {
        match (self, other) {
            (Seg::Literal(a), Seg::Literal(b)) => a == b,
            (Seg::Param(_), Seg::Param(_)) => true,
            (Seg::Mixed(a), Seg::Mixed(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Seg {}

/// Why a pattern segment is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegError {
    Braces,
    Star,
}

impl fmt::Display for SegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SegError::Braces => {
                "`{` and `}` must enclose a parameter name, like /users/{id} or /files/{name}.json"
            }
            SegError::Star => "`*` and `**` must be whole segments, like /static/*",
        })
    }
}

impl Seg {
    /// Parses one segment (no `/`). `**` is the caller's business: it is not a segment.
    pub fn parse(seg: &str, grammar: Grammar) -> Result<Seg, SegError> {
        if grammar == Grammar::Pattern {
            if seg == "*" {
                return Ok(Seg::Param("".into()));
            }
            if seg.contains('*') {
                return Err(SegError::Star);
            }
        }
        match parts(seg) {
            Ok(parts) => Ok(match parts.as_slice() {
                [] => Seg::Literal("".into()),
                [Part::Literal(l)] => Seg::Literal(l.clone()),
                [Part::Param(name)] => Seg::Param(name.clone()),
                _ => Seg::Mixed(parts.into_boxed_slice()),
            }),
            Err(_) if grammar == Grammar::Declared => Ok(Seg::Literal(seg.into())),
            Err(e) => Err(e),
        }
    }

    /// Whether a path segment is a value of this template segment. Linear in the segment's
    /// length: literals are found leftmost, and each parameter takes at least one character.
    pub fn matches(&self, seg: &str) -> bool {
        match self {
            Seg::Literal(l) => **l == *seg,
            Seg::Param(_) => !seg.is_empty(),
            Seg::Mixed(parts) => mixed_matches(parts, seg),
        }
    }

    /// Literal characters, the more the more specific.
    pub fn literal_len(&self) -> usize {
        match self {
            Seg::Literal(l) => l.len(),
            Seg::Param(_) => 0,
            Seg::Mixed(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Literal(l) => l.len(),
                    Part::Param(_) => 0,
                })
                .sum(),
        }
    }
}

/// Splits `{name}` parameters from literal text; an unmatched or nested brace, or an empty
/// name, is an error.
fn parts(seg: &str) -> Result<Vec<Part>, SegError> {
    let mut out = Vec::new();
    let mut rest = seg;
    while let Some(open) = rest.find(['{', '}']) {
        let close = rest[open + 1..]
            .find(['{', '}'])
            .map(|i| open + 1 + i)
            .filter(|&c| rest.as_bytes()[open] == b'{' && rest.as_bytes()[c] == b'}')
            .ok_or(SegError::Braces)?;
        if close == open + 1 {
            return Err(SegError::Braces);
        }
        push_literal(&mut out, &rest[..open]);
        out.push(Part::Param(rest[open + 1..close].into()));
        rest = &rest[close + 1..];
    }
    push_literal(&mut out, rest);
    Ok(out)
}

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    match parts.last_mut() {
        Some(Part::Literal(l)) => *l = format!("{l}{text}").into(),
        _ => parts.push(Part::Literal(text.into())),
    }
}

/// Literals are matched leftmost: a later occurrence only leaves less text for the
/// parameter that must follow a middle literal, so the leftmost never loses a match.
fn mixed_matches(parts: &[Part], seg: &str) -> bool {
    let mut rest = seg;
    // Parameters since the last literal, each owed at least one character.
    let mut owed = 0usize;
    for (i, part) in parts.iter().enumerate() {
        let Part::Literal(lit) = part else {
            owed += 1;
            continue;
        };
        let lit: &str = lit;
        if owed == 0 {
            match rest.strip_prefix(lit) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i + 1 == parts.len() {
            return rest
                .strip_suffix(lit)
                .is_some_and(|head| has_chars(head, owed));
        } else {
            let Some(skip) = nth_char_end(rest, owed) else {
                return false;
            };
            let Some(at) = rest[skip..].find(lit) else {
                return false;
            };
            rest = &rest[skip + at + lit.len()..];
        }
        owed = 0;
    }
    if owed == 0 {
        rest.is_empty()
    } else {
        has_chars(rest, owed)
    }
}

/// The byte offset after the first `n` characters of `s`, if it has that many.
fn nth_char_end(s: &str, n: usize) -> Option<usize> {
    match n.checked_sub(1) {
        None => Some(0),
        Some(last) => s.char_indices().nth(last).map(|(i, c)| i + c.len_utf8()),
    }
}

fn has_chars(s: &str, n: usize) -> bool {
    nth_char_end(s, n).is_some()
}
