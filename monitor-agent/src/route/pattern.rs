//! Parsed path templates: what a spec declares, what an operator names with
//! `--route-pattern`, and what a policy allows. One type, one grammar, one matcher, so a
//! path that fits a template in one of those places fits it in all of them.

use std::{fmt, str::FromStr};

use super::{
    path::segments,
    segment::{is_placeholder, Grammar, Part, Seg},
};

/// A template such as `/api/v1/orders/{id}`, `/files/{name}.json` or `/static/**`.
/// Equal (and hashed) by its text; [`RoutePattern::shape_key`] says whether two patterns
/// match the same paths.
#[derive(Clone, Debug)]
pub struct RoutePattern {
    raw: String,
    segments: Vec<Seg>,
    /// Ends in `**`: any remainder, including none.
    rest: bool,
}

impl PartialEq for RoutePattern {
    fn eq(&self, other: &RoutePattern) -> bool {
        self.raw == other.raw
    }
}
impl Eq for RoutePattern {}

impl std::hash::Hash for RoutePattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

/// Why an operator's or a policy's pattern was refused; the message names the pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    message: String,
}

/// What a segment of an observed route is to a pattern that must match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A request path: every segment is a value, even one that looks like `{x}`.
    Path,
    /// A templated route: a `{x}` segment stands for unknown values, which only a
    /// parameter (or `**`) can be promised to accept.
    Route,
}

impl RoutePattern {
    /// A spec's path template; never fails (malformed braces are literal text).
    pub fn declared(template: &str) -> RoutePattern {
        RoutePattern {
            raw: template.to_owned(),
            segments: segments(template)
                .map(|s| Seg::parse(s, Grammar::Declared).unwrap_or(Seg::Literal(s.into())))
                .collect(),
            rest: false,
        }
    }

    /// An operator's or policy's pattern, validated.
    pub fn parse(s: &str) -> Result<RoutePattern, PatternError> {
        let err = |reason: &dyn fmt::Display| PatternError {
            message: format!("route {s:?}{reason}"),
        };
        if !s.starts_with('/') {
            return Err(err(&" must start with /"));
        }
        if s.contains(['?', '#']) {
            return Err(err(
                &" must be a path: queries and fragments are never matched",
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(&" must not contain spaces or control characters"));
        }
        let parts: Vec<&str> = segments(s).collect();
        let mut out = Vec::with_capacity(parts.len());
        let mut rest = false;
        for (i, seg) in parts.iter().enumerate() {
            if *seg == "**" {
                if i + 1 != parts.len() {
                    return Err(err(&": `**` must be the last segment"));
                }
                rest = true;
            } else {
                let seg = Seg::parse(seg, Grammar::Pattern).map_err(|e| err(&format!(": {e}")))?;
                out.push(seg);
            }
        }
        Ok(RoutePattern {
            raw: s.to_owned(),
            segments: out,
            rest,
        })
    }

    /// The narrowest pattern covering every path an observed route stands for, and whether
    /// it is broader than the route: segments a pattern cannot spell literally (a literal
    /// `*`, stray braces) become `*`.
    pub fn covering(route: &str) -> Result<(RoutePattern, bool), PatternError> {
        let mut broader = false;
        let mut spelled: Vec<&str> = Vec::new();
        let body = route.strip_prefix('/').unwrap_or(route);
        for seg in body.split('/') {
            let exact = is_placeholder(seg)
                || matches!(
                    Seg::parse(seg, Grammar::Pattern),
                    Ok(Seg::Literal(_) | Seg::Mixed(_))
                );
            broader |= !exact;
            spelled.push(if exact { seg } else { "*" });
        }
        if !broader {
            return Ok((RoutePattern::parse(route)?, false));
        }
        let lead = if route.starts_with('/') { "/" } else { "" };
        let pattern = RoutePattern::parse(&format!("{lead}{}", spelled.join("/")))?;
        Ok((pattern, true))
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn segments(&self) -> &[Seg] {
        &self.segments
    }

    pub fn has_rest(&self) -> bool {
        self.rest
    }

    /// Whether a request target (query and fragment ignored) fits the pattern.
    pub fn matches_path(&self, target: &str) -> bool {
        self.matches(target, Input::Path)
    }

    /// Whether a templated route fits the pattern.
    pub fn matches_route(&self, route: &str) -> bool {
        self.matches(route, Input::Route)
    }

    pub fn matches(&self, path: &str, input: Input) -> bool {
        let mut given = segments(path);
        for want in &self.segments {
            let Some(seg) = given.next() else {
                return false;
            };
            // A route's `{x}` is a value only a parameter stands for, never a literal.
            let placeholder_for_literal =
                input == Input::Route && is_placeholder(seg) && !matches!(want, Seg::Param(_));
            if placeholder_for_literal || !want.matches(seg) {
                return false;
            }
        }
        self.rest || given.next().is_none()
    }

    /// Equal for patterns that match exactly the same paths (`/a/{id}/` and `/a/*`, or
    /// `/f/{a}.json` and `/f/{b}.json`): parameters are written `{}`, literals as they
    /// are.
    pub fn shape_key(&self) -> String {
        let mut key = String::new();
        for seg in &self.segments {
            key.push('/');
            match seg {
                Seg::Literal(l) => key.push_str(l),
                Seg::Param(_) => key.push_str("{}"),
                Seg::Mixed(parts) => {
                    for p in parts {
                        match p {
                            Part::Literal(l) => key.push_str(l),
                            Part::Param(_) => key.push_str("{}"),
                        }
                    }
                }
            }
        }
        if self.rest {
            key.push_str("/**");
        }
        if key.is_empty() {
            key.push('/');
        }
        key
    }
}

impl FromStr for RoutePattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        RoutePattern::parse(s)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// An operator's `--route-pattern`, e.g. `/users/{id}/repos/{repo}`: its text is the route
/// of every path it matches, so it names one route shape, with named parameters (`*` and
/// `**` belong to policies, where a route is allowed rather than named).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct RouteTemplate(RoutePattern);

impl RouteTemplate {
    pub fn pattern(&self) -> &RoutePattern {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for RouteTemplate {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        let p = RoutePattern::parse(s)?;
        let wildcard = p.rest
            || p.segments
                .iter()
                .any(|seg| matches!(seg, Seg::Param(name) if name.is_empty()));
        if wildcard {
            return Err(PatternError {
                message: format!(
                    "route pattern {s:?} names one route: write its parameters as {{name}}, not * or **"
                ),
            });
        }
        Ok(RouteTemplate(p))
    }
}

impl TryFrom<String> for RouteTemplate {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, PatternError> {
        s.parse()
    }
}

impl fmt::Display for RouteTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
            ("/a/*.css", "whole segments"),
            ("/a/x*", "whole segments"),
            ("/a/{}", "enclose a parameter name"),
            ("/a/{b{c}}", "enclose a parameter name"),
            ("/a/{b", "enclose a parameter name"),
            ("/a/b}", "enclose a parameter name"),
        ] {
            let e = bad.parse::<RoutePattern>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(p("/a/{id}/**").to_string(), "/a/{id}/**");
        assert_eq!(p("/a/{id}/").shape_key(), p("/a/*").shape_key());
        assert_ne!(p("/a/{id}").shape_key(), p("/a/{id}/**").shape_key());
        assert_ne!(p("/").shape_key(), p("/**").shape_key());
        assert!(p("/a//b").matches_path("/a//b"));
    }

    /// Mixed segments are one grammar everywhere: a policy and an operator pattern can say
    /// `{id}.json` as a spec does.
    #[test]
    fn mixed_segments_match_linearly() {
        let pat = p("/tiles/{z}-{x}-{y}.png");
        assert!(pat.matches_path("/tiles/1-2-3.png"));
        assert!(pat.matches_path("/tiles/1-2-3-4.png"));
        assert!(!pat.matches_path("/tiles/1-2.png"));
        assert!(!pat.matches_path("/tiles/--.png"));
        assert!(!pat.matches_route("/tiles/{id}"));
        // A segment that would take exponential time to reject by backtracking.
        let hostile = format!("/tiles/{}", "-".repeat(65_536));
        assert!(!pat.matches_path(&hostile));
        let hostile = format!("/tiles/{}x.png", "1-".repeat(30_000));
        assert!(pat.matches_path(&hostile));
        assert_eq!(p("/f/{a}.json").shape_key(), p("/f/{b}.json").shape_key());
        assert_ne!(p("/f/{a}.json").shape_key(), p("/f/{a}").shape_key());
    }

    #[test]
    fn covering_patterns() {
        let c = |r: &str| {
            let (p, broader) = RoutePattern::covering(r).unwrap();
            (p.to_string(), broader)
        };
        assert_eq!(c("/users/{id}"), ("/users/{id}".into(), false));
        assert_eq!(c("/files/{id}.json"), ("/files/{id}.json".into(), false));
        assert_eq!(c("/a/*/b"), ("/a/*/b".into(), true));
        assert_eq!(c("/a/x*y"), ("/a/*".into(), true));
        assert_eq!(c("/a/{b"), ("/a/*".into(), true));
        assert_eq!(c("/a/**"), ("/a/*".into(), true));
        assert_eq!(c("/a//b/"), ("/a//b/".into(), false));
        assert!(RoutePattern::covering("*").is_err());
    }

    #[test]
    fn route_templates_name_one_shape() {
        for ok in [
            "/users/{id}/repos/{repo}",
            "/files/{name}.json",
            "/",
            "/a//b",
        ] {
            assert_eq!(ok.parse::<RouteTemplate>().unwrap().as_str(), ok);
        }
        for bad in [
            "users/{id}",
            "/u/{id",
            "/u?x=1",
            "/u/{{a}}",
            "/static/*",
            "/static/**",
        ] {
            assert!(bad.parse::<RouteTemplate>().is_err(), "{bad}");
        }
        let e = "/static/*"
            .parse::<RouteTemplate>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("{name}"), "{e}");
    }
}
