//! The route module's contract in one table, including every case where the places that
//! used to decide routes on their own disagreed, and property tests of its guarantees.

use std::{collections::HashMap, path::Path, sync::Arc};

use proptest::prelude::*;

use super::*;
use crate::{protocol::exchange::Protocol, spec::ServiceSpec};

/// Who reads the template: a spec (lenient), a policy (strict, wildcards) or an operator's
/// `--route-pattern` (strict, one shape).
#[derive(Clone, Copy, Debug)]
enum By {
    Spec,
    Policy,
    Operator,
}

/// Whether `template`, as `by` reads it, matches `path` read as `input`; `None` when `by`
/// refuses the template.
fn fits(by: By, template: &str, path: &str, input: Input) -> Option<bool> {
    let pattern = match by {
        By::Spec => RoutePattern::declared(template),
        By::Policy => template.parse().ok()?,
        By::Operator => template.parse::<RouteTemplate>().ok()?.pattern().clone(),
    };
    let direct = pattern.matches(path, input);
    let mut trie = Trie::default();
    trie.insert(&pattern, 0);
    assert_eq!(
        trie.find(path, input).is_some(),
        direct,
        "the trie and the pattern disagree on {template} / {path}"
    );
    Some(direct)
}

const P: Input = Input::Path;
const R: Input = Input::Route;

/// Who reads it, template, path, read as, whether it matches (`None`: refused), why.
type Row = (
    By,
    &'static str,
    &'static str,
    Input,
    Option<bool>,
    &'static str,
);

#[test]
fn the_route_table() {
    use By::*;
    #[rustfmt::skip]
    let table: &[Row] = &[
        // Query strings and fragments never count (the spec matcher used to keep fragments).
        (Spec, "/search", "/search?q=1", P, Some(true), "query ignored"),
        (Spec, "/search", "/search#top", P, Some(true), "fragment ignored"),
        (Policy, "/search", "/search/?q=/x/y", P, Some(true), "query with slashes"),
        (Operator, "/search", "/search#x", P, Some(true), "fragment ignored"),
        // One trailing slash is folded, everywhere (operator patterns used not to fold).
        (Spec, "/users", "/users/", P, Some(true), "trailing slash folded"),
        (Spec, "/users/", "/users", P, Some(true), "template's trailing slash folded"),
        (Policy, "/users", "/users/", P, Some(true), "trailing slash folded"),
        (Operator, "/users", "/users/", P, Some(true), "trailing slash folded"),
        (Spec, "/users/{id}", "/users//", P, Some(false), "only one trailing slash"),
        (Operator, "/users/{id}", "/users/", P, Some(false), "a folded slash is no value"),
        // The root.
        (Spec, "/", "/", P, Some(true), "root"),
        (Policy, "/", "/?x=1", P, Some(true), "root with query"),
        (Spec, "/users", "/", P, Some(false), "root is not a route"),
        (Spec, "/", "/users", P, Some(false), "root only matches root"),
        // Empty segments are kept: a literal empty segment matches, a parameter never does.
        (Policy, "/a//b", "/a//b", P, Some(true), "empty literal segment"),
        (Policy, "/orders/{id}/items", "/orders//items", P, Some(false), "empty value"),
        (Policy, "/orders/*/items", "/orders//items", P, Some(false), "empty value"),
        // Percent-encoding is compared as sent, never decoded.
        (Spec, "/a%20b", "/a%20b", P, Some(true), "encoded literal"),
        (Spec, "/a b", "/a%20b", P, Some(false), "no decoding"),
        (Policy, "/q/{v}", "/q/a%2Fb", P, Some(true), "%2F is no boundary"),
        // Placeholders: `{name}`, non-empty name. `{}` is text in a spec (the spec matcher
        // used to take it as a parameter) and an error in a pattern.
        (Spec, "/a/{}", "/a/x", P, Some(false), "{} is no parameter"),
        (Spec, "/a/{}", "/a/{}", P, Some(true), "{} is text"),
        (Policy, "/a/{}", "/a/x", P, None, "{} refused"),
        (Operator, "/a/{}", "/a/x", P, None, "{} refused"),
        // Unbalanced braces: text in a spec, an error in a pattern.
        (Spec, "/a/{b", "/a/{b", P, Some(true), "unbalanced brace is text"),
        (Spec, "/a/{b", "/a/x", P, Some(false), "unbalanced brace is text"),
        (Policy, "/a/{b", "/a/{b", P, None, "unbalanced brace refused"),
        // Mixed segments: one grammar for specs, policies and operator patterns (policies
        // and operator patterns used to refuse them).
        (Spec, "/files/{id}.json", "/files/42.json", P, Some(true), "mixed"),
        (Policy, "/files/{id}.json", "/files/42.json", P, Some(true), "mixed in a policy"),
        (Operator, "/files/{id}.json", "/files/42.json", P, Some(true), "mixed in a pattern"),
        (Spec, "/files/{id}.json", "/files/.json", P, Some(false), "mixed needs a value"),
        (Spec, "/r/{a}-{b}", "/r/x-y-z", P, Some(true), "leftmost literal"),
        (Spec, "/r/{a}-{b}", "/r/é-ü", P, Some(true), "values are characters"),
        (Spec, "/r/{a}{b}", "/r/x", P, Some(false), "two parameters, two characters"),
        (Spec, "/r/{a}{b}", "/r/xy", P, Some(true), "two parameters, two characters"),
        (Spec, "/x/{a}x{b}", "/x/1x2", P, Some(true), "{a}x{b} is mixed, not a placeholder"),
        // `*` is text in a spec, any one segment in a policy, refused in an operator
        // pattern (which names a route; it used to be a literal `*` there).
        (Spec, "/a/*", "/a/*", P, Some(true), "* is text in a spec"),
        (Spec, "/a/*", "/a/b", P, Some(false), "* is text in a spec"),
        (Policy, "/a/*", "/a/b", P, Some(true), "* is a wildcard in a policy"),
        (Operator, "/a/*", "/a/b", P, None, "* refused in a route pattern"),
        (Policy, "/static/**", "/static", P, Some(true), "** includes none"),
        (Policy, "/static/**", "/static/a/b.css", P, Some(true), "** any remainder"),
        (Policy, "/static/**", "/staticx", P, Some(false), "** is whole segments"),
        (Policy, "/a/**/b", "/a/x/b", P, None, "** must be last"),
        (Operator, "/static/**", "/static/a", P, None, "** refused in a route pattern"),
        // A route's `{x}` stands for unknown values: only a parameter or `**` may accept
        // it. A path's `{x}` is a value like any other.
        (Spec, "/users/me", "/users/{id}", R, Some(false), "placeholder is not a literal"),
        (Spec, "/users/{userId}", "/users/{id}", R, Some(true), "placeholder fits parameter"),
        (Spec, "/files/{name}.json", "/files/{id}", R, Some(false), "nor a mixed segment"),
        (Policy, "/users/**", "/users/{id}/orders", R, Some(true), "** takes placeholders"),
        (Policy, "/users/{x}", "/users/{id}", P, Some(true), "a path's {x} is a value"),
        // Case and length.
        (Policy, "/api/v1/orders", "/api/v1/Orders", P, Some(false), "case-sensitive"),
        (Policy, "/api/v1/orders", "/api/v1/orders/1", P, Some(false), "more segments"),
        (Policy, "/api/v1/orders", "/api/v1", P, Some(false), "fewer segments"),
    ];
    for (by, template, path, input, want, why) in table {
        assert_eq!(
            fits(*by, template, path, *input),
            *want,
            "{why}: {by:?} {template} against {path} as {input:?}"
        );
    }
}

#[test]
fn placeholders_and_segments() {
    for (seg, want) in [
        ("{id}", true),
        ("{param}", true),
        ("{}", false),
        ("{a}x{b}", false),
        ("{a{b}}", false),
        ("id", false),
        ("{id", false),
    ] {
        assert_eq!(is_placeholder(seg), want, "{seg}");
    }
    for (path, n) in [
        ("/", 0),
        ("", 0),
        ("/a", 1),
        ("/a/", 1),
        ("/a//", 2),
        ("/a//b", 3),
        ("/a/b?x=/c/d", 2),
        ("*", 1),
    ] {
        assert_eq!(segment_count(path), n, "{path}");
        assert_eq!(segments(path).count(), n, "{path}");
    }
    assert_eq!(path_of("/a/b?x=1#f"), "/a/b");
    assert_eq!(path_of("/a#f?x"), "/a");
    assert_eq!(path_of("*"), "*");
}

const USERS: &str = r#"
openapi: 3.0.3
info: {title: users, version: "1"}
servers: [{url: "http://localhost/api"}]
paths:
  /users/{userId}:
    get: {operationId: getUser, responses: {"200": {description: ok}}}
  /users/me:
    get: {operationId: me, responses: {"200": {description: ok}}}
  /files/{name}.json:
    put: {operationId: putFile, responses: {"200": {description: ok}}}
"#;

fn router(patterns: &[&str], limit: usize) -> Router {
    let patterns = patterns.iter().map(|p| p.parse().unwrap()).collect();
    let mut r = Router::new(patterns, limit);
    let spec = ServiceSpec::from_str("users", Path::new("u.yaml"), USERS).unwrap();
    r.set_specs(HashMap::from([("users".to_string(), Arc::new(spec))]));
    r
}

#[test]
fn the_router_decides_spec_then_pattern_then_heuristics() {
    let mut r = router(
        &["/api/users/{who}/avatar", "/api/files/{f}", "/tags/{tag}"],
        50,
    );
    let complete = RouteKind::Complete;
    #[rustfmt::skip]
    let cases = [
        ("users", "GET", "/api/users/42?x=1", complete, "/api/users/{userId}"),
        ("users", "GET", "/api/users/me", complete, "/api/users/me"),
        // An undeclared method on a declared path is filed under the declared path.
        ("users", "DELETE", "/api/users/7", complete, "/api/users/{userId}"),
        ("users", "GET", "/api/files/a.json", complete, "/api/files/{name}.json"),
        // No declared template: the operator's pattern, most specific first.
        ("users", "GET", "/api/users/42/avatar", complete, "/api/users/{who}/avatar"),
        ("users", "GET", "/api/files/readme", complete, "/api/files/{f}"),
        ("other", "GET", "/tags/rust/", complete, "/tags/{tag}"),
        // Neither: heuristics.
        ("other", "GET", "/orders/42/items", complete, "/orders/{id}/items"),
        ("other", "GET", "/orders/42/items/", complete, "/orders/{id}/items/"),
        // A call not fully decoded is templated but never matched or learned from.
        ("users", "GET", "/api/users/42", RouteKind::Partial, "/api/users/{id}"),
        // gRPC method paths are routes as they are.
        ("users", "POST", "/demo.Greeter/SayHello", RouteKind::Rpc, "/demo.Greeter/SayHello"),
        ("users", "POST", "/pkg.S/M?x", RouteKind::Rpc, "/pkg.S/M"),
    ];
    for (service, method, path, kind, want) in cases {
        let got = r.route(service, method, path, kind);
        assert_eq!(got.route, want, "{service} {method} {path}");
        assert!(!got.rerouted);
    }
    assert_eq!(
        RouteKind::of(Protocol::Grpc, false),
        RouteKind::Rpc,
        "gRPC is never templated"
    );
    assert_eq!(RouteKind::of(Protocol::Http2, false), RouteKind::Partial);
    assert_eq!(RouteKind::of(Protocol::Http1, true), RouteKind::Complete);
}

#[test]
fn the_router_discovers_routes_and_says_when_they_change() {
    let mut r = router(&[], 50);
    let mut rerouted = 0;
    let names = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    for (i, name) in names.iter().enumerate() {
        let sub = ["repos", "followers", "starred"][i % 3];
        let routed = r.route("s", "GET", &format!("/u/{name}/{sub}"), RouteKind::Complete);
        rerouted += usize::from(routed.rerouted);
    }
    assert_eq!(rerouted, 1, "worked out once, at the eighth distinct path");
    let routed = r.route("s", "GET", "/u/zed/repos", RouteKind::Complete);
    assert_eq!(routed.route, "/u/{param}/repos");
    // Calls of one route share one copy of it.
    let again = r.route("s", "GET", "/u/yan/repos", RouteKind::Complete);
    assert!(again.route.is_shared_with(&routed.route));
    assert_eq!(
        r.reroute("s", "GET", "/u/alice/starred"),
        "/u/{param}/starred"
    );
    // Partial calls never teach the router.
    for i in 0..10 {
        let got = r.route("t", "GET", &format!("/p/n{i}x"), RouteKind::Partial);
        assert!(!got.rerouted);
    }
    assert_eq!(
        r.route("t", "GET", "/p/a", RouteKind::Complete).route,
        "/p/a"
    );
}

/// Paths a workload could send: any depth, any segment text, up to 64 KiB.
fn hostile_path() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec("[a-z0-9{}*.%-]{0,12}", 0..64)
            .prop_map(|s| format!("/{}", s.join("/"))),
        (1usize..65_536).prop_map(|n| "/".repeat(n)),
        (1usize..32_768).prop_map(|n| format!("/tiles/{}", "-".repeat(n))),
        (1usize..16_384).prop_map(|n| "/a".repeat(n)),
        "[ -~]{0,200}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The router never changes how many segments a path has, whatever decided its route.
    #[test]
    fn routes_keep_the_segment_count(path in hostile_path(), svc in 0usize..3) {
        let mut r = router(
            &["/tiles/{z}-{x}-{y}.png", "/a/{b}/a", "/{x}/{y}"],
            2,
        );
        let service = ["users", "other", "third"][svc];
        for kind in [RouteKind::Complete, RouteKind::Partial, RouteKind::Rpc] {
            let routed = r.route(service, "GET", &path, kind);
            prop_assert_eq!(
                segment_count(&routed.route),
                segment_count(&path),
                "{:?} {} -> {}", kind, path, routed.route
            );
        }
    }

    /// A template always matches the paths made by filling in its parameters.
    #[test]
    fn templates_match_the_paths_they_generate(
        shape in proptest::collection::vec(
            prop_oneof![
                "[a-z0-9._-]{0,8}".prop_map(|l| (l, None::<String>)),
                ("[a-z]{1,4}", "[a-z]{0,3}", "[!-.0-~&&[^/?#{}*]]{1,12}")
                    .prop_map(|(name, lit, v)| (format!("{{{name}}}{lit}"), Some(format!("{v}{lit}")))),
                ("[a-z]{1,4}", "[a-z.-]{1,3}", "[!-.0-~&&[^/?#{}*]]{1,12}", "[!-.0-~&&[^/?#{}*]]{1,12}")
                    .prop_map(|(name, lit, a, b)| (
                        format!("{{{name}}}{lit}{{{name}2}}"),
                        Some(format!("{a}{lit}{b}")),
                    )),
            ],
            1..12,
        ),
    ) {
        let template = format!("/{}", shape.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join("/"));
        let path = format!("/{}", shape.iter().map(|(t, v)| v.as_deref().unwrap_or(t)).collect::<Vec<_>>().join("/"));
        let pattern: RoutePattern = template.parse().unwrap();
        prop_assert!(pattern.matches_path(&path), "{} does not match {}", template, path);
        prop_assert!(RoutePattern::declared(&template).matches_path(&path));
        let mut trie = Trie::default();
        trie.insert(&pattern, 7);
        prop_assert_eq!(trie.find(&path, Input::Path), Some(7));
        let op: RouteTemplate = template.parse().unwrap();
        let mut r = Router::new(vec![op], 0);
        prop_assert_eq!(r.route("s", "GET", &path, RouteKind::Complete).route, template);
    }
}
