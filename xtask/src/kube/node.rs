//! The cluster's one node: a containerd of its own (socket, state and containers in the
//! cluster's directory) serving the kubelet through CRI, with the CNI bridge plugin for pod
//! networking, and kube-proxy in iptables mode, registered as `pki::NODE`.
//!
//! containerd rather than Docker: Debian's Docker 20.10 refuses `CAP_BPF` and
//! `CAP_PERFMON` ("unknown capability"), the two the agent's DaemonSet is granted instead
//! of privileged; containerd 1.6 and runc pass them through.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Result};

use super::{
    cluster::{free_port, succeeds, Cluster},
    network::{self, NODE_IP, POD_RANGE},
    pki,
};

/// The pod sandbox image, imported from the `pause` binary built with the components.
pub(crate) const PAUSE_IMAGE: &str = "monitor-test/pause:3.4.1";

/// containerd's namespace for what the kubelet runs.
pub(crate) const K8S_NAMESPACE: &str = "k8s.io";

/// How long the node may take to become Ready.
const READY_TIMEOUT: Duration = Duration::from_mins(2);

/// runc, with the container's spec first made to fit this machine, which is itself a
/// sandbox: it may neither lower an OOM score (the kubelet asks -998 for pod sandboxes) nor
/// grant a capability outside its own bounding set (`CAP_SYS_RESOURCE` is withheld here).
/// Both are rewritten in the bundle's `config.json`, then runc runs with the same arguments.
/// On a real node neither applies and runc is used as it is.
const RUNC_WRAPPER: &str = r#"#!/usr/bin/env python3
import json, os, sys

NAMES = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
         "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
         "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
         "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
         "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
         "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
         "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]

def bundle(args):
    for i, a in enumerate(args):
        if a in ("--bundle", "-b") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--bundle="):
            return a.split("=", 1)[1]
    return None

def fit(path):
    with open(path) as f:
        spec = json.load(f)
    with open("/proc/self/status") as f:
        bounding = int(next(l for l in f if l.startswith("CapBnd:")).split()[1], 16)
    allowed = {"CAP_" + n for i, n in enumerate(NAMES) if bounding >> i & 1}
    proc = spec.get("process", {})
    for kind, caps in proc.get("capabilities", {}).items():
        proc["capabilities"][kind] = [c for c in caps if c in allowed]
    if proc.get("oomScoreAdj", 0) < 0:
        proc["oomScoreAdj"] = 0
    with open(path, "w") as f:
        json.dump(spec, f)

b = bundle(sys.argv[1:])
if b and os.path.exists(os.path.join(b, "config.json")):
    fit(os.path.join(b, "config.json"))
os.execvp("runc", ["runc"] + sys.argv[1:])
"#;

impl Cluster {
    /// containerd's socket.
    pub(crate) fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// `ctr` on the cluster's containerd, in the kubelet's namespace.
    pub(crate) fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.containerd_socket())
            .args(["--namespace", K8S_NAMESPACE]);
        cmd
    }

    /// Starts containerd and the kubelet, waits for the node to be Ready, then starts
    /// kube-proxy.
    pub(crate) fn start_node(&mut self) -> Result<()> {
        self.start_containerd()?;
        self.import_pause()?;
        self.start_kubelet()?;
        self.wait_node_ready()?;
        self.start_proxy()
    }

    /// containerd with its CRI plugin: the pause image as the sandbox, the CNI bridge for
    /// pod networks, cgroupfs, runc through `RUNC_WRAPPER`.
    fn start_containerd(&mut self) -> Result<()> {
        let dir = self.dir.join("containerd");
        let wrapper = self.dir.join("runc-wrapper");
        fs::write(&wrapper, RUNC_WRAPPER)?;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
        let cni = self.dir.join("cni");
        network::write_cni_config(&cni.join("net.d"), &cni.join("ipam"))?;
        fs::create_dir_all(&dir)?;
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
      BinaryName = "{wrapper}"
"#,
            wrapper = wrapper.display(),
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = self.containerd_socket().display(),
            bin = network::CNI_BIN,
            conf = cni.join("net.d").display(),
        );
        let path = dir.join("config.toml");
        fs::write(&path, config)?;
        self.spawn(
            "containerd",
            Command::new("containerd").arg("--config").arg(&path),
        )?;
        self.containerd_started = true;
        if !self.wait_for(READY_TIMEOUT, |c| succeeds(c.ctr().arg("version")))? {
            bail!("containerd did not answer within {READY_TIMEOUT:?}");
        }
        Ok(())
    }

    /// Imports a root filesystem holding only `/pause`.
    fn import_pause(&self) -> Result<()> {
        let root = self.dir.join("pause-rootfs");
        fs::create_dir_all(&root)?;
        fs::copy(self.bin.join("pause"), root.join("pause"))?;
        self.import_rootfs(&root, PAUSE_IMAGE, &[r#"ENTRYPOINT ["/pause"]"#.into()])
    }

    fn start_kubelet(&mut self) -> Result<()> {
        let f = |n: &str| self.file(n);
        let root = self.dir.join("kubelet");
        let (port, healthz) = (free_port()?, free_port()?);
        let runtime = format!("unix://{}", self.containerd_socket().display());
        let args = [
            format!("--kubeconfig={}", f("kubelet.kubeconfig")),
            format!("--hostname-override={}", pki::NODE),
            format!("--root-dir={}", root.display()),
            format!("--cert-dir={}", root.join("pki").display()),
            format!("--volume-plugin-dir={}", root.join("plugins").display()),
            "--container-runtime=remote".into(),
            format!("--container-runtime-endpoint={runtime}"),
            format!("--image-service-endpoint={runtime}"),
            "--runtime-request-timeout=5m".into(),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--cgroup-driver=cgroupfs".into(),
            "--cgroups-per-qos=false".into(),
            "--enforce-node-allocatable=".into(),
            "--fail-swap-on=false".into(),
            "--oom-score-adj=0".into(),
            // Its KUBE-FIREWALL chain would drop connections to 127.0.0.0/8 from other
            // addresses, for everything on the machine; kube-proxy makes the marks it needs.
            "--make-iptables-util-chains=false".into(),
            format!("--address={NODE_IP}"),
            format!("--node-ip={NODE_IP}"),
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

    /// kube-proxy in iptables mode: ClusterIP Services DNAT to their endpoints, as on most
    /// real clusters. Its health and metrics stay on loopback.
    fn start_proxy(&mut self) -> Result<()> {
        let (healthz, metrics) = (free_port()?, free_port()?);
        let args = [
            format!("--kubeconfig={}", self.file("kube-proxy.kubeconfig")),
            format!("--hostname-override={}", pki::NODE),
            "--proxy-mode=iptables".into(),
            format!("--cluster-cidr={POD_RANGE}"),
            format!("--bind-address={NODE_IP}"),
            format!("--healthz-bind-address=127.0.0.1:{healthz}"),
            format!("--metrics-bind-address=127.0.0.1:{metrics}"),
            // Leave the machine's conntrack table size and the proxy's OOM score alone.
            "--conntrack-max-per-core=0".into(),
            "--oom-score-adj=0".into(),
        ];
        let bin = self.bin.join("kube-proxy");
        self.spawn("kube-proxy", Command::new(bin).args(args))?;
        let up = self.wait_for(READY_TIMEOUT, |_| {
            succeeds(
                Command::new("curl").args(["-sf", &format!("http://127.0.0.1:{healthz}/healthz")]),
            )
        })?;
        if !up {
            bail!("kube-proxy was not healthy within {READY_TIMEOUT:?}");
        }
        Ok(())
    }

    /// Removes kube-proxy's chains and rules from the machine's iptables.
    pub(super) fn clean_proxy_rules(&self) {
        let log = self.dir.join("logs/kube-proxy-cleanup.log");
        let Ok(out) = fs::File::create(log) else {
            return;
        };
        let _ = Command::new(self.bin.join("kube-proxy"))
            .args(["--cleanup", "--proxy-mode=iptables"])
            .stdout(out.try_clone().map_or(Stdio::null(), Stdio::from))
            .stderr(out)
            .status();
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

    /// Kills and removes every container containerd runs for the cluster, so that none
    /// outlives it (their shims would); the kubelet is gone by then.
    pub(crate) fn remove_containers(&self) {
        let Ok(out) = self.ctr().args(["tasks", "ls", "-q"]).output() else {
            return;
        };
        let quiet = |cmd: &mut Command| {
            let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            quiet(
                self.ctr()
                    .args(["tasks", "kill", "--signal", "SIGKILL", id]),
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        let Ok(out) = self.ctr().args(["containers", "ls", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            quiet(self.ctr().args(["tasks", "delete", "--force", id]));
            quiet(self.ctr().args(["containers", "delete", id]));
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
