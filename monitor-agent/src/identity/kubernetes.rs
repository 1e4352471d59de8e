//! Kubernetes names for what the agent sees: a container id becomes namespace / pod /
//! workload / service account, a pod or cluster IP becomes the Service behind it, and a
//! Service's backend address leads back to the Service's own. Kept current by watches of
//! the API server (`watch`), from which each object's facts are taken here.

mod selector;
mod watch;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::process::container_id;
pub use selector::{Labels, WorkloadSelector};
pub use watch::{read_errors, spawn, WatchCounters, MAX_OBJECTS};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Error)]
pub enum KubeError {
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {0} holds no PEM certificate")]
    Ca(PathBuf),
    #[error("the API server address {0:?} is not a URL")]
    Url(String),
    #[error("cannot make a client for the API server: {0}")]
    Client(String),
    #[error("cannot start the kubernetes thread: {0}")]
    Thread(std::io::Error),
}

/// Where the API server is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct KubeConfig {
    /// `https://host:port`, no trailing slash.
    pub api_server: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    /// Only this node's pods are watched (the DaemonSet sets it from `spec.nodeName`).
    pub node_name: Option<String>,
}

impl KubeConfig {
    /// The in-cluster configuration every pod gets, when the agent runs in one.
    pub fn in_cluster() -> Option<KubeConfig> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Some(KubeConfig::at(format!("https://{host}:{port}")))
    }

    /// An API server with the pod's service-account token and CA, as in a cluster.
    pub fn at(api_server: String) -> KubeConfig {
        KubeConfig {
            api_server,
            token_file: PathBuf::from(SA_DIR).join("token"),
            ca_file: PathBuf::from(SA_DIR).join("ca.crt"),
            node_name: std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()),
        }
    }
}

/// What a local process is, in Kubernetes terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub namespace: String,
    pub pod: String,
    /// The owning Deployment, StatefulSet, DaemonSet, Job... or the pod itself.
    pub workload: String,
    pub kind: String,
    pub service_account: String,
}

impl Workload {
    /// The service name the inventory and policies use: `namespace/workload`.
    pub fn service(&self) -> String {
        format!("{}/{}", self.namespace, self.workload)
    }
}

/// The cluster as last read.
#[derive(Default, Debug)]
pub struct KubeIndex {
    /// By 12-hex-digit container id.
    pub containers: HashMap<String, Arc<Workload>>,
    /// Pod IPs and cluster IPs → `namespace/service`.
    pub ips: HashMap<IpAddr, Arc<str>>,
    /// Pod IPs (not host-network pods, whose IP is the node's) → the pod's workload.
    pub pods: HashMap<IpAddr, Arc<Workload>>,
    /// A Service backend's address (pod IP, target port) → the Service's (cluster IP,
    /// port), which is where its clients connect before DNAT.
    pub frontends: HashMap<SocketAddr, SocketAddr>,
    /// Service addresses with a backend among this node's pods (only this node's are
    /// watched): a client's call to one will be seen from the server's side too.
    pub fronts_here: HashSet<SocketAddr>,
    /// By service name: how a policy selects its pods.
    pub selectors: HashMap<String, WorkloadSelector>,
    pub refreshed: Option<Instant>,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// `orders-7d9f8c6b5d` (a ReplicaSet of Deployment `orders`) → `orders`.
fn deployment_of(replica_set: &str) -> &str {
    match replica_set.rsplit_once('-') {
        Some((name, hash))
            if !name.is_empty()
                && (5..=10).contains(&hash.len())
                // The pod-template-hash alphabet: no vowels, no 0, 1 or 3.
                && hash.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)) =>
        {
            name
        }
        _ => replica_set,
    }
}

/// What one pod tells: its workload, its own IPs, its containers.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub workload: Arc<Workload>,
    pub ips: Vec<IpAddr>,
    pub containers: Vec<String>,
    /// `None` when the pod has more labels than are kept.
    pub labels: Option<Labels>,
}

/// What one Service tells: its name, cluster IPs and ports (name, port).
#[derive(Debug, Clone)]
pub struct ServiceFacts {
    pub name: Arc<str>,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<(String, u16)>,
    /// `spec.selector`; `None` for a Service without one (or with too many labels).
    pub selector: Option<Labels>,
}

/// What one EndpointSlice tells: its Service, backend addresses and ports (name, port).
/// `discovery.k8s.io/v1` and `v1beta1` agree on these fields.
#[derive(Debug, Clone)]
pub struct SliceFacts {
    pub service: Arc<str>,
    pub addrs: Vec<IpAddr>,
    pub ports: Vec<(String, u16)>,
}

fn ips<'a>(values: impl Iterator<Item = &'a Value>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = values
        .filter_map(Value::as_str)
        .filter_map(|i| i.parse().ok())
        .collect();
    out.dedup();
    out
}

fn named_ports(ports: &Value, number: &str) -> Vec<(String, u16)> {
    ports
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| s(p, &["protocol"]).unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p[number].as_u64()?).ok()?;
            Some((s(p, &["name"]).unwrap_or_default().to_string(), port))
        })
        .collect()
}

/// A pod object (as the API server serves it) → its facts.
pub fn pod_facts(pod: &Value) -> Option<PodFacts> {
    let ns = s(pod, &["metadata", "namespace"])?;
    let name = s(pod, &["metadata", "name"])?;
    let owner = pod["metadata"]["ownerReferences"].as_array().and_then(|o| {
        o.iter()
            .find(|r| r["controller"].as_bool() == Some(true))
            .or(o.first())
    });
    let (kind, workload) = match owner.and_then(|o| Some((s(o, &["kind"])?, s(o, &["name"])?))) {
        Some(("ReplicaSet", rs)) => ("Deployment", deployment_of(rs)),
        Some((k, n)) => (k, n),
        None => ("Pod", name),
    };
    let workload = Arc::new(Workload {
        namespace: ns.to_string(),
        pod: name.to_string(),
        workload: workload.to_string(),
        kind: kind.to_string(),
        service_account: s(pod, &["spec", "serviceAccountName"])
            .unwrap_or("default")
            .to_string(),
    });
    let own_ips = if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
        Vec::new()
    } else {
        let listed = pod["status"]["podIPs"].as_array().into_iter().flatten();
        ips(listed
            .map(|p| &p["ip"])
            .chain(std::iter::once(&pod["status"]["podIP"])))
    };
    let containers = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .flat_map(|field| pod["status"][*field].as_array().into_iter().flatten())
    .filter_map(|c| {
        // `containerd://<64 hex>`, `docker://...`, `cri-o://...`
        let raw = s(c, &["containerID"])?;
        container_id(raw.rsplit('/').next().unwrap_or(raw))
    })
    .collect();
    Some(PodFacts {
        workload,
        ips: own_ips,
        containers,
        labels: selector::labels_of(&pod["metadata"]["labels"]).or_else(|| {
            // A pod without labels has an empty set, not an unreadable one.
            pod["metadata"].get("labels").is_none().then(Labels::new)
        }),
    })
}

/// A Service object → its facts (a headless Service has no cluster IP).
pub fn service_facts(svc: &Value) -> Option<ServiceFacts> {
    let ns = s(svc, &["metadata", "namespace"])?;
    let name = s(svc, &["metadata", "name"])?;
    let listed = svc["spec"]["clusterIPs"].as_array();
    let cluster_ips = match listed {
        Some(l) => ips(l.iter()),
        None => ips(std::iter::once(&svc["spec"]["clusterIP"])),
    };
    Some(ServiceFacts {
        name: format!("{ns}/{name}").into(),
        ips: cluster_ips,
        ports: named_ports(&svc["spec"]["ports"], "port"),
        selector: selector::labels_of(&svc["spec"]["selector"]),
    })
}

/// An EndpointSlice object → its facts; a slice that names no Service tells nothing.
pub fn slice_facts(slice: &Value) -> Option<SliceFacts> {
    let ns = s(slice, &["metadata", "namespace"])?;
    let svc = s(slice, &["metadata", "labels", "kubernetes.io/service-name"])?;
    let endpoints = slice["endpoints"].as_array().into_iter().flatten();
    Some(SliceFacts {
        service: format!("{ns}/{svc}").into(),
        addrs: ips(endpoints.flat_map(|e| e["addresses"].as_array().into_iter().flatten())),
        ports: named_ports(&slice["ports"], "port"),
    })
}

impl KubeIndex {
    /// The index of everything watched, rebuilt whole: Services first, so that their
    /// backends can be linked to them.
    pub fn build<'a>(
        pods: impl Iterator<Item = &'a PodFacts> + Clone,
        services: impl Iterator<Item = &'a ServiceFacts> + Clone,
        slices: impl Iterator<Item = &'a SliceFacts>,
    ) -> KubeIndex {
        let mut idx = KubeIndex {
            selectors: selector::selectors(pods.clone(), services.clone()),
            ..KubeIndex::default()
        };
        for p in pods {
            idx.add_pod(p);
        }
        let mut by_name: HashMap<&str, &ServiceFacts> = HashMap::new();
        for svc in services {
            for ip in &svc.ips {
                idx.ips.insert(*ip, svc.name.clone());
            }
            by_name.insert(&svc.name, svc);
        }
        for slice in slices {
            idx.add_slice(slice, by_name.get(&*slice.service).copied());
        }
        idx.refreshed = Some(Instant::now());
        idx
    }

    fn add_pod(&mut self, p: &PodFacts) {
        for ip in &p.ips {
            self.pods.insert(*ip, p.workload.clone());
        }
        for id in &p.containers {
            self.containers.insert(id.clone(), p.workload.clone());
        }
    }

    /// Backend addresses name their Service; each backend port leads to the Service port of
    /// the same name (the first cluster IP, as clients of a single-stack Service see it).
    fn add_slice(&mut self, slice: &SliceFacts, service: Option<&ServiceFacts>) {
        for ip in &slice.addrs {
            self.ips.insert(*ip, slice.service.clone());
        }
        let Some(svc) = service else { return };
        let Some(front_ip) = svc.ips.first() else {
            return;
        };
        for (name, target) in &slice.ports {
            let Some((_, port)) = svc.ports.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let front = SocketAddr::new(*front_ip, *port);
            for ip in &slice.addrs {
                self.frontends
                    .entry(SocketAddr::new(*ip, *target))
                    .or_insert(front);
                if self.pods.contains_key(ip) {
                    self.fronts_here.insert(front);
                }
            }
        }
    }

    pub fn workload(&self, container: &str) -> Option<Arc<Workload>> {
        self.containers.get(container).cloned()
    }

    pub fn pod_at(&self, addr: SocketAddr) -> Option<Arc<Workload>> {
        self.pods.get(&addr.ip()).cloned()
    }

    pub fn service_at(&self, addr: SocketAddr) -> Option<Arc<str>> {
        self.ips.get(&addr.ip()).cloned()
    }

    /// Every selector, ordered by service name.
    pub fn selectors(&self) -> Vec<WorkloadSelector> {
        let mut out: Vec<WorkloadSelector> = self.selectors.values().cloned().collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }

    /// Whether the Service address `front` has a backend on this node.
    pub fn backed_here(&self, front: SocketAddr) -> bool {
        self.fronts_here.contains(&front)
    }

    /// Where the clients of a Service backend at `addr` connected: the Service's cluster
    /// address, or `addr` itself when it backs no Service.
    pub fn frontend_of(&self, addr: SocketAddr) -> SocketAddr {
        self.frontends.get(&addr).copied().unwrap_or(addr)
    }
}

/// Every item of a list (as `GET /api/v1/pods` returns it), through `facts`.
pub fn list_facts<T>(list: &Value, facts: impl Fn(&Value) -> Option<T>) -> Vec<T> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(facts)
        .collect()
}

#[cfg(test)]
mod tests;
