//! Discovery on synthetic services: what must become a parameter, what must stay literal,
//! and the guarantees (revisable, order-independent, bounded).

use proptest::prelude::*;

use super::*;
use crate::route::RoutePattern;

/// Routes `paths` in order through one service; the final route of each.
fn discover(paths: &[String]) -> (Discovery, Vec<String>) {
    let mut d = Discovery::new(50);
    let made: Vec<String> = paths
        .iter()
        .map(|p| d.route("svc", "GET", p).0.to_string())
        .collect();
    let fin = made.iter().map(|r| d.reroute("svc", r)).collect();
    (d, fin)
}

fn route_of(d: &mut Discovery, path: &str) -> String {
    let made = d.route("svc", "GET", path).0;
    d.reroute("svc", &made)
}

/// A small deterministic generator, so that tests need no seed plumbing.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[usize::try_from(self.next() % from.len() as u64).unwrap()]
    }
    fn name(&mut self) -> String {
        let a = self.pick(&[
            "red", "blue", "fast", "tiny", "brave", "calm", "wild", "shy",
        ]);
        let b = self.pick(&["fox", "owl", "cat", "yak", "emu", "elk", "bee", "ant"]);
        format!("{a}-{b}{}", self.next() % 100)
    }
}

#[test]
fn nested_resources_with_numeric_ids() {
    let mut g = Gen(7);
    let mut paths = Vec::new();
    for _ in 0..60 {
        let (u, o) = (g.next() % 10_000, g.next() % 10_000);
        paths.push(format!("/api/v1/users/{u}/orders/{o}"));
        paths.push(format!("/api/v1/users/{u}"));
        paths.push("/api/v1/users".to_string());
    }
    let (_, fin) = discover(&paths);
    assert_eq!(fin[0], "/api/v1/users/{id}/orders/{id}");
    assert_eq!(fin[1], "/api/v1/users/{id}");
    assert_eq!(fin[2], "/api/v1/users");
}

#[test]
fn names_used_as_identifiers_become_parameters_and_literal_siblings_stay() {
    let mut g = Gen(11);
    let mut paths = Vec::new();
    for i in 0..200 {
        let (owner, repo) = (g.name(), g.name());
        let op = g.pick(&["pulls", "issues", "branches", "tags", "commits"]);
        paths.push(format!("/repos/{owner}/{repo}/{op}"));
        if i % 3 == 0 {
            paths.push("/repos/search".to_string());
        }
    }
    let (mut d, fin) = discover(&paths);
    let op = paths[0].rsplit('/').next().unwrap();
    assert_eq!(fin[0], format!("/repos/{{param}}/{{param}}/{op}"));
    assert_eq!(route_of(&mut d, "/repos/search"), "/repos/search");
    assert_eq!(
        route_of(&mut d, "/repos/zed/zz/tags"),
        "/repos/{param}/{param}/tags"
    );
}

/// Actions below a name parameter, each followed by user names of which a few recur by
/// chance under every action: the actions stay literal.
#[test]
fn values_recurring_below_literals_do_not_make_them_a_parameter() {
    let mut g = Gen(23);
    let mut paths = Vec::new();
    for i in 0..300 {
        let org = g.name();
        let op = g.pick(&["blocks", "members", "public_members", "teams", "hooks"]);
        let user = if i % 4 == 0 {
            g.pick(&["alice", "bob", "carol"]).to_string()
        } else {
            g.name()
        };
        paths.push(format!("/orgs/{org}/{op}/{user}"));
        paths.push(format!("/orgs/{org}/{op}"));
    }
    let (mut d, _) = discover(&paths);
    assert_eq!(
        route_of(&mut d, "/orgs/acme/blocks/zed-yak7"),
        "/orgs/{param}/blocks/{param}"
    );
    assert_eq!(route_of(&mut d, "/orgs/acme/teams"), "/orgs/{param}/teams");
}

#[test]
fn collections_and_versions_stay_literal() {
    let mut g = Gen(3);
    let mut paths = Vec::new();
    for _ in 0..40 {
        for v in ["v1", "v2"] {
            for c in ["users", "groups", "apps", "roles"] {
                paths.push(format!("/{v}/{c}/{}", g.next() % 100_000));
                paths.push(format!("/{v}/{c}/{}/members", g.next() % 100_000));
            }
        }
    }
    let (mut d, _) = discover(&paths);
    assert_eq!(route_of(&mut d, "/v2/roles/77"), "/v2/roles/{id}");
    assert_eq!(
        route_of(&mut d, "/v1/apps/5/members"),
        "/v1/apps/{id}/members"
    );
    assert_eq!(route_of(&mut d, "/v1/users"), "/v1/users");
}

#[test]
fn a_shared_base_path_stays_literal_whatever_it_looks_like() {
    let mut g = Gen(5);
    let paths: Vec<String> = (0..100)
        .map(|_| {
            let sid = format!("AC{:032x}", g.next());
            let what = g.pick(&["Messages", "Calls", "Recordings"]);
            format!("/2010-04-01/Accounts/{sid}/{what}.json")
        })
        .collect();
    let (_, fin) = discover(&paths);
    let want = format!(
        "/2010-04-01/Accounts/{{hex}}/{}",
        paths[0].rsplit('/').next().unwrap()
    );
    assert_eq!(fin[0], want);
}

#[test]
fn a_literal_sibling_requested_often_stays_beside_identifiers() {
    let mut g = Gen(9);
    let mut paths = Vec::new();
    for _ in 0..100 {
        paths.push(format!("/containers/{:064x}", u128::from(g.next())));
        paths.push(format!("/containers/{:064x}/logs", u128::from(g.next())));
        paths.push("/containers/json".to_string());
    }
    let (mut d, _) = discover(&paths);
    assert_eq!(route_of(&mut d, "/containers/json"), "/containers/json");
    assert_eq!(
        route_of(&mut d, "/containers/0123456789abcdef0123/logs"),
        "/containers/{hex}/logs"
    );
}

#[test]
fn a_parameter_framed_by_a_suffix() {
    let mut g = Gen(13);
    let mut paths = Vec::new();
    for _ in 0..50 {
        paths.push(format!("/posts/{}.json", g.next() % 100_000));
        paths.push(format!("/t/{}/posts.json", g.next() % 100_000));
    }
    let (mut d, _) = discover(&paths);
    assert_eq!(route_of(&mut d, "/posts/123.json"), "/posts/{id}.json");
    assert_eq!(route_of(&mut d, "/t/9/posts.json"), "/t/{id}/posts.json");
}

#[test]
fn few_distinct_leaves_stay_literal() {
    let mut paths = Vec::new();
    for _ in 0..20 {
        for op in ["health", "version", "info", "metrics", "ready"] {
            paths.push(format!("/admin/{op}"));
        }
    }
    let (_, fin) = discover(&paths);
    assert_eq!(
        &fin[..5],
        [
            "/admin/health",
            "/admin/version",
            "/admin/info",
            "/admin/metrics",
            "/admin/ready"
        ]
    );
}

#[test]
fn a_merge_later_traffic_contradicts_is_split_again() {
    let mut d = Discovery::new(50);
    let ops = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    for op in ops {
        d.route("svc", "GET", &format!("/jobs/{op}"));
    }
    // Eight names seen once each: an open position, for now.
    assert_eq!(route_of(&mut d, "/jobs/alpha"), "/jobs/{param}");
    // The same few names again and again, and no new ones: literals after all.
    for _ in 0..20 {
        for op in ops {
            d.route("svc", "GET", &format!("/jobs/{op}"));
        }
    }
    d.look_all();
    assert_eq!(route_of(&mut d, "/jobs/alpha"), "/jobs/alpha");
    assert_eq!(d.reroute("svc", "/jobs/{param}"), "/jobs/{param}");
}

#[test]
fn the_order_of_arrival_does_not_change_the_result() {
    let mut g = Gen(17);
    let mut paths = Vec::new();
    for _ in 0..300 {
        let owner = g.name();
        let op = g.pick(&["profile", "keys", "repos", "followers"]);
        paths.push(format!("/users/{owner}/{op}"));
        paths.push(format!("/orgs/{}/members", g.next() % 1000));
    }
    let mut reversed = paths.clone();
    reversed.reverse();
    let (mut a, _) = discover(&paths);
    let (mut b, _) = discover(&reversed);
    a.look_all();
    b.look_all();
    for p in ["/users/zed/keys", "/orgs/5/members", "/users/al/repos"] {
        assert_eq!(route_of(&mut a, p), route_of(&mut b, p), "{p}");
    }
    assert_eq!(route_of(&mut a, "/users/zed/keys"), "/users/{param}/keys");
}

#[test]
fn a_declared_literal_is_never_made_a_parameter() {
    let mut d = Discovery::new(50);
    let declared = [
        RoutePattern::declared("/jobs/alpha"),
        RoutePattern::declared("/jobs/{id}/log"),
    ];
    d.set_declared("svc", Some(Declared::new(declared.iter())));
    for op in [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    ] {
        d.route("svc", "GET", &format!("/jobs/{op}"));
    }
    assert_eq!(route_of(&mut d, "/jobs/alpha"), "/jobs/alpha");
    assert_eq!(route_of(&mut d, "/jobs/juliet"), "/jobs/{param}");
}

#[test]
fn observed_paths_stay_within_their_budget() {
    let before = crate::limits::Limit::RouteTree.count();
    let mut d = Discovery::with_budget(50, 64 * 1024);
    for i in 0..5000 {
        d.route(
            &format!("svc{}", i % 7),
            "GET",
            &format!("/a{i}/{}/b/{i}", "x".repeat(50)),
        );
        assert!(d.held_bytes() <= 64 * 1024, "{}", d.held_bytes());
    }
    assert!(crate::limits::Limit::RouteTree.count() > before);
    // One position keeps a bounded sample of its values, and says so.
    let samples = crate::limits::Limit::RouteSamples.count();
    let mut d = Discovery::new(50);
    for i in 0..(observed::MAX_VALUES + 10) {
        d.route("svc", "GET", &format!("/u/{i}x"));
    }
    assert!(crate::limits::Limit::RouteSamples.count() >= samples + 10);
    assert_eq!(route_of(&mut d, "/u/anything"), "/u/{param}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever a workload sends, routes keep the path's segments and never panic.
    #[test]
    fn hostile_paths_keep_their_segments(
        paths in proptest::collection::vec(
            proptest::collection::vec("[a-z0-9{}.%:_-]{0,10}", 0..12)
                .prop_map(|s| format!("/{}", s.join("/"))),
            1..80,
        ),
    ) {
        let mut d = Discovery::new(5);
        for p in &paths {
            let (route, _) = d.route("svc", "GET", p);
            prop_assert_eq!(route.split('/').count(), p.split('/').count());
        }
        d.look_all();
        for p in &paths {
            let r = d.reroute("svc", p);
            prop_assert_eq!(r.split('/').count(), p.split('/').count());
        }
    }
}
