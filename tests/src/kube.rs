//! The real cluster that `cargo xtask kube test` brings up for `tests/cluster.rs`: kubectl
//! as its administrator, its containerd, and the images it imported, all named by the
//! environment that xtask sets.

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

/// What xtask tells the cluster tests.
pub struct Cluster {
    kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    containerd: PathBuf,
    pub agent_image: String,
    pub busybox_image: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the cluster tests run inside `cargo xtask kube test`, which brings the cluster up")
    })
}

impl Cluster {
    pub fn from_env() -> Cluster {
        Cluster {
            kubectl: env("MONITOR_KUBECTL").into(),
            kubeconfig: env("KUBECONFIG").into(),
            containerd: env("MONITOR_CONTAINERD_SOCKET").into(),
            agent_image: env("MONITOR_AGENT_IMAGE"),
            busybox_image: env("MONITOR_BUSYBOX_IMAGE"),
        }
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd
    }

    /// Runs kubectl; its output whatever the outcome.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("running kubectl: {e}"))
    }

    /// Runs kubectl, which must succeed; its standard output.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ... -o jsonpath=...`, trimmed; empty when the object is missing.
    pub fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let mut full: Vec<&str> = vec!["get"];
        full.extend(args);
        let expr = format!("jsonpath={path}");
        full.extend(["-o", &expr]);
        let out = self.kubectl_output(&full);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `ctr` on the cluster's containerd, in the kubelet's namespace; its output.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.containerd)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running ctr: {e}"));
        assert!(
            out.status.success(),
            "ctr {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The host PID of the first container of `pod`, as containerd runs it.
    pub fn container_pid(&self, namespace: &str, pod: &str) -> u32 {
        let id = self.jsonpath(
            &["pod", "-n", namespace, pod],
            "{.status.containerStatuses[0].containerID}",
        );
        let id = id
            .strip_prefix("containerd://")
            .unwrap_or_else(|| panic!("pod {pod} has no containerd container: {id:?}"));
        let tasks = self.ctr(&["tasks", "ls"]);
        let line = tasks
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no running task {id}: {tasks}"));
        line.split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("a task PID")
    }

    /// Waits until `ready` holds, polling every 250 ms; panics with `what` after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready() {
            assert!(Instant::now() < deadline, "{what} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A kustomization applied with `kubectl apply -k` and deleted (waiting for its objects to
/// go) when dropped, also when the test fails.
pub struct Applied<'a> {
    cluster: &'a Cluster,
    dir: PathBuf,
}

/// Where kustomizations are written: inside the workspace, because kustomize takes a base
/// only as a relative path, which from here is `BASE_FROM_KUSTOMIZATION`.
pub fn kustomization_dir(name: &str) -> PathBuf {
    crate::workspace_root()
        .join("target/kustomize")
        .join(format!("{name}-{}", std::process::id()))
}

/// `deploy/kubernetes`, seen from a `kustomization_dir`.
pub const BASE_FROM_KUSTOMIZATION: &str = "../../../deploy/kubernetes";

impl<'a> Applied<'a> {
    /// Writes `kustomization` (and `files`, by name) into `kustomization_dir(name)` and
    /// applies it.
    pub fn kustomization(
        cluster: &'a Cluster,
        name: &str,
        kustomization: &str,
        files: &[(&str, &str)],
    ) -> Applied<'a> {
        let dir = kustomization_dir(name);
        let dir = dir.as_path();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let path = dir.display().to_string();
        let applied = Applied {
            cluster,
            dir: dir.to_path_buf(),
        };
        cluster.kubectl(&["apply", "-k", &path]);
        applied
    }
}

impl<'a> Applied<'a> {
    /// Applies `files` (by name) through a kustomization that lists them.
    pub fn resources(cluster: &'a Cluster, name: &str, files: &[(&str, &str)]) -> Applied<'a> {
        let mut k = String::from(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
        );
        for (file, _) in files {
            k.push_str("  - ");
            k.push_str(file);
            k.push('\n');
        }
        Applied::kustomization(cluster, name, &k, files)
    }
}

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        let path = self.dir.display().to_string();
        let out = self.cluster.kubectl_output(&[
            "delete",
            "-k",
            &path,
            "--wait=true",
            "--timeout=120s",
            "--ignore-not-found",
        ]);
        if !out.status.success() {
            eprintln!(
                "deleting {path} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Capability names by bit, as `capabilities(7)` numbers them (those the tests name).
const CAPABILITY_BITS: &[(u32, &str)] = &[
    (0, "CHOWN"),
    (1, "DAC_OVERRIDE"),
    (2, "DAC_READ_SEARCH"),
    (3, "FOWNER"),
    (4, "FSETID"),
    (5, "KILL"),
    (6, "SETGID"),
    (7, "SETUID"),
    (8, "SETPCAP"),
    (10, "NET_BIND_SERVICE"),
    (12, "NET_ADMIN"),
    (13, "NET_RAW"),
    (18, "SYS_CHROOT"),
    (19, "SYS_PTRACE"),
    (21, "SYS_ADMIN"),
    (24, "SYS_RESOURCE"),
    (27, "MKNOD"),
    (29, "AUDIT_WRITE"),
    (31, "SETFCAP"),
    (38, "PERFMON"),
    (39, "BPF"),
];

/// The names of the capabilities in a `/proc/PID/status` set line (`CapEff:` and the like);
/// a bit without a name above comes out as its number.
pub fn capabilities(status: &str, line: &str) -> std::collections::BTreeSet<String> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("no {line} in the process status"));
    let set = u64::from_str_radix(hex.trim(), 16).expect("a capability set");
    (0..64)
        .filter(|bit| set & (1u64 << bit) != 0)
        .map(|bit| {
            CAPABILITY_BITS
                .iter()
                .find(|(b, _)| *b == bit)
                .map_or_else(|| bit.to_string(), |(_, n)| (*n).to_string())
        })
        .collect()
}
