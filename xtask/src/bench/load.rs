//! The saturating load generators: wrk (HTTP/1.1, for a fixed time) and h2load (HTTP/2,
//! for a fixed count, so that every request it starts also completes). The fixed-rate
//! case drives oha itself (`fixed_rate`).

use std::process::Command;

use anyhow::{Context, Result};

use super::BenchArgs;
use crate::util;

/// Which load generator drives a case, and so which protocol the agent counts.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Tool {
    Wrk,
    H2load,
}

impl Tool {
    pub(crate) fn protocol(self) -> &'static str {
        match self {
            Tool::Wrk => "http/1.1",
            Tool::H2load => "http/2",
        }
    }
}

pub(crate) struct LoadResult {
    pub(crate) requests: u64,
    pub(crate) rps: f64,
}

pub(crate) fn load(tool: Tool, url: &str, secs: u64, args: &BenchArgs) -> Result<LoadResult> {
    match tool {
        Tool::Wrk => wrk(url, secs, args),
        // The warm-up (one second of wrk) becomes a tenth of the requests here.
        Tool::H2load if secs == 1 => h2load(url, (args.h2_requests / 10).max(1000), args),
        Tool::H2load => h2load(url, args.h2_requests, args),
    }
}

/// `h2load -n`: every started request completes, so captured/completed is exact.
fn h2load(url: &str, n: u64, args: &BenchArgs) -> Result<LoadResult> {
    let out = util::output(
        Command::new("h2load")
            .arg(format!("-t{}", args.threads))
            .arg(format!("-c{}", args.connections))
            .args(["-m", "10", "-n"])
            .arg(n.to_string())
            .arg(url),
    )?;
    let requests = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("requests:")?
                .split(',')
                .find_map(|p| p.trim().strip_suffix(" succeeded"))?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("no succeeded count in h2load output: {out}"))?;
    let rps = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("finished in ")?
                .split(", ")
                .nth(1)?
                .strip_suffix(" req/s")?
                .parse()
                .ok()
        })
        .with_context(|| format!("no req/s in h2load output: {out}"))?;
    Ok(LoadResult { requests, rps })
}

fn wrk(url: &str, secs: u64, args: &BenchArgs) -> Result<LoadResult> {
    let out = util::output(
        Command::new("wrk")
            .arg(format!("-t{}", args.threads))
            .arg(format!("-c{}", args.connections))
            .arg(format!("-d{}s", secs.max(1)))
            .arg(url),
    )?;
    let requests = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .and_then(|(n, _)| n.trim().parse().ok())
        })
        .with_context(|| format!("no request count in wrk output: {out}"))?;
    let rps = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Requests/sec:")
                .and_then(|v| v.trim().parse().ok())
        })
        .with_context(|| format!("no Requests/sec in wrk output: {out}"))?;
    Ok(LoadResult { requests, rps })
}
