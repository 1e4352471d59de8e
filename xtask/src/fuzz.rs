//! `cargo xtask fuzz`: builds every cargo-fuzz target of the agent once, then runs each for
//! a bounded time on its committed corpus. The test command runs it briefly; a developer
//! runs it for minutes (`--seconds 600`) and minimises what was found into the corpus.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::util::{self, output, workspace_root};

const CARGO_FUZZ_VERSION: &str = "0.13.2";

#[derive(Args)]
pub(crate) struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Targets to run (all when none is named).
    pub targets: Vec<String>,
}

/// Where the fuzz crate lives, and where its build and scratch files go (never the
/// committed corpus: new inputs are written to a scratch directory read before it).
struct Paths {
    fuzz_dir: PathBuf,
    target_dir: PathBuf,
}

impl Paths {
    fn new() -> Paths {
        let root = workspace_root();
        Paths {
            fuzz_dir: root.join("monitor-agent/fuzz"),
            target_dir: root.join("target/fuzz"),
        }
    }

    fn cargo_fuzz(&self, verb: &str) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.args(["+nightly", "fuzz", verb, "--fuzz-dir"])
            .arg(&self.fuzz_dir)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .current_dir(workspace_root().join("monitor-agent"));
        if verb != "list" {
            cmd.arg("--target-dir").arg(&self.target_dir);
        }
        cmd
    }
}

pub(crate) fn run(args: &FuzzArgs) -> Result<()> {
    install()?;
    let paths = Paths::new();
    let all: Vec<String> = output(&mut paths.cargo_fuzz("list"))?
        .lines()
        .map(str::to_string)
        .collect();
    let targets = if args.targets.is_empty() {
        all.clone()
    } else {
        args.targets.clone()
    };
    if let Some(unknown) = targets.iter().find(|t| !all.contains(t)) {
        bail!(
            "no fuzz target {unknown:?}; the targets are: {}",
            all.join(", ")
        );
    }
    eprintln!("xtask: building {} fuzz targets", all.len());
    util::run(&mut paths.cargo_fuzz("build")).context("building the fuzz targets failed")?;
    for t in &targets {
        run_one(&paths, t, args.seconds)?;
    }
    Ok(())
}

fn run_one(paths: &Paths, target: &str, seconds: u64) -> Result<()> {
    let scratch = paths.target_dir.join("corpus").join(target);
    let artifacts = paths.target_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&scratch)?;
    std::fs::create_dir_all(&artifacts)?;
    eprintln!("xtask: fuzzing {target} for {seconds} s");
    let mut cmd = paths.cargo_fuzz("run");
    cmd.arg(target)
        .arg(&scratch)
        .arg(paths.fuzz_dir.join("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // A single input that takes seconds is a hang on the data path, not slowness.
        .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]);
    util::run(&mut cmd).with_context(|| {
        format!(
            "fuzz target {target} found a failing input; it is in {}",
            artifacts.display()
        )
    })
}

/// cargo-fuzz, at the version this was written against, installed once per machine.
fn install() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION));
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about a minute)");
    util::run(Command::new("cargo").args([
        "install",
        "--locked",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
    ]))
    .context("installing cargo-fuzz failed")
}
