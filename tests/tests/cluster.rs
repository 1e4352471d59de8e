//! End-to-end on a real Kubernetes: the manifests of `deploy/kubernetes`, applied as they are
//! with only the image overridden, run the agent's image as a DaemonSet on the one-node
//! cluster that `cargo xtask kube test` brings up (and takes down). Ignored in a plain
//! `cargo test`: they need that cluster, and xtask runs them with `--ignored`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use monitor_agent::{
    api::response::{CallsAnswer, InventoryAnswer, WorkloadsAnswer},
    identity::Workload,
};
use monitor_tests::{
    agent::{http_get, http_get_with, run_cli},
    kube::{capabilities, kustomization_dir, Applied, Cluster, BASE_FROM_KUSTOMIZATION},
    prometheus::Prometheus,
    workspace_root,
};

/// The query API's token, as the Secret the kustomization generates holds it.
const TOKEN: &str = "cluster-test-token-6f1d2c";

const NAMESPACE: &str = "monitor";
const SELECTOR: &str = "app.kubernetes.io/name=monitor-agent";

/// The capabilities `deploy/kubernetes/daemonset.yaml` grants, read from the file.
fn declared_capabilities() -> BTreeSet<String> {
    let path = workspace_root().join("deploy/kubernetes/daemonset.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("add:"))
        .expect("the DaemonSet adds capabilities");
    line.trim()
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .collect()
}

/// The user's kustomization, as the README shows it, plus the token Secret; `patches`
/// are JSON 6902 patches of the DaemonSet.
fn kustomization(cluster: &Cluster, patch: Option<&str>) -> String {
    let (name, tag) = cluster
        .agent_image
        .rsplit_once(':')
        .expect("an image with a tag");
    let mut text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         bases:\n  - {BASE_FROM_KUSTOMIZATION}\nimages:\n  - name: ghcr.io/example/monitor-agent\n    \
         newName: {name}\n    newTag: {tag}\nsecretGenerator:\n  - name: monitor-agent-token\n    \
         namespace: {NAMESPACE}\n    literals:\n      - token={TOKEN}\ngeneratorOptions:\n  \
         disableNameSuffixHash: true\n"
    );
    if patch.is_some() {
        text.push_str(
            "patchesJson6902:\n  - target:\n      group: apps\n      version: v1\n      \
             kind: DaemonSet\n      name: monitor-agent\n      namespace: monitor\n    \
             path: patch.yaml\n",
        );
    }
    text
}

/// The manifests applied with only the image overridden, once the DaemonSet is rolled out.
fn deploy_agent(cluster: &Cluster) -> Applied<'_> {
    let applied = Applied::kustomization(cluster, "agent", &kustomization(cluster, None), &[]);
    cluster.kubectl(&[
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        "daemonset/monitor-agent",
        "--timeout=180s",
    ]);
    applied
}

fn agent_pod(cluster: &Cluster) -> String {
    cluster.jsonpath(
        &["pods", "-n", NAMESPACE, "-l", SELECTOR],
        "{.items[0].metadata.name}",
    )
}

#[test]
#[ignore = "needs the cluster that `cargo xtask kube test` brings up"]
fn the_daemonset_from_deploy_runs_ready_with_its_declared_privileges() {
    let cluster = Cluster::from_env();
    let _agent = deploy_agent(&cluster);
    let pod = agent_pod(&cluster);
    let ip = cluster.jsonpath(&["pod", "-n", NAMESPACE, &pod], "{.status.podIP}");
    let api: SocketAddr = format!("{ip}:9464").parse().expect("a pod IP");

    // Ready means the readiness probe answered; the liveness probe starts after 10 s and
    // would restart the container after three failures, 10 s apart.
    let (status, body) = http_get(api, "/healthz").expect("the agent's pod answers");
    assert_eq!(status, 200, "/healthz: {body}");
    std::thread::sleep(Duration::from_secs(35));
    let restarts = cluster.jsonpath(
        &["pod", "-n", NAMESPACE, &pod],
        "{.status.containerStatuses[0].restartCount}",
    );
    assert_eq!(restarts, "0", "the liveness probe restarted the agent");
    let ready = cluster.jsonpath(
        &["pod", "-n", NAMESPACE, &pod],
        r#"{.status.conditions[?(@.type=="Ready")].status}"#,
    );
    assert_eq!(ready, "True");

    // Off loopback the query API wants the token from the Secret; with it, the agent's own
    // inventory holds the kubelet's probes of /healthz, served by the agent's DaemonSet.
    let (status, _) = http_get(api, "/api/v1/inventory").unwrap();
    assert_eq!(status, 401, "the query API answered without the token");
    let (status, body) = http_get_with(api, "/api/v1/inventory", Some(TOKEN)).unwrap();
    assert_eq!(status, 200, "{body}");
    let inventory: InventoryAnswer = serde_json::from_str(&body).unwrap();
    let probes = inventory
        .endpoints
        .iter()
        .find(|e| {
            e.service == "monitor/monitor-agent" && e.method == "GET" && e.route == "/healthz"
        })
        .unwrap_or_else(|| panic!("the probes are not in the agent's inventory: {body}"));
    assert!(
        probes.statuses.get("200").copied().unwrap_or(0) >= 6,
        "fewer probes than 35 s of readiness and liveness checks make: {probes:?}"
    );

    // The declared capabilities and no more, effective and bounding (less those the node
    // itself lacks: this sandbox withholds SYS_RESOURCE from everything it runs).
    let pid = cluster.container_pid(NAMESPACE, &pod);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let node = std::fs::read_to_string("/proc/1/status").unwrap();
    let node_caps = capabilities(&node, "CapBnd:");
    let declared: BTreeSet<String> = declared_capabilities()
        .into_iter()
        .filter(|c| node_caps.contains(c))
        .collect();
    assert!(declared.contains("BPF") && declared.contains("PERFMON"));
    assert_eq!(capabilities(&status, "CapEff:"), declared);
    assert_eq!(capabilities(&status, "CapBnd:"), declared);
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "the agent runs without the runtime's seccomp filter"
    );

    service_account_may_read_only_what_it_needs(&cluster);
    prometheus_scrapes_through_the_headless_service(&cluster);
}

fn service_account_may_read_only_what_it_needs(cluster: &Cluster) {
    let sa = "--as=system:serviceaccount:monitor:monitor-agent";
    let can = |args: &[&str]| {
        let mut full = vec!["auth", "can-i"];
        full.extend(args);
        full.push(sa);
        let out = cluster.kubectl_output(&full);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for resource in ["pods", "services", "endpointslices.discovery.k8s.io"] {
        for verb in ["list", "watch"] {
            assert_eq!(
                can(&[verb, resource, "--all-namespaces"]),
                "yes",
                "{verb} {resource}"
            );
        }
    }
    assert_eq!(can(&["get", "secrets", "--all-namespaces"]), "no");
    assert_eq!(can(&["list", "secrets", "-n", NAMESPACE]), "no");
    assert_eq!(
        can(&["get", "pods", "--subresource=log", "--all-namespaces"]),
        "no"
    );
    assert_eq!(can(&["create", "pods", "-n", NAMESPACE]), "no");
}

/// Debian's Prometheus is built without Kubernetes service discovery, so the headless
/// Service's endpoints (what its DNS name resolves to) reach it as a file, with the pod's
/// name as a label, as `kubernetes_sd_configs` with `role: endpoints` would give them.
fn prometheus_scrapes_through_the_headless_service(cluster: &Cluster) {
    let targets = cluster.jsonpath(
        &["endpoints", "-n", NAMESPACE, "monitor-agent"],
        r#"{range .subsets[*]}{range .addresses[*]}{.ip} {.targetRef.name}{"\n"}{end}{end}"#,
    );
    let port = cluster.jsonpath(
        &["endpoints", "-n", NAMESPACE, "monitor-agent"],
        r#"{.subsets[0].ports[?(@.name=="http-metrics")].port}"#,
    );
    let groups: Vec<serde_json::Value> = targets
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(ip, pod)| serde_json::json!({"targets": [format!("{ip}:{port}")], "labels": {"pod": pod}}))
        .collect();
    assert_eq!(
        groups.len(),
        1,
        "the headless Service lists one agent: {targets:?}"
    );
    let file = kustomization_dir("prometheus-targets").with_extension("json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, serde_json::Value::from(groups).to_string()).unwrap();
    let prom = Prometheus::start_with(&format!(
        "  - job_name: monitor-agent\n    file_sd_configs:\n      - files: ['{}']\n",
        file.display()
    ));
    let pod = agent_pod(cluster);
    let up = prom.wait(r#"up{job="monitor-agent"}"#, |r| r[0]["value"][1] == "1");
    assert_eq!(up.len(), 1, "one agent pod, one target: {up:?}");
    assert_eq!(up[0]["value"][1], "1", "the scrape failed: {up:?}");
    assert_eq!(up[0]["metric"]["pod"], pod.as_str());
    // The agent's own metrics, saying that its programs are attached inside the pod.
    let attached = prom.wait(
        r#"monitor_attached_programs{job="monitor-agent"} > 0"#,
        |r| !r.is_empty(),
    );
    assert!(
        !attached.is_empty(),
        "Prometheus has no attached programs from the agent's pod"
    );
}

#[test]
#[ignore = "needs the cluster that `cargo xtask kube test` brings up"]
fn without_cap_bpf_the_agent_pod_fails_saying_so() {
    let cluster = Cluster::from_env();
    let mut caps = declared_capabilities();
    caps.remove("BPF");
    let patch = format!(
        "- op: replace\n  path: /spec/template/spec/containers/0/securityContext/capabilities/add\n  \
         value: [{}]\n",
        caps.into_iter().collect::<Vec<_>>().join(", ")
    );
    let _agent = Applied::kustomization(
        &cluster,
        "without-bpf",
        &kustomization(&cluster, Some(&patch)),
        &[("patch.yaml", &patch)],
    );
    let mut logs = String::new();
    cluster.wait_until(
        Duration::from_secs(90),
        "the agent without CAP_BPF did not say why it stopped",
        || {
            let pod = agent_pod(&cluster);
            if pod.is_empty() {
                return false;
            }
            let out = cluster.kubectl_output(&["logs", "-n", NAMESPACE, &pod, "--previous"]);
            logs = String::from_utf8_lossy(&out.stdout).into_owned();
            // While the container is being replaced kubectl prints "unable to retrieve
            // container logs" instead: wait for the agent's own words.
            logs.contains("the agent lacks")
        },
    );
    assert!(
        logs.contains("the agent lacks CAP_BPF, which it needs to load eBPF programs and maps"),
        "{logs}"
    );
    let pod = agent_pod(&cluster);
    let ready = cluster.jsonpath(
        &["pod", "-n", NAMESPACE, &pod],
        r#"{.status.conditions[?(@.type=="Ready")].status}"#,
    );
    assert_eq!(
        ready, "False",
        "a pod that cannot capture must not be Ready"
    );
}

/// Servers as a Deployment and a StatefulSet behind Services (named apart from them), a
/// client as a bare pod that calls both through their cluster IPs (from the environment
/// the kubelet gives it), 2 s after it starts, `CALLS` times each.
fn shop_workloads(image: &str) -> String {
    let server = |name: &str| {
        format!(
            "      serviceAccountName: {name}\n      automountServiceAccountToken: false\n      \
             terminationGracePeriodSeconds: 1\n      \
             containers:\n        - name: http\n          image: {image}\n          \
             imagePullPolicy: Never\n          command: [\"/bin/podhttp\", \"serve\", \"8080\"]\n          \
             ports:\n            - {{name: http, containerPort: 8080}}\n          \
             readinessProbe:\n            tcpSocket: {{port: 8080}}\n            periodSeconds: 1\n"
        )
    };
    let account = |name: &str| {
        format!("---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: shop}}\n")
    };
    let service = |name: &str, app: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
             spec:\n  selector: {{app: {app}}}\n  ports:\n    - {{name: web, port: 80, targetPort: http}}\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n{}{}{}\
         ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: orders, namespace: shop}}\n\
         spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: orders}}}}\n  template:\n    \
         metadata: {{labels: {{app: orders, tier: backend}}}}\n    spec:\n{}\
         ---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: ledger, namespace: shop}}\n\
         spec:\n  serviceName: ledger-api\n  replicas: 1\n  selector: {{matchLabels: {{app: ledger}}}}\n  template:\n    \
         metadata: {{labels: {{app: ledger}}}}\n    spec:\n{}{}{}",
        account("orders"),
        account("ledger"),
        account("shopper"),
        server("orders"),
        server("ledger"),
        service("orders-api", "orders"),
        service("ledger-api", "ledger"),
    )
}

const CALLS: usize = 20;

fn shop_client(image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: shop, labels: {{app: client}}}}\n\
         spec:\n  serviceAccountName: shopper\n  automountServiceAccountToken: false\n  \
         terminationGracePeriodSeconds: 1\n  \
         restartPolicy: Never\n  containers:\n    - name: calls\n      image: {image}\n      \
         imagePullPolicy: Never\n      command: [\"/bin/busybox\", \"sh\", \"-c\", \
         \"sleep 2; /bin/podhttp get {CALLS} http://$ORDERS_API_SERVICE_HOST/orders/ \
         http://$LEDGER_API_SERVICE_HOST/ledger/; exec sleep 600\"]\n"
    )
}

fn workload(namespace: &str, pod: &str, workload: &str, kind: &str, account: &str) -> Workload {
    Workload {
        namespace: namespace.into(),
        pod: pod.into(),
        workload: workload.into(),
        kind: kind.into(),
        service_account: account.into(),
    }
}

#[test]
#[ignore = "needs the cluster that `cargo xtask kube test` brings up"]
fn workloads_are_named_from_the_api_server_and_calls_through_services_count_once() {
    let cluster = Cluster::from_env();
    let _agent = deploy_agent(&cluster);
    let ip = cluster.jsonpath(
        &["pod", "-n", NAMESPACE, &agent_pod(&cluster)],
        "{.status.podIP}",
    );
    let api: SocketAddr = format!("{ip}:9464").parse().unwrap();
    // The workloads start after the agent: only a watch names them in time.
    let _servers = Applied::resources(
        &cluster,
        "shop",
        &[("shop.yaml", &shop_workloads(&cluster.busybox_image))],
    );
    for what in ["deployment/orders", "statefulset/ledger"] {
        cluster.kubectl(&["-n", "shop", "rollout", "status", what, "--timeout=120s"]);
    }
    let _client = Applied::resources(
        &cluster,
        "client",
        &[("client.yaml", &shop_client(&cluster.busybox_image))],
    );

    each_call_counted_once_with_its_caller(&cluster, api);
    records_name_both_sides_as_the_api_server_has_them(&cluster, api);
    suggested_network_policies_select_the_real_pods(&cluster, api);
    changes_in_the_cluster_are_seen_within_a_second(&cluster, api);
}

/// A GET on the agent's query API with the token; the body of its 200.
fn agent_get(api: SocketAddr, path: &str) -> String {
    let (status, body) = http_get_with(api, path, Some(TOKEN)).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn each_call_counted_once_with_its_caller(cluster: &Cluster, api: SocketAddr) {
    let inventory = || -> InventoryAnswer {
        serde_json::from_str(&agent_get(api, "/api/v1/inventory")).unwrap()
    };
    cluster.wait_until(
        Duration::from_secs(90),
        "the client's calls in the inventory",
        || {
            let inv = inventory();
            ["shop/orders", "shop/ledger"].iter().all(|svc| {
                inv.endpoints
                    .iter()
                    .any(|e| e.service == *svc && e.calls >= CALLS as u64)
            })
        },
    );
    // Let a late duplicate show, if there were any.
    std::thread::sleep(Duration::from_secs(3));
    let inv = inventory();
    for (service, route) in [("shop/orders", "/orders/"), ("shop/ledger", "/ledger/")] {
        let eps: Vec<_> = inv
            .endpoints
            .iter()
            .filter(|e| e.service == service)
            .collect();
        assert_eq!(eps.len(), 1, "{service}: {eps:#?}");
        assert_eq!(
            (eps[0].method.as_str(), eps[0].route.as_str()),
            ("GET", route)
        );
        assert_eq!(
            eps[0].calls, CALLS as u64,
            "{service}: each call once: {:?}",
            eps[0]
        );
        let callers: Vec<_> = eps[0]
            .callers
            .iter()
            .map(|c| (c.service.as_str(), c.calls))
            .collect();
        assert_eq!(callers, vec![("shop/client", CALLS as u64)], "{service}");
    }
}

fn records_name_both_sides_as_the_api_server_has_them(cluster: &Cluster, api: SocketAddr) {
    let orders_pod = cluster.jsonpath(
        &["pods", "-n", "shop", "-l", "app=orders"],
        "{.items[0].metadata.name}",
    );
    let client = workload("shop", "client", "client", "Pod", "shopper");
    let servers = [
        (
            "shop/orders",
            workload("shop", &orders_pod, "orders", "Deployment", "orders"),
        ),
        (
            "shop/ledger",
            workload("shop", "ledger-0", "ledger", "StatefulSet", "ledger"),
        ),
    ];
    let calls: CallsAnswer =
        serde_json::from_str(&agent_get(api, "/api/v1/calls?limit=1000")).unwrap();
    for (service, server) in &servers {
        let mine: Vec<_> = calls
            .calls
            .iter()
            .filter(|c| c.server.service.as_deref() == Some(service))
            .collect();
        assert_eq!(
            mine.len(),
            CALLS,
            "{service}: one record per call: {mine:#?}"
        );
        for c in mine {
            assert!(
                c.seen_by_both,
                "{service}: not paired through the Service: {c:?}"
            );
            assert_eq!(c.client.kubernetes.as_deref(), Some(&client), "{c:?}");
            assert_eq!(c.server.kubernetes.as_deref(), Some(server), "{c:?}");
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn match_labels(v: &serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(v["matchLabels"].clone()).unwrap_or_default()
}

/// `policy suggest --format networkpolicy` from this traffic, as the README shows it: the
/// API server accepts every object (a server-side dry run, which validates and defaults
/// them), and the objects select the workloads by the labels the API server has for their
/// pods, per-replica labels left out, in their own namespace.
fn suggested_network_policies_select_the_real_pods(cluster: &Cluster, api: SocketAddr) {
    let server = format!("http://{api}");
    let (code, yaml, err) = run_cli(&[
        "policy",
        "suggest",
        "--server",
        &server,
        "--token",
        TOKEN,
        "--format",
        "networkpolicy",
    ]);
    assert_eq!(code, 0, "policy suggest failed: {err}");
    let file = kustomization_dir("suggested").with_extension("yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &yaml).unwrap();
    let path = file.display().to_string();
    let accepted = cluster.kubectl(&["apply", "--dry-run=server", "-f", &path, "-o", "json"]);
    let _ = std::fs::remove_file(&file);
    let accepted: serde_json::Value = serde_json::from_str(&accepted).unwrap();
    let items = accepted["items"].as_array().cloned().unwrap_or_default();
    let policy = |namespace: &str, selects: &BTreeMap<String, String>| {
        items
            .iter()
            .find(|o| {
                o["metadata"]["namespace"] == namespace
                    && match_labels(&o["spec"]["podSelector"]) == *selects
            })
            .unwrap_or_else(|| {
                panic!("no NetworkPolicy selects {selects:?} in {namespace}:\n{yaml}")
            })
            .clone()
    };
    let client = labels(&[("app", "client")]);
    for selects in [
        labels(&[("app", "orders"), ("tier", "backend")]),
        labels(&[("app", "ledger")]),
    ] {
        let p = policy("shop", &selects);
        let from = p["spec"]["ingress"][0]["from"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let callers: Vec<_> = from
            .iter()
            .map(|f| match_labels(&f["podSelector"]))
            .collect();
        assert_eq!(callers, vec![client.clone()], "{selects:?}: {yaml}");
        assert!(from[0].get("namespaceSelector").is_none(), "{yaml}");
    }
    let deny = policy("shop", &BTreeMap::new());
    assert_eq!(deny["metadata"]["name"], "monitor-default-deny", "{yaml}");
}

/// Polls the agent's view of the cluster until `seen` holds; fails past one second after
/// the change was made (kubectl has returned: the API server has it).
fn seen_within_a_second(
    api: SocketAddr,
    what: &str,
    seen: impl Fn(&BTreeMap<String, monitor_agent::identity::kubernetes::WorkloadSelector>) -> bool,
) {
    let changed = Instant::now();
    loop {
        let answer: WorkloadsAnswer =
            serde_json::from_str(&agent_get(api, "/api/v1/workloads")).unwrap();
        let by_name = answer
            .workloads
            .into_iter()
            .map(|w| (w.service.clone(), w))
            .collect();
        if seen(&by_name) {
            eprintln!("{what}: seen after {:?}", changed.elapsed());
            return;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "{what}: not seen within a second: {by_name:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pods and Services that change and disappear while the agent runs: its view follows.
fn changes_in_the_cluster_are_seen_within_a_second(cluster: &Cluster, api: SocketAddr) {
    cluster.kubectl(&["-n", "shop", "label", "pod", "client", "role=buyer"]);
    seen_within_a_second(api, "a pod relabelled", |w| {
        w.get("shop/client")
            .is_some_and(|c| c.labels == labels(&[("app", "client"), ("role", "buyer")]))
    });
    cluster.kubectl(&[
        "-n",
        "shop",
        "patch",
        "service",
        "orders-api",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"app":"orders","tier":"backend"}}}"#,
    ]);
    seen_within_a_second(api, "a Service's selector changed", |w| {
        w.get("shop/orders-api")
            .is_some_and(|s| s.labels == labels(&[("app", "orders"), ("tier", "backend")]))
    });
    cluster.kubectl(&[
        "-n",
        "shop",
        "delete",
        "service",
        "ledger-api",
        "--wait=true",
    ]);
    seen_within_a_second(api, "a Service deleted", |w| {
        !w.contains_key("shop/ledger-api")
    });
    cluster.kubectl(&["-n", "shop", "delete", "pod", "client", "--wait=true"]);
    seen_within_a_second(api, "a pod deleted", |w| !w.contains_key("shop/client"));
}
