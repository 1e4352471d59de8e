//! Fixed rate: oha sends a set number of requests per second whatever the answers' pace
//! (open loop, with latency correction, so a stall counts against every request it
//! delayed), and the latency percentiles say what the agent adds to each request at a
//! load the machine can carry.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{
    agent::{watched, Mode},
    mean, BenchArgs,
};
use crate::util;

/// Connections oha spreads the rate over.
const CONNECTIONS: u32 = 32;

/// What one oha run reports.
struct Latency {
    requests: u64,
    p50: f64,
    p99: f64,
    p999: f64,
}

/// One measurement: the latencies, and with an agent its CPU and calls.
struct Round {
    latency: Latency,
    cpu_secs: f64,
    captured: f64,
}

pub(super) fn measure(url: &str, oha: &Path, bin: &Path, args: &BenchArgs) -> Result<()> {
    let mut rounds: [Vec<Round>; 3] = Default::default();
    let modes = [Mode::None, Mode::Floor, Mode::Agent];
    for round in 1..=args.rounds {
        for (i, mode) in modes.into_iter().enumerate() {
            let r = one(url, oha, bin, mode, args)?;
            eprintln!(
                "fixed rate round {round}: {:<14} p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us",
                mode.label(),
                r.latency.p50 * 1e6,
                r.latency.p99 * 1e6,
                r.latency.p999 * 1e6
            );
            rounds[i].push(r);
        }
    }
    println!(
        "\nbenchmark (fixed rate): oha -q {} -c {CONNECTIONS} -z {}s --latency-correction against nginx `return 200` on loopback, {} rounds",
        args.rate, args.duration, args.rounds
    );
    println!("| measure | no agent | empty programs | agent |");
    println!("| --- | --- | --- | --- |");
    let row = |name: &str, f: fn(&Latency) -> f64| {
        let [a, b, c] = [0, 1, 2].map(|i| mean(rounds[i].iter().map(|r| f(&r.latency) * 1e6)));
        println!("| {name} (mean of rounds) | {a:.0} us | {b:.0} us | {c:.0} us |");
        c - a
    };
    row("p50 latency", |l| l.p50);
    let added_p99 = row("p99 latency", |l| l.p99);
    row("p99.9 latency", |l| l.p999);
    let agent = &rounds[2];
    let completed: u64 = agent.iter().map(|r| r.latency.requests).sum();
    let captured: f64 = agent.iter().map(|r| r.captured).sum();
    let cpu: f64 = agent.iter().map(|r| r.cpu_secs).sum();
    println!("\n| measure | value |");
    println!("| --- | --- |");
    println!("| **p99 latency the agent adds** | **{added_p99:.0} us** |");
    println!(
        "| agent CPU per request (two captured calls) | {:.2} us |",
        cpu * 1e6 / completed.max(1) as f64
    );
    println!(
        "| calls captured / (2 x completed) | {:.4} |",
        captured / (2 * completed.max(1)) as f64
    );
    Ok(())
}

fn one(url: &str, oha: &Path, bin: &Path, mode: Mode, args: &BenchArgs) -> Result<Round> {
    if mode == Mode::None {
        return Ok(Round {
            latency: run_oha(url, oha, args)?,
            cpu_secs: 0.0,
            captured: 0.0,
        });
    }
    let (latency, usage, _agent) = watched(bin, mode, "http/1.1", || run_oha(url, oha, args))?;
    Ok(Round {
        latency,
        cpu_secs: usage.cpu_secs,
        captured: usage.client_calls + usage.server_calls,
    })
}

fn run_oha(url: &str, oha: &Path, args: &BenchArgs) -> Result<Latency> {
    let out = util::output(
        Command::new(oha)
            .args([
                "--no-tui",
                "--output-format",
                "json",
                "--latency-correction",
            ])
            .arg("-q")
            .arg(args.rate.to_string())
            .arg("-c")
            .arg(CONNECTIONS.to_string())
            .arg("-z")
            .arg(format!("{}s", args.duration))
            .arg(url),
    )?;
    let v: Value = serde_json::from_str(&out).context("oha's JSON output")?;
    let pct = |k: &str| {
        v["latencyPercentiles"][k]
            .as_f64()
            .with_context(|| format!("no {k} in oha's output: {out}"))
    };
    let requests = v["statusCodeDistribution"]["200"]
        .as_u64()
        .with_context(|| format!("no 200 count in oha's output: {out}"))?;
    Ok(Latency {
        requests,
        p50: pct("p50")?,
        p99: pct("p99")?,
        p999: pct("p99.9")?,
    })
}
