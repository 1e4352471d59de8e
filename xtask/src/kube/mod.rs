//! A real Kubernetes on loopback for the end-to-end tests, as `../shared/KUBERNETES.md`
//! records it working on these machines.

mod build;
mod cluster;
mod image;
mod network;
mod node;
mod pki;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum KubeCmd {
    /// Build the Kubernetes binaries (or find them cached) and print their directory.
    Build,
    /// Bring a one-node cluster up on loopback, show that it answers, and take it down.
    Check,
    /// Bring the cluster up, import the agent's image and run `tests/cluster.rs` against it.
    Test {
        /// The release binary to put in the image (default: build it).
        #[arg(long)]
        agent: Option<std::path::PathBuf>,
        /// Passed to the test harness (a test name filter, say).
        args: Vec<String>,
    },
}

pub(crate) fn run(cmd: &KubeCmd) -> Result<()> {
    match cmd {
        KubeCmd::Build => {
            let bin = build::binaries()?;
            println!("{}", bin.display());
            Ok(())
        }
        KubeCmd::Check => check(),
        KubeCmd::Test { agent, args } => {
            let agent = if let Some(path) = agent {
                std::fs::canonicalize(path)
                    .with_context(|| format!("no agent binary at {}", path.display()))?
            } else {
                crate::setup::build_tools()?;
                crate::util::cargo(&["build", "--release", "--package", "monitor-agent"])?;
                crate::util::workspace_root().join("target/release/monitor-agent")
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            test(&agent, &args)
        }
    }
}

/// Runs the real-cluster tests (`tests/tests/cluster.rs`, ignored elsewhere) on a cluster
/// brought up for them, with the agent image made from `agent`; everything is taken down
/// afterwards, also when they fail.
pub(crate) fn test(agent: &std::path::Path, filter: &[&str]) -> Result<()> {
    let bin = build::binaries()?;
    let started = std::time::Instant::now();
    let mut cluster = cluster::Cluster::control_plane(&bin)?;
    cluster.start_node()?;
    cluster.import_agent_image(agent)?;
    cluster.import_busybox_image()?;
    eprintln!(
        "xtask: cluster up and images imported in {:?}",
        started.elapsed()
    );
    let mut cargo = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    cargo
        .args([
            "test",
            "--release",
            "--package",
            "monitor-tests",
            "--test",
            "cluster",
        ])
        .args(filter)
        .args(["--", "--ignored", "--test-threads=1"])
        .current_dir(crate::util::workspace_root())
        .env("MONITOR_AGENT_BIN", agent)
        .env("MONITOR_KUBECTL", bin.join("kubectl"))
        .env("KUBECONFIG", cluster.admin_kubeconfig())
        .env("MONITOR_CONTAINERD_SOCKET", cluster.containerd_socket())
        .env("MONITOR_AGENT_IMAGE", image::AGENT_IMAGE)
        .env("MONITOR_BUSYBOX_IMAGE", image::BUSYBOX_IMAGE);
    let result = crate::util::run(&mut cargo);
    cluster.check_alive()?;
    result
}

fn check() -> Result<()> {
    let bin = build::binaries()?;
    let started = std::time::Instant::now();
    let mut cluster = cluster::Cluster::control_plane(&bin)?;
    eprintln!("xtask: control plane ready in {:?}", started.elapsed());
    cluster.start_node()?;
    eprintln!("xtask: node Ready in {:?}", started.elapsed());
    crate::util::run(cluster.kubectl().args(["get", "namespaces"]))?;
    crate::util::run(cluster.kubectl().args([
        "auth",
        "can-i",
        "list",
        "pods",
        "--all-namespaces",
    ]))?;
    // The controllers need a moment to publish their first objects.
    std::thread::sleep(std::time::Duration::from_secs(3));
    cluster.check_alive()?;
    crate::util::run(cluster.kubectl().args(["get", "nodes", "-o", "wide"]))?;
    // A pod on the host network, from an imported image: the runtime wrapper works.
    crate::util::run(cluster.kubectl().args([
        "run",
        "probe",
        &format!("--image={}", node::PAUSE_IMAGE),
        "--image-pull-policy=Never",
        r#"--overrides={"spec":{"hostNetwork":true}}"#,
    ]))?;
    crate::util::run(cluster.kubectl().args([
        "wait",
        "--for=condition=Ready",
        "pod/probe",
        "--timeout=60s",
    ]))?;
    eprintln!("xtask: a pod ran in {:?}", started.elapsed());
    Ok(())
}
