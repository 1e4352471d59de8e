//! A real Kubernetes on loopback for the end-to-end tests, as `../shared/KUBERNETES.md`
//! records it working on these machines.

mod build;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum KubeCmd {
    /// Build the Kubernetes binaries (or find them cached) and print their directory.
    Build,
}

pub(crate) fn run(cmd: &KubeCmd) -> Result<()> {
    match cmd {
        KubeCmd::Build => {
            let bin = build::binaries()?;
            println!("{}", bin.display());
            Ok(())
        }
    }
}
