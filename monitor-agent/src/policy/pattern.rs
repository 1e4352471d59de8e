//! Route patterns: the one piece of the policy language that is matched on every call, so
//! they are parsed once into segments and matched without allocating.
//!
//! A call is checked twice, against its concrete path and against its templated route,
//! because the agent sometimes knows only one of them well: a spec template or a merged
//! `{param}` position names a whole family of paths, and a pattern that accepts any value
//! at that position accepts the family. A route placeholder therefore matches only a
//! pattern's `{name}`/`*` (or a trailing `**`), never a literal, which could not be
//! promised to equal every value the placeholder stands for.

use std::{fmt, str::FromStr};

/// A validated pattern such as `/api/v1/orders/{id}` or `/static/**`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoutePattern {
    raw: String,
    segments: Vec<Segment>,
    /// Ends in `**`: any remainder, including none.
    rest: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Segment {
    Literal(String),
    /// `{name}` or `*`: exactly one non-empty segment.
    One,
}

impl FromStr for RoutePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("route {s:?} must start with /"));
        }
        if s.contains(['?', '#']) {
            return Err(format!(
                "route {s:?} must be a path: queries and fragments are never matched"
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "route {s:?} must not contain spaces or control characters"
            ));
        }
        let mut segments = Vec::new();
        let mut rest = false;
        let parts: Vec<&str> = split(s).map_or_else(Vec::new, |p| p.split('/').collect());
        for (i, seg) in parts.iter().enumerate() {
            if *seg == "**" {
                if i + 1 != parts.len() {
                    return Err(format!("route {s:?}: `**` must be the last segment"));
                }
                rest = true;
            } else if *seg == "*" || is_placeholder(seg) {
                segments.push(Segment::One);
            } else if seg.contains(['{', '}', '*']) {
                return Err(format!(
                    "route {s:?}: `{{name}}`, `*` and `**` must be whole segments, like /users/{{id}}"
                ));
            } else {
                segments.push(Segment::Literal((*seg).to_owned()));
            }
        }
        Ok(RoutePattern {
            raw: s.to_owned(),
            segments,
            rest,
        })
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

    /// Whether a request target (query and fragment ignored) fits the pattern; its
    /// segments are values, even when they happen to look like `{x}`.
    pub fn matches_path(&self, target: &str) -> bool {
        self.matches(strip_query(target), false)
    }

    /// Whether a templated route fits the pattern: each `{x}` segment must sit where the
    /// pattern accepts any value.
    pub fn matches_route(&self, route: &str) -> bool {
        self.matches(strip_query(route), true)
    }

    pub(super) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub(super) fn has_rest(&self) -> bool {
        self.rest
    }

    /// Equal for patterns that match exactly the same paths and routes (`/a/{id}/` and
    /// `/a/*`); literals cannot contain `*`, so the key is unambiguous.
    pub(super) fn shape_key(&self) -> String {
        let mut key = String::new();
        for seg in &self.segments {
            key.push('/');
            match seg {
                Segment::One => key.push('*'),
                Segment::Literal(l) => key.push_str(l),
            }
        }
        if self.rest {
            key.push_str("/**");
        }
        key
    }

    fn matches(&self, path: &str, templated: bool) -> bool {
        let mut given = split(path).into_iter().flat_map(|p| p.split('/'));
        for want in &self.segments {
            let Some(seg) = given.next() else {
                return false;
            };
            let ok = match want {
                Segment::One => !seg.is_empty(),
                Segment::Literal(l) => *l == seg && !(templated && is_placeholder(seg)),
            };
            if !ok {
                return false;
            }
        }
        self.rest || given.next().is_none()
    }
}

/// The target without its query string or fragment.
pub fn strip_query(target: &str) -> &str {
    target.find(['?', '#']).map_or(target, |i| &target[..i])
}

/// The segments after the leading slash, one trailing slash ignored (`/users/` is
/// `/users`, as the spec matcher treats them); `None` for the root.
fn split(path: &str) -> Option<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    (!p.is_empty()).then_some(p)
}

/// `{name}` with a non-empty name and no nested braces, as routes write parameters.
pub(super) fn is_placeholder(seg: &str) -> bool {
    seg.len() > 2
        && seg.starts_with('{')
        && seg.ends_with('}')
        && !seg[1..seg.len() - 1].contains(['{', '}'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RoutePattern {
        s.parse().unwrap()
    }

    #[test]
    fn literal_segments_match_exactly() {
        let pat = p("/api/v1/orders");
        assert!(pat.matches_path("/api/v1/orders"));
        assert!(pat.matches_path("/api/v1/orders/"));
        assert!(!pat.matches_path("/api/v1/orders/1"));
        assert!(!pat.matches_path("/api/v1"));
        assert!(!pat.matches_path("/api/v1/Orders"));
        assert!(!pat.matches_path("/api/v1/ordersx"));
    }

    #[test]
    fn query_and_fragment_are_stripped() {
        let pat = p("/search");
        assert!(pat.matches_path("/search?q=1&token=h:1a2b"));
        assert!(pat.matches_path("/search#top"));
        assert!(pat.matches_path("/search/?q=/x/y"));
        assert!(!pat.matches_path("/searchx?q=1"));
    }

    #[test]
    fn parameter_and_star_match_one_non_empty_segment() {
        for pat in [p("/orders/{id}/items"), p("/orders/*/items")] {
            assert!(pat.matches_path("/orders/42/items"));
            assert!(pat.matches_path("/orders/a-b/items?x=1"));
            assert!(!pat.matches_path("/orders//items"));
            assert!(!pat.matches_path("/orders/items"));
            assert!(!pat.matches_path("/orders/1/2/items"));
        }
        assert!(!p("/orders/{id}").matches_path("/orders"));
        assert!(!p("/orders/{id}").matches_path("/orders/"));
    }

    #[test]
    fn double_star_matches_any_remainder() {
        let pat = p("/static/**");
        for ok in [
            "/static",
            "/static/",
            "/static/a",
            "/static/a/b/c.css",
            "/static?x",
        ] {
            assert!(pat.matches_path(ok), "{ok}");
        }
        assert!(!pat.matches_path("/staticx"));
        assert!(!pat.matches_path("/"));
        let all = p("/**");
        assert!(all.matches_path("/"));
        assert!(all.matches_path("/a/b"));
        assert!(all.matches_route("/a/{id}"));
        assert!(p("/a/{x}/**").matches_path("/a/b/c/d"));
        assert!(!p("/a/{x}/**").matches_path("/a"));
    }

    #[test]
    fn root_matches_only_root() {
        assert!(p("/").matches_path("/"));
        assert!(p("/").matches_path("/?x=1"));
        assert!(!p("/").matches_path("/a"));
        assert!(!p("/a").matches_path("/"));
    }

    #[test]
    fn templated_routes_match_only_wildcards() {
        assert!(p("/users/{id}").matches_route("/users/{param}"));
        assert!(p("/users/*").matches_route("/users/{uuid}"));
        assert!(p("/users/**").matches_route("/users/{id}/orders"));
        assert!(!p("/users/me").matches_route("/users/{id}"));
        assert!(p("/users/{id}").matches_route("/users/me"));
        // A concrete path is taken literally, even when it looks like a placeholder.
        assert!(p("/users/{id}").matches_path("/users/{id}"));
        assert!(p("/users/{id}").matches_path("/users/{x}"));
    }

    #[test]
    fn validation() {
        for (bad, why) in [
            ("api/v1", "must start with /"),
            ("", "must start with /"),
            ("/a?x=1", "queries"),
            ("/a#b", "queries"),
            ("/a b", "spaces"),
            ("/a/**/b", "last segment"),
            ("/a/x{id}", "whole segments"),
            ("/a/{id}.json", "whole segments"),
            ("/a/*.css", "whole segments"),
            ("/a/{}", "whole segments"),
            ("/a/{b{c}}", "whole segments"),
        ] {
            let e = bad.parse::<RoutePattern>().unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(p("/a/{id}/**").to_string(), "/a/{id}/**");
        assert_eq!(p("/a/{id}/").shape_key(), p("/a/*").shape_key());
        assert_ne!(p("/a/{id}").shape_key(), p("/a/{id}/**").shape_key());
        assert_ne!(p("/").shape_key(), p("/**").shape_key());
        assert!(p("/a//b").matches_path("/a//b"));
    }
}
