//! Command-line interface.

mod calls;
mod client;
mod inventory;
mod policy;
mod probe_sites;
mod spec_check;
mod violations;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use calls::calls;
pub use inventory::inventory;
pub use policy::{policy_check, policy_suggest};
pub use probe_sites::probe_sites;
pub use spec_check::spec_check;
pub use violations::violations;

pub use crate::settings::RunArgs;

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
    Run(Box<RunArgs>),
    /// Show the API inventory of a running agent: every endpoint in use, with its spec status.
    Inventory(InventoryArgs),
    /// Show recent calls seen by a running agent, or follow them live.
    Calls(CallsArgs),
    /// Work with declared API specs.
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Show calls the policy does not allow, or follow them live.
    Violations(ViolationsArgs),
    /// Work with policies: suggest one from observed traffic, check a file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Where the TLS probes would go in an executable or library, and whether the kernel
    /// emulates each site (for the benchmark's record and for checking a new build).
    #[command(hide = true)]
    ProbeSites { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct ViolationsArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Violations involving this service (as caller or callee).
    #[arg(long)]
    pub service: Option<String>,

    /// Only this reason (edge_not_allowed, missing_credentials, ...).
    #[arg(long)]
    pub reason: Option<String>,

    /// Only since then: RFC 3339 time or a duration back from now (15m, 2h).
    #[arg(long)]
    pub since: Option<String>,

    #[command(flatten)]
    pub list: Listing,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write a least-privilege policy from what the agent observed: every edge, method
    /// and route seen, credentials required where every call carried them.
    Suggest(SuggestArgs),
    /// Check a policy file without an agent; exits 2 with file, line and reason when it
    /// is invalid.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SuggestArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Only calls to this service.
    #[arg(long)]
    pub service: Option<String>,

    /// policy (this agent's --policy file), networkpolicy (Kubernetes, L4),
    /// cilium (CiliumNetworkPolicy with L7 HTTP rules) or istio (AuthorizationPolicy).
    #[arg(long, default_value = "policy")]
    pub format: String,

    /// Kubernetes namespace for the objects of services the agent did not see in a
    /// cluster (those it did go in their own namespace, selected by their real labels).
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

/// Where the agent to query is.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The agent's listen address.
    #[arg(long, env = "MONITOR_SERVER", default_value = "http://127.0.0.1:9464")]
    pub server: String,

    /// API token, when the agent requires one.
    #[arg(long, env = "MONITOR_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Only this service's endpoints.
    #[arg(long)]
    pub service: Option<String>,

    /// Only endpoints with this spec status.
    #[arg(long, value_parser = ["documented", "shadow", "zombie"])]
    pub spec_status: Option<String>,

    /// Only endpoints called since then: RFC 3339 time or a duration back from now (15m, 2h).
    #[arg(long)]
    pub since: Option<String>,

    /// Print the agent's JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// List declared operations never observed instead.
    #[arg(long, conflicts_with = "openapi")]
    pub unused: bool,

    /// Print the OpenAPI 3.1 document of what SERVICE was observed serving.
    #[arg(long, value_name = "SERVICE")]
    pub openapi: Option<String>,
}

#[derive(Debug, Args)]
pub struct CallsArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Calls involving this service (as client or server).
    #[arg(long)]
    pub service: Option<String>,

    /// Calls filed under this route.
    #[arg(long)]
    pub route: Option<String>,

    #[command(flatten)]
    pub list: Listing,
}

/// How a list of recent items is shown.
#[derive(Debug, Args)]
pub struct Listing {
    /// How many of the most recent to show.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,

    /// Keep printing new ones as they happen (Ctrl-C to stop).
    #[arg(long, short)]
    pub follow: bool,

    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SpecCommand {
    /// Compare a spec file with what the agent observed; exits 1 when shadow or zombie
    /// endpoints exist (for CI), 2 when the check itself failed.
    Check(SpecCheckArgs),
}

#[derive(Debug, Args)]
pub struct SpecCheckArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// The service the spec describes, as the agent names it.
    #[arg(long)]
    pub service: String,

    /// OpenAPI 3.0/3.1 or Swagger 2.0 file (JSON or YAML), or a directory of them.
    pub file: PathBuf,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_defaults() {
        let cli = Cli::try_parse_from(["monitor-agent", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.data_dir, None);
        assert!(Cli::try_parse_from(["monitor-agent", "run", "--service", "x"]).is_err());
        assert!(Cli::try_parse_from(["monitor-agent", "run", "--spec", "x"]).is_err());
        assert!(Cli::try_parse_from(["monitor-agent", "run", "--route-pattern", "x"]).is_err());
        assert!(Cli::try_parse_from([
            "monitor-agent",
            "run",
            "--service",
            "u=port:80",
            "--service",
            "d=comm:pg",
            "--route-pattern",
            "/u/{id}",
            "--spec",
            "u=/tmp/u.yaml"
        ])
        .is_ok());
        assert_eq!(args.listen, None);
        assert_eq!(args.output, None);
        assert!(Cli::try_parse_from(["monitor-agent", "run", "--output", "xml"]).is_err());
        assert!(Cli::try_parse_from(["monitor-agent", "run", "--listen", "nope"]).is_err());
    }
}
