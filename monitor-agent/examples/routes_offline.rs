//! Route discovery on a corpus of requests, in process and without the kernel: reads
//! `api<TAB>method<TAB>path[<TAB>...]` lines, routes each (every api a service, in a shuffled
//! but fixed order, as traffic interleaves), and writes `api<TAB>method<TAB>path<TAB>route`
//! with the route the final routes give (or, with `--as-made`, the route each call got when
//! it was made). For developing the discovery quickly; `cargo xtask routes` measures the
//! real agent.
//!
//! `cargo run --release --example routes_offline -- ../shared/routes-dev/urls.tsv > pred.tsv`

use std::io::{BufRead, Write};

use monitor_agent::route::{RouteKind, Router};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let as_made = args.iter().any(|a| a == "--as-made");
    let file = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .expect("usage: routes_offline FILE [--as-made] [--seed N]");
    let seed: u64 = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1);
    let mut lines: Vec<Vec<String>> = std::io::BufReader::new(std::fs::File::open(file)?)
        .lines()
        .map_while(Result::ok)
        .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    shuffle(&mut lines, seed);
    let mut router = Router::new(Vec::new(), 50);
    let mut made = Vec::with_capacity(lines.len());
    for f in &lines {
        made.push(router.route(&f[0], &f[1], &f[2], RouteKind::Complete).route);
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    for (f, at_the_time) in lines.iter().zip(made) {
        let route = if as_made {
            at_the_time
        } else {
            router.reroute(&f[0], &f[1], &at_the_time)
        };
        writeln!(out, "{}\t{}\t{}\t{}", f[0], f[1], f[2], route)?;
    }
    Ok(())
}

/// Fisher-Yates with a small xorshift generator: the same order for the same seed.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = usize::try_from(x % (i as u64 + 1)).unwrap_or(0);
        v.swap(i, j);
    }
}
