//! A Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler, each a child process stopped by its PID when the cluster is dropped
//! (also when a test fails), with its state and logs in one directory that goes with it.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    network::{PodNetwork, NODE_IP, POD_RANGE},
    pki,
};

/// How long a component may take to answer once started.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// Addresses of ClusterIP Services; never routed off the machine.
pub(crate) const SERVICE_RANGE: &str = "10.96.0.0/12";

pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(super) bin: PathBuf,
    procs: Vec<(&'static str, Child)>,
    /// Whether containerd was started, whose containers go before it does.
    pub(super) containerd_started: bool,
    /// Network namespaces present before the node started: the pods' are the others.
    pub(super) netns_before: Vec<String>,
    /// Dropped after every component is stopped (fields drop after `Drop::drop`).
    _network: PodNetwork,
    _agent_data: AgentData,
}

/// The DaemonSet keeps its inventory in the node's `/var/lib/monitor-agent`: a run starts
/// with it empty, and what was there before (an agent's of this machine) is put back.
struct AgentData {
    saved: Option<PathBuf>,
}

const AGENT_DATA: &str = "/var/lib/monitor-agent";

impl AgentData {
    fn set_aside() -> Result<AgentData> {
        let dir = Path::new(AGENT_DATA);
        if !dir.exists() {
            return Ok(AgentData { saved: None });
        }
        let saved = PathBuf::from(format!("{AGENT_DATA}.before-test-{}", std::process::id()));
        fs::rename(dir, &saved).with_context(|| format!("moving {AGENT_DATA} aside"))?;
        Ok(AgentData { saved: Some(saved) })
    }
}

impl Drop for AgentData {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(AGENT_DATA);
        if let Some(saved) = &self.saved {
            let _ = fs::rename(saved, AGENT_DATA);
        }
    }
}

impl Cluster {
    /// Starts the control plane from the binaries in `bin`; ready when this returns.
    pub(crate) fn control_plane(bin: &Path) -> Result<Cluster> {
        let dir = PathBuf::from(format!("/tmp/monitor-kube-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.join("logs"))?;
        let network = PodNetwork::create()?;
        let mut cluster = Cluster {
            dir,
            bin: bin.to_path_buf(),
            procs: Vec::new(),
            containerd_started: false,
            netns_before: super::network::netns_names(),
            _network: network,
            _agent_data: AgentData::set_aside()?,
        };
        let port = free_port()?;
        pki::write(&cluster.pki(), port)?;
        let etcd = cluster.start_etcd()?;
        cluster.start_apiserver(port, etcd)?;
        cluster.wait_ready()?;
        cluster.start_controllers()?;
        Ok(cluster)
    }

    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// A file of the PKI directory, as a flag value.
    pub(super) fn file(&self, name: &str) -> String {
        self.pki().join(name).display().to_string()
    }

    /// The administrator's kubeconfig (group `system:masters`).
    pub(crate) fn admin_kubeconfig(&self) -> PathBuf {
        self.pki().join("admin.kubeconfig")
    }

    /// `kubectl` as the administrator.
    pub(crate) fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg("--kubeconfig").arg(self.admin_kubeconfig());
        cmd
    }

    pub(super) fn spawn(&mut self, name: &'static str, cmd: &mut Command) -> Result<()> {
        let log = fs::File::create(self.dir.join("logs").join(format!("{name}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.procs.push((name, child));
        Ok(())
    }

    fn start_etcd(&mut self) -> Result<u16> {
        let (client, peer) = (free_port()?, free_port()?);
        let data = self.dir.join("etcd");
        self.spawn(
            "etcd",
            Command::new("etcd")
                .arg("--data-dir")
                .arg(&data)
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}")),
        )?;
        self.wait_port("etcd", client)?;
        Ok(client)
    }

    fn start_apiserver(&mut self, port: u16, etcd: u16) -> Result<()> {
        let f = |n: &str| self.file(n);
        let args = [
            format!("--etcd-servers=http://127.0.0.1:{etcd}"),
            format!("--bind-address={NODE_IP}"),
            format!("--advertise-address={NODE_IP}"),
            format!("--secure-port={port}"),
            "--insecure-port=0".into(),
            format!("--client-ca-file={}", f("ca.crt")),
            format!("--tls-cert-file={}", f("apiserver.crt")),
            format!("--tls-private-key-file={}", f("apiserver.key")),
            format!(
                "--kubelet-client-certificate={}",
                f("apiserver-kubelet.crt")
            ),
            format!("--kubelet-client-key={}", f("apiserver-kubelet.key")),
            // The node's name resolves nowhere; its address does.
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--service-account-key-file={}", f("sa.pub")),
            format!("--service-account-signing-key-file={}", f("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-cluster-ip-range={SERVICE_RANGE}"),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
        ];
        let bin = self.bin.join("kube-apiserver");
        self.spawn("kube-apiserver", Command::new(bin).args(args))
    }

    fn start_controllers(&mut self) -> Result<()> {
        let f = |n: &str| self.file(n);
        let manager = [
            format!("--kubeconfig={}", f("controller-manager.kubeconfig")),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
            "--use-service-account-credentials=true".into(),
            format!("--service-account-private-key-file={}", f("sa.key")),
            format!("--root-ca-file={}", f("ca.crt")),
            format!("--cluster-signing-cert-file={}", f("ca.crt")),
            format!("--cluster-signing-key-file={}", f("ca.key")),
            format!("--service-cluster-ip-range={SERVICE_RANGE}"),
            format!("--cluster-cidr={POD_RANGE}"),
        ];
        let scheduler = [
            format!("--kubeconfig={}", f("scheduler.kubeconfig")),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
        ];
        let (cm, sch) = (
            self.bin.join("kube-controller-manager"),
            self.bin.join("kube-scheduler"),
        );
        self.spawn("kube-controller-manager", Command::new(cm).args(manager))?;
        self.spawn("kube-scheduler", Command::new(sch).args(scheduler))
    }

    /// Waits for the API server's `/readyz`, failing early if a component exited.
    fn wait_ready(&mut self) -> Result<()> {
        let ready = self.wait_for(START_TIMEOUT, |c| {
            succeeds(c.kubectl().args(["get", "--raw", "/readyz"]))
        })?;
        if !ready {
            bail!(
                "kube-apiserver was not ready within {START_TIMEOUT:?}; see {}",
                self.dir.join("logs/kube-apiserver.log").display()
            );
        }
        Ok(())
    }

    fn wait_port(&mut self, name: &str, port: u16) -> Result<()> {
        let up = self.wait_for(START_TIMEOUT, |_| {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        if !up {
            bail!("{name} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}");
        }
        Ok(())
    }

    /// Polls `ready` every 250 ms until it holds (true) or `timeout` passed (false),
    /// failing at once if a component exits meanwhile.
    pub(super) fn wait_for(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&Cluster) -> bool,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if ready(self) {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            sleep(Duration::from_millis(250));
        }
    }

    /// Fails, naming it and its log, if a component has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        for (name, child) in &mut self.procs {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited ({status}); see {}",
                    self.dir.join(format!("logs/{name}.log")).display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    /// Stops every component, newest first, by PID: SIGTERM, then SIGKILL after 10 s; the
    /// containers go before their daemon, the mounts below the directory before it.
    fn drop(&mut self) {
        while let Some((name, mut child)) = self.procs.pop() {
            if name == "containerd" && self.containerd_started {
                self.remove_containers();
            }
            let proxy = name == "kube-proxy";
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("xtask: {name} (pid {pid}) ignored SIGTERM; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
            if proxy {
                self.clean_proxy_rules();
            }
        }
        super::network::remove_netns_except(&self.netns_before);
        for mount in super::node::mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether a command runs and succeeds, its output discarded.
pub(super) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
