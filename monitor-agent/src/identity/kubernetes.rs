//! Kubernetes names for what the agent sees: a container id becomes namespace / pod /
//! workload / service account, and a pod or cluster IP becomes the Service behind it. Read
//! from the API server with the pod's service-account token, refreshed periodically;
//! failures are logged and retried, and the last good view is kept meanwhile.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::process::container_id;

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
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
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
    /// Only this node's pods are listed (the DaemonSet sets it from `spec.nodeName`).
    pub node_name: Option<String>,
    pub refresh: Duration,
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
            refresh: Duration::from_secs(30),
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

/// Containers of a pod list (`GET /api/v1/pods`) → their workloads.
pub fn index_pods(list: &Value, into: &mut KubeIndex) {
    for pod in list["items"].as_array().into_iter().flatten() {
        let (Some(ns), Some(name)) = (
            s(pod, &["metadata", "namespace"]),
            s(pod, &["metadata", "name"]),
        ) else {
            continue;
        };
        let owner = pod["metadata"]["ownerReferences"].as_array().and_then(|o| {
            o.iter()
                .find(|r| r["controller"].as_bool() == Some(true))
                .or(o.first())
        });
        let (kind, workload) = match owner.and_then(|o| Some((s(o, &["kind"])?, s(o, &["name"])?)))
        {
            Some(("ReplicaSet", rs)) => ("Deployment", deployment_of(rs)),
            Some((k, n)) => (k, n),
            None => ("Pod", name),
        };
        let w = Arc::new(Workload {
            namespace: ns.to_string(),
            pod: name.to_string(),
            workload: workload.to_string(),
            kind: kind.to_string(),
            service_account: s(pod, &["spec", "serviceAccountName"])
                .unwrap_or("default")
                .to_string(),
        });
        if pod["spec"]["hostNetwork"].as_bool() != Some(true) {
            for ip in pod["status"]["podIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| s(p, &["ip"]))
                .chain(s(pod, &["status", "podIP"]))
            {
                if let Ok(ip) = ip.parse() {
                    into.pods.insert(ip, w.clone());
                }
            }
        }
        for field in [
            "containerStatuses",
            "initContainerStatuses",
            "ephemeralContainerStatuses",
        ] {
            for c in pod["status"][field].as_array().into_iter().flatten() {
                if let Some(id) = s(c, &["containerID"]).and_then(|raw| {
                    // `containerd://<64 hex>`, `docker://...`, `cri-o://...`
                    container_id(raw.rsplit('/').next().unwrap_or(raw))
                }) {
                    into.containers.insert(id, w.clone());
                }
            }
        }
    }
}

/// Cluster IPs of a service list (`GET /api/v1/services`).
pub fn index_services(list: &Value, into: &mut KubeIndex) {
    for svc in list["items"].as_array().into_iter().flatten() {
        let (Some(ns), Some(name)) = (
            s(svc, &["metadata", "namespace"]),
            s(svc, &["metadata", "name"]),
        ) else {
            continue;
        };
        let label: Arc<str> = format!("{ns}/{name}").into();
        let ips = svc["spec"]["clusterIPs"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![svc["spec"]["clusterIP"].clone()]);
        for ip in ips
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|i| i.parse().ok())
        {
            into.ips.insert(ip, label.clone());
        }
    }
}

/// Pod IPs behind services, from EndpointSlices (`discovery.k8s.io/v1`).
pub fn index_endpoint_slices(list: &Value, into: &mut KubeIndex) {
    for slice in list["items"].as_array().into_iter().flatten() {
        let (Some(ns), Some(svc)) = (
            s(slice, &["metadata", "namespace"]),
            s(slice, &["metadata", "labels", "kubernetes.io/service-name"]),
        ) else {
            continue;
        };
        let label: Arc<str> = format!("{ns}/{svc}").into();
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            for ip in ep["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let Ok(ip) = ip.parse() {
                    into.ips.insert(ip, label.clone());
                }
            }
        }
    }
}

struct Client {
    cfg: KubeConfig,
    agent: ureq::Agent,
}

impl Client {
    fn new(cfg: KubeConfig) -> Result<Client, KubeError> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let pem = std::fs::read(&cfg.ca_file).map_err(|source| KubeError::File {
            path: cfg.ca_file.clone(),
            source,
        })?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(KubeError::Ca(cfg.ca_file.clone()));
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&certs))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        Ok(Client { cfg, agent })
    }

    fn get(&self, path: &str) -> Result<Value, KubeError> {
        let url = format!("{}{path}", self.cfg.api_server);
        // Re-read each time: kubelet rotates projected tokens.
        let token =
            std::fs::read_to_string(&self.cfg.token_file).map_err(|source| KubeError::File {
                path: self.cfg.token_file.clone(),
                source,
            })?;
        let http = |reason: String| KubeError::Http {
            url: url.clone(),
            reason,
        };
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .header("Accept", "application/json")
            .call()
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| http(e.to_string()))?;
        if !status.is_success() {
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(body);
            return Err(http(format!("{}: {}", status.as_u16(), msg.trim())));
        }
        serde_json::from_str(&body).map_err(|e| http(format!("not JSON: {e}")))
    }

    fn read_index(&self) -> Result<KubeIndex, KubeError> {
        let mut idx = KubeIndex::default();
        let pods = match &self.cfg.node_name {
            Some(n) => format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{n}"),
            None => "/api/v1/pods".to_string(),
        };
        index_pods(&self.get(&pods)?, &mut idx);
        index_services(&self.get("/api/v1/services")?, &mut idx);
        index_endpoint_slices(
            &self.get("/apis/discovery.k8s.io/v1/endpointslices")?,
            &mut idx,
        );
        idx.refreshed = Some(Instant::now());
        Ok(idx)
    }
}

/// Failed reads of the cluster; registered whether or not Kubernetes is configured, so a
/// dashboard shows 0 rather than nothing.
pub fn read_errors(registry: &mut Registry) -> Counter {
    crate::metrics::register(
        registry,
        "monitor_kubernetes_errors",
        "Failed reads of Kubernetes metadata (retried; the last good view is kept)",
    )
}

/// Reads the cluster now (so the first calls are named), then every `refresh`.
pub fn spawn(
    cfg: KubeConfig,
    index: Arc<RwLock<KubeIndex>>,
    errors: Counter,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KubeError> {
    let client = Client::new(cfg.clone())?;
    let load = move |client: &Client| match client.read_index() {
        Ok(idx) => {
            log::debug!(
                "kubernetes: {} containers, {} service IPs",
                idx.containers.len(),
                idx.ips.len()
            );
            if let Ok(mut cur) = index.write() {
                *cur = idx;
            }
            true
        }
        Err(e) => {
            errors.inc();
            log::warn!("kubernetes metadata not refreshed (keeping the last view, retrying): {e}");
            false
        }
    };
    let first_ok = load(&client);
    if first_ok {
        log::info!("kubernetes metadata from {}", cfg.api_server);
    }
    thread::Builder::new()
        .name("kubernetes".into())
        .spawn(move || {
            let mut wait = if first_ok {
                cfg.refresh
            } else {
                Duration::from_secs(2)
            };
            let mut since = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(200));
                if since.elapsed() < wait {
                    continue;
                }
                since = Instant::now();
                wait = if load(&client) {
                    cfg.refresh
                } else {
                    // Back off while the API server is unreachable.
                    (wait * 2).min(cfg.refresh)
                };
            }
        })
        .map_err(KubeError::Thread)
}

impl KubeIndex {
    pub fn workload(&self, container: &str) -> Option<Arc<Workload>> {
        self.containers.get(container).cloned()
    }

    pub fn pod_at(&self, addr: SocketAddr) -> Option<Arc<Workload>> {
        self.pods.get(&addr.ip()).cloned()
    }

    pub fn service_at(&self, addr: SocketAddr) -> Option<Arc<str>> {
        self.ips.get(&addr.ip()).cloned()
    }
}

#[cfg(test)]
mod tests;
