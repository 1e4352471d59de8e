//! End-to-end: route discovery on half of the route corpus (`../shared/routes-dev`),
//! replayed through the real agent with each API on its own port and no spec. A
//! regression guard: the floors sit below what the whole corpus measures (`cargo xtask
//! routes`, figures in BENCHMARKS.md), so a change that makes routes clearly worse fails.

use monitor_tests::{routes_corpus, workspace_root};

#[test]
fn discovered_routes_find_the_apis_templates() {
    let corpus = workspace_root().join("../shared/routes-dev/urls.tsv");
    let requests = routes_corpus::load(&corpus, 2, 1);
    assert!(
        requests.len() > 10_000,
        "the corpus is incomplete: {}",
        requests.len()
    );
    let report = routes_corpus::replay(&requests);
    let table = routes_corpus::table(&report);
    eprintln!("{table}");
    let total = &report["TOTAL"];
    assert!(
        total.final_accuracy() >= 0.88,
        "final inventory below the floor:\n{table}"
    );
    assert!(
        total.made_accuracy() >= 0.85,
        "routes as made below the floor:\n{table}"
    );
    assert!(
        total.endpoints_per_operation() <= 1.25,
        "too many endpoints:\n{table}"
    );
    for (api, score) in &report {
        assert!(
            score.final_accuracy() >= 0.7,
            "{api} below the floor:\n{table}"
        );
    }
}
