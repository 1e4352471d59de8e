//! `cargo xtask routes`: the whole route corpus replayed through the real agent, the
//! table of how its discovered routes compare with the APIs' own templates.
//!
//! `routes_eval [CORPUS] [--every N] [--seed S] [--offline [--as-made]]`; CORPUS defaults
//! to `../shared/routes-dev/urls.tsv` beside the workspace. `--offline` routes in process
//! (no kernel, no root) and prints predictions for the corpus's `score.py` instead.

use monitor_tests::{routes_corpus, workspace_root};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1)?.parse::<u64>().ok())
    };
    let file = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map_or_else(
            || workspace_root().join("../shared/routes-dev/urls.tsv"),
            |(_, a)| a.into(),
        );
    let every = usize::try_from(value("--every").unwrap_or(1)).unwrap_or(1);
    let requests = routes_corpus::load(&file, every, value("--seed").unwrap_or(1));
    if args.iter().any(|a| a == "--offline") {
        let as_made = args.iter().any(|a| a == "--as-made");
        print!("{}", routes_corpus::route_offline(&requests, as_made));
        return;
    }
    eprintln!(
        "replaying {} requests from {}",
        requests.len(),
        file.display()
    );
    let report = routes_corpus::replay(&requests);
    print!("{}", routes_corpus::table(&report));
}
