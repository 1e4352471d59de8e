//! Developer and CI tasks: `cargo xtask setup | run | test | bench | fuzz | kube`.

mod bench;
mod fuzz;
mod kube;
/// The nginx peer, shared with the end-to-end tests.
#[path = "../../tests/src/nginx.rs"]
#[allow(
    unreachable_pub,
    reason = "public for the test harness that also builds this file"
)]
mod nginx;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, run, test and benchmark the monitor")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and loading need (rust-src, bpf-linker), check the kernel.
    Setup {
        /// Also install the peers the tests and benchmark drive (nginx, wrk, curl, python3).
        #[arg(long)]
        peers: bool,
        /// Only what building needs: skip the kernel checks (for container image builds,
        /// where the build host's kernel is not where the agent will run).
        #[arg(long, conflicts_with = "peers")]
        build_only: bool,
    },
    /// Set up, build in release mode and run the agent (`monitor-agent run ARGS...`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run every unit and end-to-end test (needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure the agent's overhead: wrk against nginx, without and with the agent.
    Bench(bench::BenchArgs),
    /// Run every fuzz target (or those named) for a bounded time on its committed corpus.
    Fuzz(fuzz::FuzzArgs),
    /// Route discovery on the route corpus (`../shared/routes-dev`): every request replayed
    /// through the real agent, each API on its own port, no spec; prints per API the share
    /// of requests under the right template and endpoints per real operation.
    Routes {
        /// `--every N` (a sample), `--seed S` (the replay order), or another corpus file.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A real Kubernetes for the end-to-end tests.
    #[command(subcommand)]
    Kube(kube::KubeCmd),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.cmd {
        Cmd::Setup { peers, build_only } => {
            if build_only {
                setup::build_tools()
            } else {
                setup::all(peers)
            }
        }
        Cmd::Run { args } => run(args),
        Cmd::Test { args } => test(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Fuzz(args) => fuzz::run(&args),
        Cmd::Kube(cmd) => kube::run(&cmd),
        Cmd::Routes { args } => routes(&args),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> Result<()> {
    setup::all(false)?;
    util::cargo(&["build", "--release", "--package", "monitor-agent"])?;
    let bin = util::workspace_root().join("target/release/monitor-agent");
    let mut full = vec!["run".to_string()];
    full.extend(args);
    util::exec(&bin, &full)
}

fn routes(args: &[String]) -> Result<()> {
    setup::all(true)?;
    util::cargo(&["build", "--release", "--package", "monitor-agent"])?;
    util::cargo(&[
        "build",
        "--release",
        "--package",
        "monitor-tests",
        "--bin",
        "routes_eval",
    ])?;
    let root = util::workspace_root();
    std::env::set_var(
        "MONITOR_AGENT_BIN",
        root.join("target/release/monitor-agent"),
    );
    util::exec(&root.join("target/release/routes_eval"), args)
}

/// Seconds each fuzz target runs in `cargo xtask test` (the README says so too).
const FUZZ_SECONDS_IN_TEST: u64 = 12;

fn test(args: Vec<String>) -> Result<()> {
    setup::all(true)?;
    lint()?;
    util::cargo(&["build", "--release", "--package", "monitor-agent"])?;
    let bin = util::workspace_root().join("target/release/monitor-agent");
    std::env::set_var("MONITOR_AGENT_BIN", &bin);
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    // Unit tests first, in parallel.
    let mut unit = vec!["test", "--release", "--workspace"];
    unit.extend(["--exclude", "monitor-ebpf", "--exclude", "monitor-tests"]);
    unit.extend(&extra);
    util::cargo(&unit)?;
    // Every fuzz target briefly, on its committed corpus (a filtered run is for one test).
    if extra.is_empty() {
        fuzz::run(&fuzz::FuzzArgs {
            seconds: FUZZ_SECONDS_IN_TEST,
            targets: Vec::new(),
        })?;
    }
    // End-to-end tests one at a time: every agent sees every process, and the load tests
    // must not compete with each other for the two cores.
    // `--tests`: the harness crate has no doc tests, and an empty doc-test run must not be
    // the last thing CI reads.
    let mut e2e = vec!["test", "--release", "--package", "monitor-tests", "--tests"];
    e2e.extend(&extra);
    e2e.extend(["--", "--test-threads=1"]);
    util::cargo(&e2e)?;
    // Last, the real Kubernetes: the cluster is brought up for these tests alone.
    kube::test(&bin, &extra)
}

/// Formatting and clippy (with the workspace lints, warnings denied) before any test, so CI
/// refuses what a reviewer would. The eBPF crate is all `cfg(target_arch = "bpf")`, so it
/// is linted a second time for its own target, with the nightly toolchain that builds it.
fn lint() -> Result<()> {
    util::cargo(&["fmt", "--all", "--", "--check"])?;
    util::cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "monitor-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The fuzz targets live outside the workspace (cargo fuzz builds them with nightly);
    // checking them here keeps them compiling against the parsers they drive.
    let target = util::workspace_root().join("target");
    util::cargo(&[
        "check",
        "--manifest-path",
        "monitor-agent/fuzz/Cargo.toml",
        "--bins",
        "--target-dir",
        &target.to_string_lossy(),
    ])?;
    let ebpf = util::workspace_root().join("monitor-ebpf");
    util::run(
        std::process::Command::new("rustup")
            .args(["run", "nightly", "cargo", "clippy", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--", "-D", "warnings"])
            .current_dir(&ebpf)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO"),
    )
}
