//! Service identity: which service a process or a remote peer is, so the inventory can
//! say "orders calls users" rather than "10.0.3.7:41822 calls 10.0.5.2:8080".
//!
//! Local processes are named by the first matching operator rule, else by the container
//! they run in, else by their process name. Remote peers are named by a `cidr:` rule (or a
//! `port:` rule when the peer is a server on this node), else by their address.

pub mod kubernetes;
pub mod process;
pub mod rules;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

pub use kubernetes::{KubeIndex, Workload};
pub use process::ProcessFacts;
pub use rules::{Match, RuleError, ServiceRule};

/// How long facts about a pid are trusted: long enough that a busy server costs one
/// /proc read per few seconds, short enough that a reused pid is soon seen for what it is.
const FACTS_TTL: Duration = Duration::from_secs(10);
/// Bound on cached pids; the cache is simply cleared beyond it.
const MAX_CACHED: usize = 16_384;

/// A process observed on this node, as the capture path knows it.
#[derive(Clone, Copy, Debug)]
pub struct LocalProcess<'a> {
    pub pid: u32,
    pub comm: &'a str,
    /// The process's own address on the connection.
    pub addr: SocketAddr,
    /// True when the process is the server of the connection, so `addr`'s port is a
    /// listening port.
    pub serving: bool,
}

pub struct Identity {
    rules: Vec<ServiceRule>,
    proc_root: PathBuf,
    facts: Mutex<HashMap<u32, (Instant, Arc<ProcessFacts>)>>,
    /// Kubernetes names, when the agent runs in (or is pointed at) a cluster.
    kube: Option<Arc<RwLock<KubeIndex>>>,
}

impl Identity {
    pub fn new(rules: Vec<ServiceRule>) -> Identity {
        Identity::with_proc_root(rules, PathBuf::from("/proc"))
    }

    pub fn with_proc_root(rules: Vec<ServiceRule>, proc_root: PathBuf) -> Identity {
        Identity {
            rules,
            proc_root,
            facts: Mutex::new(HashMap::new()),
            kube: None,
        }
    }

    /// Names containers by their Kubernetes workload and cluster addresses by their Service.
    #[must_use]
    pub fn with_kubernetes(mut self, index: Arc<RwLock<KubeIndex>>) -> Identity {
        self.kube = Some(index);
        self
    }

    fn facts(&self, pid: u32) -> Arc<ProcessFacts> {
        let now = Instant::now();
        let mut stale = None;
        if let Ok(cache) = self.facts.lock() {
            if let Some((at, f)) = cache.get(&pid) {
                if now.duration_since(*at) < FACTS_TTL {
                    return f.clone();
                }
                stale = Some(f.clone());
            }
        }
        let read = ProcessFacts::read(&self.proc_root, pid);
        // A process that has exited keeps what was learnt while it lived.
        let f = match stale {
            Some(old) if read.exe.is_none() && read.cgroup.is_none() => old,
            _ => Arc::new(read),
        };
        self.remember(pid, now, f.clone());
        f
    }

    fn remember(&self, pid: u32, at: Instant, f: Arc<ProcessFacts>) {
        if let Ok(mut cache) = self.facts.lock() {
            if cache.len() >= MAX_CACHED {
                crate::limits::Limit::IdentityCache.reached();
                cache.clear();
            }
            cache.insert(pid, (at, f));
        }
    }

    /// A process just exec'd: learn what it is before a short-lived one exits. `exe` is
    /// the path the kernel reported for the exec, used when /proc is already gone.
    pub fn on_exec(&self, pid: u32, exe: &[u8]) {
        let mut f = ProcessFacts::read(&self.proc_root, pid);
        if f.exe.is_none() && exe.first() == Some(&b'/') {
            f.exe = Some(String::from_utf8_lossy(exe).into_owned());
        }
        log::debug!(
            "exec of {pid}: kernel says {:?}, facts {f:?}",
            String::from_utf8_lossy(exe)
        );
        self.remember(pid, Instant::now(), Arc::new(f));
    }

    /// The service a process on this node belongs to, and the Kubernetes pod it runs
    /// in when known (from one read of its facts).
    pub fn local(&self, p: LocalProcess<'_>) -> (Arc<str>, Option<Arc<Workload>>) {
        let facts = self.facts(p.pid);
        let pod = facts
            .container
            .as_ref()
            .and_then(|id| self.kube.as_ref()?.read().ok()?.workload(id));
        for rule in &self.rules {
            let hit = match &rule.matcher {
                Match::Port(port) => p.serving && p.addr.port() == *port,
                Match::Comm(c) => c == p.comm,
                Match::Exe(e) => facts.exe.as_deref() == Some(e.as_str()),
                Match::Cgroup(sub) => facts.cgroup.as_deref().is_some_and(|c| c.contains(sub)),
                Match::Cidr(_) => false,
            };
            if hit {
                return (rule.name.as_str().into(), pod);
            }
        }
        let service = match (&pod, &facts.container) {
            (Some(w), _) => w.service().into(),
            (None, Some(id)) => id.as_str().into(),
            (None, None) => p.comm.into(),
        };
        (service, pod)
    }

    /// The Kubernetes pod behind a remote address, when it is a pod IP.
    pub fn remote_workload(&self, addr: SocketAddr) -> Option<Arc<Workload>> {
        self.kube.as_ref()?.read().ok()?.pod_at(addr)
    }

    /// The service of a peer whose process was not observed. A server keeps its port in
    /// its name (`10.0.0.5:8080`); a client is named by address alone, because its port is
    /// ephemeral and would make every connection a new caller.
    pub fn remote(&self, addr: SocketAddr, serving: bool, on_this_node: bool) -> Arc<str> {
        for rule in &self.rules {
            let hit = match &rule.matcher {
                Match::Cidr(c) => c.contains(addr.ip()),
                Match::Port(port) => serving && on_this_node && addr.port() == *port,
                _ => false,
            };
            if hit {
                return rule.name.as_str().into();
            }
        }
        if let Some(name) = self
            .kube
            .as_ref()
            .and_then(|k| k.read().ok()?.service_at(addr))
        {
            return name;
        }
        if serving {
            addr.to_string().into()
        } else {
            addr.ip().to_string().into()
        }
    }
}

/// Whether a connection's remote end is on this same node (same network namespace view):
/// loopback, or the very address the local end uses.
pub fn same_node(local: IpAddr, remote: IpAddr) -> bool {
    remote.is_loopback() || remote == local || remote.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rs: &[&str]) -> Vec<ServiceRule> {
        rs.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn me(serving: bool, port: u16) -> LocalProcess<'static> {
        LocalProcess {
            pid: std::process::id(),
            comm: "myproc",
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            serving,
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let exe = std::env::current_exe().unwrap();
        let id = Identity::new(rules(&[
            "users=port:8080",
            &format!("tests=exe:{}", exe.display()),
            "byname=comm:myproc",
        ]));
        assert_eq!(&*id.local(me(true, 8080)).0, "users");
        // A client's local port is not a listening port.
        assert_eq!(&*id.local(me(false, 8080)).0, "tests");
        let id = Identity::new(rules(&["byname=comm:myproc"]));
        assert_eq!(&*id.local(me(false, 1)).0, "byname");
    }

    #[test]
    fn cgroup_substring() {
        let facts = ProcessFacts::read(std::path::Path::new("/proc"), std::process::id());
        let cg = facts.cgroup.unwrap();
        let id = Identity::new(vec![ServiceRule {
            name: "mine".into(),
            matcher: Match::Cgroup(cg),
        }]);
        assert_eq!(&*id.local(me(false, 1)).0, "mine");
    }

    #[test]
    fn falls_back_to_comm() {
        let id = Identity::new(vec![]);
        // This test process runs on the host, not in a container, on CI machines.
        let (name, _) = id.local(me(true, 9));
        assert!(&*name == "myproc" || name.len() == 12, "{name}");
        let gone = LocalProcess {
            pid: u32::MAX - 1,
            ..me(true, 9)
        };
        assert_eq!(&*id.local(gone).0, "myproc");
    }

    #[test]
    fn remote_peers() {
        let id = Identity::new(rules(&["partners=cidr:192.0.2.0/24", "api=port:8080"]));
        let a: SocketAddr = "192.0.2.9:443".parse().unwrap();
        assert_eq!(&*id.remote(a, true, false), "partners");
        let b: SocketAddr = "198.51.100.1:8080".parse().unwrap();
        assert_eq!(&*id.remote(b, true, false), "198.51.100.1:8080");
        assert_eq!(&*id.remote(b, false, false), "198.51.100.1");
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(&*id.remote(lo, true, true), "api");
        assert_eq!(&*id.remote(lo, false, true), "127.0.0.1");
    }

    #[test]
    fn same_node_addresses() {
        let l: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(same_node(l, "127.0.0.1".parse().unwrap()));
        assert!(same_node(l, l));
        assert!(!same_node(l, "10.0.0.2".parse().unwrap()));
    }
}
