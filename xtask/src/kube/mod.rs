//! A real Kubernetes on loopback for the end-to-end tests, as `../shared/KUBERNETES.md`
//! records it working on these machines.

mod build;
mod cluster;
mod node;
mod pki;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum KubeCmd {
    /// Build the Kubernetes binaries (or find them cached) and print their directory.
    Build,
    /// Bring a one-node cluster up on loopback, show that it answers, and take it down.
    Check,
}

pub(crate) fn run(cmd: &KubeCmd) -> Result<()> {
    match cmd {
        KubeCmd::Build => {
            let bin = build::binaries()?;
            println!("{}", bin.display());
            Ok(())
        }
        KubeCmd::Check => check(),
    }
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
