//! The cluster's one node: a Docker daemon of its own (socket, state and containers in the
//! cluster's directory) and a kubelet on loopback, registered as `pki::NODE`.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::{
    cluster::{succeeds, Cluster},
    pki,
};
use crate::util;

/// The pod sandbox image, imported from the `pause` binary built with the components.
pub(crate) const PAUSE_IMAGE: &str = "monitor-test/pause:3.4.1";

/// How long the node may take to become Ready.
const READY_TIMEOUT: Duration = Duration::from_mins(2);

/// runc refuses the kubelet's negative OOM score for the sandbox here (the sandbox may not
/// lower it): this wrapper raises a negative `oomScoreAdj` in the bundle to 0, then runs
/// runc with the same arguments.
const RUNC_WRAPPER: &str = r#"#!/bin/sh
bundle=""
prev=""
for arg in "$@"; do
    case "$prev" in --bundle|-b) bundle="$arg" ;; esac
    case "$arg" in --bundle=*) bundle="${arg#--bundle=}" ;; esac
    prev="$arg"
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
    sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$bundle/config.json"
fi
exec runc "$@"
"#;

impl Cluster {
    /// The Docker daemon's socket, as `docker -H` takes it.
    pub(crate) fn docker_host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// `docker` talking to the cluster's daemon.
    pub(crate) fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(["-H", &self.docker_host()]);
        cmd
    }

    /// Starts the Docker daemon and the kubelet, and waits for the node to be Ready.
    pub(crate) fn start_node(&mut self) -> Result<()> {
        self.start_docker()?;
        self.import_pause()?;
        self.start_kubelet()?;
        self.wait_node_ready()
    }

    fn start_docker(&mut self) -> Result<()> {
        let wrapper = self.dir.join("runc-wrapper");
        fs::write(&wrapper, RUNC_WRAPPER)?;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
        let d = |n: &str| self.dir.join(n);
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root")
            .arg(d("docker"))
            .arg("--exec-root")
            .arg(d("docker-exec"))
            .arg("--pidfile")
            .arg(d("docker.pid"))
            .args(["-H", &self.docker_host()])
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .arg(format!("--add-runtime=wrapped={}", wrapper.display()))
            .arg("--default-runtime=wrapped");
        self.spawn("dockerd", &mut cmd)?;
        self.docker_started = true;
        if !self.wait_for(READY_TIMEOUT, |c| succeeds(c.docker().arg("info")))? {
            bail!("dockerd did not answer within {READY_TIMEOUT:?}");
        }
        Ok(())
    }

    /// `docker import`s a root filesystem holding only `/pause`.
    fn import_pause(&self) -> Result<()> {
        let root = self.dir.join("pause-rootfs");
        fs::create_dir_all(&root)?;
        fs::copy(self.bin.join("pause"), root.join("pause")).context("copying pause")?;
        let tar = self.dir.join("pause.tar");
        util::run(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("pause"),
        )?;
        util::run(
            self.docker()
                .args(["import", "--change", r#"ENTRYPOINT ["/pause"]"#])
                .arg(&tar)
                .arg(PAUSE_IMAGE)
                .stdout(Stdio::null()),
        )
        .context("importing the pause image")
    }

    fn start_kubelet(&mut self) -> Result<()> {
        let f = |n: &str| self.file(n);
        let root = self.dir.join("kubelet");
        let (port, healthz) = (super::cluster::free_port()?, super::cluster::free_port()?);
        let args = [
            format!("--kubeconfig={}", f("kubelet.kubeconfig")),
            format!("--hostname-override={}", pki::NODE),
            format!("--root-dir={}", root.display()),
            format!("--cert-dir={}", root.join("pki").display()),
            format!("--volume-plugin-dir={}", root.join("plugins").display()),
            "--container-runtime=docker".into(),
            format!("--docker-endpoint={}", self.docker_host()),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--cgroup-driver=cgroupfs".into(),
            "--cgroups-per-qos=false".into(),
            "--enforce-node-allocatable=".into(),
            "--fail-swap-on=false".into(),
            "--oom-score-adj=0".into(),
            "--address=127.0.0.1".into(),
            format!("--port={port}"),
            format!("--healthz-port={healthz}"),
            "--read-only-port=0".into(),
            "--anonymous-auth=false".into(),
            format!("--client-ca-file={}", f("ca.crt")),
            format!("--tls-cert-file={}", f("kubelet-serving.crt")),
            format!("--tls-private-key-file={}", f("kubelet-serving.key")),
        ];
        let bin = self.bin.join("kubelet");
        self.spawn("kubelet", Command::new(bin).args(args))
    }

    fn wait_node_ready(&mut self) -> Result<()> {
        let query = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
        let mut status = String::new();
        let ready = self.wait_for(READY_TIMEOUT, |c| {
            status = c
                .kubectl()
                .args(["get", "node", pki::NODE, "-o", query])
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            status == "True"
        })?;
        if !ready {
            bail!(
                "the node was not Ready within {READY_TIMEOUT:?} (Ready={status:?}); see {}",
                self.dir.join("logs/kubelet.log").display()
            );
        }
        Ok(())
    }

    /// Removes every container of the cluster's daemon, so that none outlives it.
    pub(crate) fn remove_containers(&self) {
        let Ok(out) = self.docker().args(["ps", "-aq"]).output() else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = self
                .docker()
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Mount points at or below `dir` (the kubelet's volumes, the daemon's layers), deepest
/// first, so that they can be unmounted before the directory is removed.
pub(crate) fn mounts_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}
