//! Watches of the API server with `kube`'s watcher: this node's pods, every Service and
//! EndpointSlice. Each lists in pages, then follows changes as they happen (re-listing
//! after a lost watch, with back-off), so a pod that starts or a Service that changes is
//! named within a second, and the API server is not asked for the whole cluster again and
//! again. Objects are reduced to their facts as they arrive; the index the capture path
//! reads is rebuilt from those facts at most every `PUBLISH_EVERY`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use futures_util::{stream::BoxStream, StreamExt};
use kube::{
    api::{Api, ApiResource, DynamicObject},
    runtime::{watcher, WatchStreamExt},
    Client,
};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde_json::Value;

use super::{
    pod_facts, service_facts, slice_facts, KubeConfig, KubeError, KubeIndex, PodFacts,
    ServiceFacts, SliceFacts,
};

/// Changes are gathered this long before the index is rebuilt and published.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Objects kept per kind; more are counted and left out (a cluster this large needs the
/// agent's own sharding, not a bigger map).
pub const MAX_OBJECTS: usize = 200_000;
/// Objects per page of the initial lists.
const PAGE: u32 = 500;
/// How long the agent's start waits for the first complete lists, so that its first calls
/// are named; past it, calls are named as the lists arrive.
const FIRST_LISTS: Duration = Duration::from_secs(10);

/// Failed reads of the cluster; registered whether or not Kubernetes is configured, so a
/// dashboard shows 0 rather than nothing.
pub fn read_errors(registry: &mut Registry) -> Counter {
    crate::metrics::register(
        registry,
        "monitor_kubernetes_errors",
        "Failed reads or watches of Kubernetes metadata (retried; the last good view is kept)",
    )
}

/// What a watch reported, by kind.
enum Change {
    Pod(watcher::Event<DynamicObject>),
    Service(watcher::Event<DynamicObject>),
    Slice(watcher::Event<DynamicObject>),
}

/// One kind's objects by `namespace/name`, with the list being re-read kept apart until it
/// is complete, so that objects deleted while no watch ran disappear.
struct Store<F> {
    live: HashMap<String, F>,
    relisting: Option<HashMap<String, F>>,
    /// A complete list has been read at least once.
    listed: bool,
}

impl<F> Default for Store<F> {
    fn default() -> Self {
        Store {
            live: HashMap::new(),
            relisting: None,
            listed: false,
        }
    }
}

fn key(obj: &DynamicObject) -> String {
    let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    format!("{ns}/{name}")
}

impl<F> Store<F> {
    /// Applies one event; false when an object was left out for the cap.
    fn apply(
        &mut self,
        event: watcher::Event<DynamicObject>,
        facts: impl Fn(&Value) -> Option<F>,
    ) -> bool {
        let reduce = |obj: &DynamicObject| serde_json::to_value(obj).ok().and_then(|v| facts(&v));
        match event {
            watcher::Event::Init => self.relisting = Some(HashMap::new()),
            watcher::Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    self.live = listed;
                }
                self.listed = true;
            }
            watcher::Event::InitApply(obj) => {
                let into = self.relisting.get_or_insert_with(HashMap::new);
                return insert(into, key(&obj), reduce(&obj));
            }
            watcher::Event::Apply(obj) => return insert(&mut self.live, key(&obj), reduce(&obj)),
            watcher::Event::Delete(obj) => {
                self.live.remove(&key(&obj));
            }
        }
        true
    }
}

fn insert<F>(into: &mut HashMap<String, F>, key: String, facts: Option<F>) -> bool {
    let Some(facts) = facts else {
        into.remove(&key);
        return true;
    };
    if into.len() >= MAX_OBJECTS && !into.contains_key(&key) {
        return false;
    }
    into.insert(key, facts);
    true
}

#[derive(Default)]
struct Stores {
    pods: Store<PodFacts>,
    services: Store<ServiceFacts>,
    slices: Store<SliceFacts>,
}

impl Stores {
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Pod(e) => self.pods.apply(e, pod_facts),
            Change::Service(e) => self.services.apply(e, service_facts),
            Change::Slice(e) => self.slices.apply(e, slice_facts),
        }
    }

    fn all_listed(&self) -> bool {
        self.pods.listed && self.services.listed && self.slices.listed
    }

    fn index(&self) -> KubeIndex {
        KubeIndex::build(
            self.pods.live.values(),
            self.services.live.values(),
            self.slices.live.values(),
        )
    }
}

/// The metrics the watch thread counts into.
#[derive(Clone)]
pub struct WatchCounters {
    pub errors: Counter,
    /// Objects left out because a kind reached `MAX_OBJECTS`.
    pub over_cap: Counter,
}

impl WatchCounters {
    pub fn register(registry: &mut Registry) -> WatchCounters {
        WatchCounters {
            errors: read_errors(registry),
            over_cap: crate::metrics::register(
                registry,
                "monitor_kubernetes_objects_over_cap",
                "Kubernetes objects left out of the agent's view: a kind reached its cap",
            ),
        }
    }
}

fn client_for(cfg: &KubeConfig) -> Result<Client, KubeError> {
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|source| KubeError::File {
            path: path.clone(),
            source,
        })
    };
    let token = read(&cfg.token_file)?;
    let ca = read(&cfg.ca_file)?;
    if !ca.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(KubeError::Ca(cfg.ca_file.clone()));
    }
    let url = cfg
        .api_server
        .parse()
        .map_err(|_| KubeError::Url(cfg.api_server.clone()))?;
    let mut config = kube::Config::new(url);
    // Both files are re-read as the kubelet rotates them. kube sends a token file's bytes as
    // they are, so one written by hand with a final newline is read once, trimmed.
    config.root_cert_file = Some(cfg.ca_file.clone());
    let token = String::from_utf8_lossy(&token);
    if token.trim() == token {
        config.auth_info.token_file = Some(cfg.token_file.display().to_string());
    } else {
        config.auth_info.token = Some(secrecy::SecretString::from(token.trim().to_string()));
    }
    config.connect_timeout = Some(Duration::from_secs(10));
    Client::try_from(config).map_err(|e| KubeError::Client(e.to_string()))
}

/// Starts the watches on their own thread (and single-threaded runtime); the index fills
/// as the first lists arrive.
pub fn spawn(
    cfg: KubeConfig,
    index: Arc<RwLock<KubeIndex>>,
    counters: WatchCounters,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KubeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(KubeError::Thread)?;
    // Made here so that a bad address or file is refused at start, in one sentence.
    let client = runtime.block_on(async { client_for(&cfg) })?;
    let (listed_tx, listed) = std::sync::mpsc::sync_channel(1);
    let handle = thread::Builder::new()
        .name("kubernetes".into())
        .spawn(move || runtime.block_on(follow(client, cfg, index, counters, stop, listed_tx)))
        .map_err(KubeError::Thread)?;
    if listed.recv_timeout(FIRST_LISTS).is_err() {
        log::warn!("kubernetes: the first lists were not complete within {FIRST_LISTS:?}; calls are named as they arrive");
    }
    Ok(handle)
}

/// `discovery.k8s.io/v1` where the API server serves it (Kubernetes 1.21 and later), else
/// `v1beta1`; asked again after a failure, until the agent stops.
async fn slice_version(
    client: &Client,
    errors: &Counter,
    stop: &AtomicBool,
) -> Option<&'static str> {
    let mut wait = Duration::from_millis(500);
    while !stop.load(Ordering::Relaxed) {
        match client.list_api_groups().await {
            Ok(list) => {
                let group = list.groups.iter().find(|g| g.name == "discovery.k8s.io");
                let served =
                    |v: &str| group.is_some_and(|g| g.versions.iter().any(|x| x.version == v));
                return ["v1", "v1beta1"].into_iter().find(|v| served(v));
            }
            Err(e) => {
                errors.inc();
                log::warn!("kubernetes: cannot list API groups (retrying): {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
    None
}

fn watch_of(
    client: &Client,
    (group, version, kind, plural): (&str, &str, &str, &str),
    config: watcher::Config,
) -> BoxStream<'static, Result<watcher::Event<DynamicObject>, watcher::Error>> {
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    );
    watcher(api, config.page_size(PAGE))
        .default_backoff()
        .boxed()
}

async fn follow(
    client: Client,
    cfg: KubeConfig,
    index: Arc<RwLock<KubeIndex>>,
    counters: WatchCounters,
    stop: Arc<AtomicBool>,
    listed: std::sync::mpsc::SyncSender<()>,
) {
    let slices = slice_version(&client, &counters.errors, &stop).await;
    if stop.load(Ordering::Relaxed) {
        return;
    }
    let pods_config = match &cfg.node_name {
        Some(node) => watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        None => watcher::Config::default(),
    };
    let mut streams = vec![
        watch_of(&client, ("", "v1", "Pod", "pods"), pods_config)
            .map(|r| r.map(Change::Pod))
            .boxed(),
        watch_of(
            &client,
            ("", "v1", "Service", "services"),
            watcher::Config::default(),
        )
        .map(|r| r.map(Change::Service))
        .boxed(),
    ];
    if let Some(version) = slices {
        streams.push(
            watch_of(
                &client,
                (
                    "discovery.k8s.io",
                    version,
                    "EndpointSlice",
                    "endpointslices",
                ),
                watcher::Config::default(),
            )
            .map(|r| r.map(Change::Slice))
            .boxed(),
        );
    } else {
        log::warn!(
            "kubernetes: the API server serves no EndpointSlices; Service backends are not named"
        );
    }
    log::info!(
        "kubernetes: watching pods{}, services and endpointslices ({}) at {}",
        cfg.node_name
            .as_deref()
            .map(|n| format!(" of node {n}"))
            .unwrap_or_default(),
        slices.map_or("none".to_string(), |v| format!("discovery.k8s.io/{v}")),
        cfg.api_server
    );
    let mut stores = Stores::default();
    stores.slices.listed = slices.is_none();
    let changes = futures_util::stream::select_all(streams);
    apply_changes(changes, stores, &index, &counters, &stop, listed).await;
}

/// Applies changes as they come, publishing a rebuilt index when something changed and
/// `PUBLISH_EVERY` has passed; checks `stop` at least that often.
async fn apply_changes(
    mut changes: impl futures_util::Stream<Item = Result<Change, watcher::Error>> + Unpin,
    mut stores: Stores,
    index: &RwLock<KubeIndex>,
    counters: &WatchCounters,
    stop: &AtomicBool,
    listed: std::sync::mpsc::SyncSender<()>,
) {
    let mut listed = Some(listed);
    let mut dirty = false;
    let mut published = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(PUBLISH_EVERY, changes.next()).await {
            Ok(Some(Ok(change))) => {
                if !stores.apply(change) {
                    counters.over_cap.inc();
                }
                dirty = true;
            }
            Ok(Some(Err(e))) => {
                counters.errors.inc();
                log::warn!("kubernetes: watch failed (keeping the last view, retrying): {e}");
            }
            Ok(None) => return,
            Err(_) => {}
        }
        if dirty && published.elapsed() >= PUBLISH_EVERY {
            let fresh = stores.index();
            log::debug!(
                "kubernetes: {} containers, {} service IPs, {} backends",
                fresh.containers.len(),
                fresh.ips.len(),
                fresh.frontends.len()
            );
            if let Ok(mut cur) = index.write() {
                *cur = fresh;
            }
            dirty = false;
            published = Instant::now();
            if stores.all_listed() {
                if let Some(tx) = listed.take() {
                    let _ = tx.try_send(());
                }
            }
        }
    }
}
