//! Saturation: the load generator as fast as it goes, rounds alternating no agent, empty
//! programs on the same hooks, and the agent.

use std::path::Path;

use anyhow::Result;

use super::{
    agent::{watched, Mode, Usage},
    load::{load, LoadResult, Tool},
    mean, BenchArgs,
};

/// One measurement with something attached.
struct Attached {
    load: LoadResult,
    usage: Usage,
    drops: f64,
    truncations: f64,
}

/// Runs `tool` against `url` under `mode`, reading the agent's counters around it.
fn attached(bin: &Path, mode: Mode, url: &str, tool: Tool, args: &BenchArgs) -> Result<Attached> {
    let (load, usage, agent) = watched(bin, mode, tool.protocol(), || {
        load(tool, url, args.duration, args)
    })?;
    Ok(Attached {
        load,
        usage,
        drops: agent.metric("monitor_ringbuf_drops_total"),
        truncations: agent.metric("monitor_truncations_total"),
    })
}

/// Alternates rounds of the three modes against `url` and prints the table.
pub(super) fn measure(
    name: &str,
    url: &str,
    tool: Tool,
    bin: &Path,
    args: &BenchArgs,
) -> Result<()> {
    // Warm up nginx and the page cache.
    let _ = load(tool, url, 1, args);
    let mut none = Vec::new();
    let mut floor = Vec::new();
    let mut with = Vec::new();
    for round in 1..=args.rounds {
        let base = load(tool, url, args.duration, args)?;
        eprintln!("{name} round {round}: no agent       {:.0} req/s", base.rps);
        none.push(base);
        let f = attached(bin, Mode::Floor, url, tool, args)?;
        eprintln!(
            "{name} round {round}: empty programs {:.0} req/s",
            f.load.rps
        );
        floor.push(f);
        let r = attached(bin, Mode::Agent, url, tool, args)?;
        eprintln!(
            "{name} round {round}: agent          {:.0} req/s, agent cpu {:.2}s, calls client {} server {}, drops {}",
            r.load.rps, r.usage.cpu_secs, r.usage.client_calls, r.usage.server_calls, r.drops
        );
        with.push(r);
    }
    let how = match tool {
        Tool::Wrk => format!(
            "wrk -t{} -c{} -d{}s",
            args.threads, args.connections, args.duration
        ),
        Tool::H2load => format!(
            "h2load -t{} -c{} -m10 -n{}",
            args.threads, args.connections, args.h2_requests
        ),
    };
    println!(
        "\nbenchmark ({name}): {how} against nginx `return 200` on loopback, {} rounds",
        args.rounds
    );
    print_table(&none, &floor, &with);
    Ok(())
}

fn print_table(none: &[LoadResult], floor: &[Attached], with: &[Attached]) {
    let rps_none = mean(none.iter().map(|w| w.rps));
    let rps_floor = mean(floor.iter().map(|w| w.load.rps));
    let rps_with = mean(with.iter().map(|w| w.load.rps));
    let completed: u64 = with.iter().map(|w| w.load.requests).sum();
    let floor_completed: u64 = floor.iter().map(|w| w.load.requests).sum();
    let sum = |v: &[Attached], f: fn(&Attached) -> f64| v.iter().map(f).sum::<f64>();
    let client = sum(with, |w| w.usage.client_calls);
    let server = sum(with, |w| w.usage.server_calls);
    let captured = client + server;
    let per_call = |secs: f64| secs * 1e6 / captured.max(1.0);
    let cpu = sum(with, |w| w.usage.cpu_secs);
    let kernel = sum(with, |w| w.usage.kernel_secs);
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| requests/s, no agent (mean) | {rps_none:.0} |");
    println!("| requests/s, empty programs on the same hooks (mean) | {rps_floor:.0} |");
    println!("| requests/s, agent (mean) | {rps_with:.0} |");
    println!(
        "| empty programs / no agent | {:.3} |",
        rps_floor / rps_none.max(1.0)
    );
    println!("| agent / no agent | {:.3} |", rps_with / rps_none.max(1.0));
    println!(
        "| **agent / empty programs** | **{:.3}** |",
        rps_with / rps_floor.max(1.0)
    );
    println!("| requests completed (load tool, with agent) | {completed} |");
    println!(
        "| client-role calls captured / completed | {:.4} |",
        client / completed.max(1) as f64
    );
    println!(
        "| server-role calls captured / completed | {:.4} |",
        server / completed.max(1) as f64
    );
    println!("| ring-buffer drops | {} |", sum(with, |w| w.drops));
    println!("| truncations | {} |", sum(with, |w| w.truncations));
    println!("| agent CPU (user+sys) | {cpu:.2} s |");
    println!("| agent CPU per captured call | {:.2} us |", per_call(cpu));
    println!(
        "| eBPF time per captured call (charged to nginx and the load tool) | {:.2} us |",
        per_call(kernel)
    );
    println!(
        "| empty programs' own run time per request | {:.3} us |",
        sum(floor, |w| w.usage.kernel_secs) * 1e6 / floor_completed.max(1) as f64
    );
    let tls_hits = sum(with, |w| w.usage.tls_hits);
    if tls_hits > 0.0 {
        println!(
            "| OpenSSL probe hits per request, both sides (entries and returns) | {:.2} |",
            tls_hits / completed.max(1) as f64
        );
    }
}
