//! The cost of one uprobe hit, by the instruction the probe sits on: a small C program
//! (`probe_cost.c`) calls one function in a tight loop, without a probe and with one
//! placed through tracefs (no eBPF program, so this is the kernel's own cost of the trap
//! and of emulating or single-stepping the instruction). It tells what the agent's
//! placement of its TLS probes (`monitor-agent/src/capture/probe_site.rs`) is worth on
//! the machine at hand.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::BenchArgs;
use crate::util;

const SOURCE: &str = include_str!("probe_cost.c");

/// (what the row means, function the loop calls, symbol the probe sits on, `p` for a
/// uprobe or `r` for a uretprobe).
const PLACEMENTS: &[(&str, &str, &str, char)] = &[
    (
        "entry `sub $0x18,%rsp` (single-stepped)",
        "sub",
        "pc_sub",
        'p',
    ),
    ("`push %r13` (emulated)", "push", "pc_push", 'p'),
    ("`js` (emulated)", "jcc", "pc_jcc_site", 'p'),
    ("`nop` (emulated)", "nop", "pc_nop", 'p'),
    ("`call` (emulated)", "call", "pc_call_site", 'p'),
    (
        "`ret` (single-stepped: Go's RET probes)",
        "ret",
        "pc_ret",
        'p',
    ),
    (
        "uretprobe on a `push` entry (entry + return)",
        "push",
        "pc_push",
        'r',
    ),
    (
        "uretprobe on a `sub` entry (entry + return)",
        "sub",
        "pc_sub",
        'r',
    ),
];

/// Calls per measurement without a probe, and with one (a single-stepped hit can cost
/// 10 µs under a hypervisor: 200,000 of them take 2 s).
const CALLS_BARE: u64 = 10_000_000;
const CALLS_PROBED: u64 = 200_000;

const GROUP: &str = "monitor_bench_probe_cost";

pub(super) fn measure(args: &BenchArgs, dir: &Path) -> Result<()> {
    let bin = build(dir)?;
    let symbols = symbols(&bin)?;
    let tracing = tracefs()?;
    println!(
        "\nbenchmark (probe cost): time per call of a tight loop, without and with one \
         tracefs uprobe, median of {} runs",
        args.rounds
    );
    println!("| probe on | ns per call, no probe | ns per call, probed | cost of one hit |");
    println!("| --- | --- | --- | --- |");
    for (what, function, symbol, kind) in PLACEMENTS {
        let offset = *symbols
            .iter()
            .find(|(s, _)| s == symbol)
            .map(|(_, o)| o)
            .with_context(|| format!("no symbol {symbol} in the probe-cost program"))?;
        let bare = median(args.rounds, || time_per_call(&bin, function, CALLS_BARE))?;
        let probe = Probe::place(&tracing, &bin, offset, *kind)?;
        let probed = median(args.rounds, || time_per_call(&bin, function, CALLS_PROBED))?;
        drop(probe);
        eprintln!("probe cost: {what}: {bare:.1} -> {probed:.1} ns per call");
        println!(
            "| {what} | {bare:.1} | {probed:.1} | {:.2} us |",
            (probed - bare) / 1000.0
        );
    }
    Ok(())
}

fn build(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("probe_cost.c");
    std::fs::write(&src, SOURCE)?;
    let bin = dir.join("probe_cost");
    util::run(Command::new("cc").args(["-O2", "-o"]).arg(&bin).arg(&src))
        .context("building the probe-cost program (cc)")?;
    Ok(bin)
}

/// (symbol, file offset) of the program's global text symbols. In a position-independent
/// executable from cc the text's addresses are its file offsets.
fn symbols(bin: &Path) -> Result<Vec<(String, u64)>> {
    let out = util::output(Command::new("nm").arg(bin))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let addr = u64::from_str_radix(w.next()?, 16).ok()?;
            matches!(w.next()?, "T" | "t").then_some(())?;
            Some((w.next()?.to_string(), addr))
        })
        .collect())
}

fn tracefs() -> Result<PathBuf> {
    for d in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(d).join("uprobe_events").exists() {
            return Ok(PathBuf::from(d));
        }
    }
    util::run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
        .context("tracefs is not mounted and cannot be")?;
    Ok(PathBuf::from("/sys/kernel/tracing"))
}

fn time_per_call(bin: &Path, function: &str, calls: u64) -> Result<f64> {
    let out = util::output(Command::new(bin).arg(function).arg(calls.to_string()))?;
    out.trim()
        .parse()
        .with_context(|| format!("probe-cost program printed {out:?}"))
}

fn median(n: u32, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut v = (0..n.max(1)).map(|_| f()).collect::<Result<Vec<f64>>>()?;
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// One tracefs uprobe, defined and enabled; removed on drop. Definitions are appended:
/// truncating `uprobe_events` would remove everyone's.
struct Probe {
    tracing: PathBuf,
}

impl Probe {
    fn place(tracing: &Path, bin: &Path, offset: u64, kind: char) -> Result<Probe> {
        // A definition left by an interrupted run would make this one fail.
        let _ = append(tracing, &format!("-:{GROUP}/site"));
        append(
            tracing,
            &format!("{kind}:{GROUP}/site {}:{offset:#x}", bin.display()),
        )?;
        let probe = Probe {
            tracing: tracing.to_path_buf(),
        };
        std::fs::write(tracing.join("events").join(GROUP).join("site/enable"), "1")
            .context("enabling the probe")?;
        Ok(probe)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let enable = self.tracing.join("events").join(GROUP).join("site/enable");
        let _ = std::fs::write(enable, "0");
        let _ = append(&self.tracing, &format!("-:{GROUP}/site"));
    }
}

fn append(tracing: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(tracing.join("uprobe_events"))
        .context("opening uprobe_events")?;
    if let Err(e) = writeln!(f, "{line}") {
        bail!("uprobe_events refused {line:?}: {e}");
    }
    Ok(())
}
