//! Command-line interface.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "monitor-agent",
    version,
    about = "eBPF API traffic monitor: sees every HTTP call on this node"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: capture HTTP traffic of every process on this node (needs root).
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// How call records are written to stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,

    /// Address of the health, metrics and query endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,

    /// Bearer token required by the query API; mandatory when --listen is not loopback.
    #[arg(long, env = "MONITOR_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Size of the kernel → agent ring buffer in MiB (power of two).
    #[arg(long, default_value_t = 16, value_parser = parse_ring_mb)]
    pub ring_buffer_mb: u32,

    /// Most connections tracked at once; the longest idle are forgotten beyond it.
    #[arg(long, default_value_t = 65536)]
    pub max_connections: usize,

    /// Seconds without traffic after which a connection is forgotten.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_secs: u64,

    /// Have the kernel account time spent in the agent's eBPF programs, exported as
    /// `monitor_program_run_seconds_total` (adds a few nanoseconds per program run).
    #[arg(long)]
    pub kernel_stats: bool,

    /// Parsing threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
}

fn parse_ring_mb(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of MiB"))?;
    if v == 0 || !v.is_power_of_two() || v > 1024 {
        return Err(format!("{v} must be a power of two between 1 and 1024"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_must_be_power_of_two() {
        assert_eq!(parse_ring_mb("16"), Ok(16));
        assert!(parse_ring_mb("12").is_err());
        assert!(parse_ring_mb("0").is_err());
        assert!(parse_ring_mb("lots").is_err());
    }

    #[test]
    fn run_defaults() {
        let cli = Cli::try_parse_from(["monitor-agent", "run"]).unwrap();
        let Command::Run(args) = cli.command;
        assert_eq!(args.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(args.output, OutputFormat::Text);
        assert!(Cli::try_parse_from(["monitor-agent", "run", "--output", "xml"]).is_err());
        assert!(Cli::try_parse_from(["monitor-agent", "run", "--listen", "nope"]).is_err());
    }
}
