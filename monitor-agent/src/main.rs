//! monitor-agent: an eBPF API traffic monitor.

use clap::Parser;
use monitor_agent::{cli, run};

/// Events are allocated by the reader thread and freed by shard workers; glibc's malloc
/// serialises such cross-thread frees on arena locks, mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let cli = cli::Cli::parse();
    // `run` fails with 1; the query commands keep 1 for "the check found something" and
    // use 2 for "the command itself failed".
    let (result, failure) = match cli.command {
        cli::Command::Run(args) => (run::run(*args), 1),
        cli::Command::Inventory(args) => (cli::inventory(args), 2),
        cli::Command::Calls(args) => (cli::calls(args), 2),
        cli::Command::Violations(args) => (cli::violations(args), 2),
        cli::Command::Policy(cli::PolicyCommand::Suggest(args)) => (cli::policy_suggest(args), 2),
        cli::Command::Policy(cli::PolicyCommand::Check { file }) => (cli::policy_check(&file), 2),
        cli::Command::ProbeSites { file } => (cli::probe_sites(&file), 2),
        cli::Command::Spec(cli::SpecCommand::Check(args)) => match cli::spec_check(args) {
            Ok(true) => (Ok(()), 2),
            Ok(false) => std::process::exit(1),
            Err(e) => (Err(e), 2),
        },
    };
    if let Err(e) = result {
        // One sentence first; the chain of causes after it for whoever needs detail.
        eprintln!("monitor-agent: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(failure);
    }
}
