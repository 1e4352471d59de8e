use serde_json::json;

use super::*;

const ID1: &str = "3f4e1b2c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
const ID2: &str = "aa4e1b2c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
const ID3: &str = "bb4e1b2c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

/// Shaped like `kubectl get pods -o json` output, trimmed to the fields that matter.
fn pods() -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "items": [
        {"metadata": {"name": "orders-7d9f8c6b5d-x2x9z", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "orders-7d9f8c6b5d", "controller": true}]},
         "spec": {"serviceAccountName": "orders", "nodeName": "n1"},
         "status": {"podIP": "10.1.0.7", "containerStatuses": [
            {"name": "app", "containerID": format!("containerd://{ID1}")},
            {"name": "sidecar", "containerID": format!("cri-o://{ID2}")}]}},
        {"metadata": {"name": "agent-abcde", "namespace": "monitor",
            "ownerReferences": [{"kind": "DaemonSet", "name": "monitor-agent", "controller": true}]},
         "spec": {},
         "status": {"containerStatuses": [{"name": "agent", "containerID": format!("docker://{ID3}")}]}},
        {"metadata": {"name": "debug", "namespace": "default"},
         "spec": {"serviceAccountName": "default"},
         "status": {"containerStatuses": [{"name": "x"}]}},
        {"metadata": {"name": "broken"}}
    ]})
}

#[test]
fn containers_map_to_workloads() {
    let pods = list_facts(&pods(), pod_facts);
    let idx = KubeIndex::build(pods.iter(), [].iter(), [].iter());
    let w = idx.workload(&ID1[..12]).expect("orders container");
    assert_eq!(w.service(), "shop/orders");
    assert_eq!(
        (w.kind.as_str(), w.pod.as_str(), w.service_account.as_str()),
        ("Deployment", "orders-7d9f8c6b5d-x2x9z", "orders")
    );
    assert_eq!(idx.workload(&ID2[..12]).unwrap().service(), "shop/orders");
    let d = idx.workload(&ID3[..12]).unwrap();
    assert_eq!(
        (
            d.service().as_str(),
            d.kind.as_str(),
            d.service_account.as_str()
        ),
        ("monitor/monitor-agent", "DaemonSet", "default")
    );
    assert_eq!(idx.containers.len(), 3);
    let at = idx.pod_at("10.1.0.7:8080".parse().unwrap()).unwrap();
    assert_eq!(at.pod, "orders-7d9f8c6b5d-x2x9z");
}

#[test]
fn replica_set_hashes_are_stripped_only_when_they_look_like_one() {
    assert_eq!(deployment_of("orders-7d9f8c6b5d"), "orders");
    assert_eq!(deployment_of("web-api-5f7c9"), "web-api");
    assert_eq!(deployment_of("orders"), "orders");
    assert_eq!(
        deployment_of("orders-v2-with-a-long-tail-segment"),
        "orders-v2-with-a-long-tail-segment"
    );
}

fn services() -> Vec<ServiceFacts> {
    list_facts(
        &json!({"items": [
            {"metadata": {"name": "orders", "namespace": "shop"},
             "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"],
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                {"name": "dns", "port": 53, "protocol": "UDP"}]}},
            {"metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None"}}
        ]}),
        service_facts,
    )
}

fn slices() -> Vec<SliceFacts> {
    list_facts(
        &json!({"items": [
            {"metadata": {"namespace": "shop", "labels": {"kubernetes.io/service-name": "orders"}},
             "endpoints": [{"addresses": ["10.1.0.7"]}, {"addresses": ["10.1.0.8"]}],
             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
            {"metadata": {"namespace": "shop"}, "endpoints": [{"addresses": ["10.9.9.9"]}]}
        ]}),
        slice_facts,
    )
}

#[test]
fn service_and_pod_ips_map_to_services() {
    let idx = KubeIndex::build([].iter(), services().iter(), slices().iter());
    for ip in ["10.96.0.20", "10.1.0.7", "10.1.0.8", "fd00::20"] {
        let addr = SocketAddr::new(ip.parse().unwrap(), 8080);
        assert_eq!(idx.service_at(addr).as_deref(), Some("shop/orders"), "{ip}");
    }
    assert!(idx.service_at("10.9.9.9:80".parse().unwrap()).is_none());
    assert_eq!(idx.ips.len(), 4);
}

#[test]
fn service_backends_lead_to_the_service_address_by_port_name() {
    let idx = KubeIndex::build([].iter(), services().iter(), slices().iter());
    let front: SocketAddr = "10.96.0.20:80".parse().unwrap();
    for backend in ["10.1.0.7:8080", "10.1.0.8:8080"] {
        assert_eq!(
            idx.frontend_of(backend.parse().unwrap()),
            front,
            "{backend}"
        );
    }
    // Another port of a backend, an address that backs nothing, the front itself: as they are.
    for addr in ["10.1.0.7:9090", "10.9.9.9:8080", "10.96.0.20:80"] {
        let a: SocketAddr = addr.parse().unwrap();
        assert_eq!(idx.frontend_of(a), a, "{addr}");
    }
    // The UDP port is not a TCP frontend.
    assert_eq!(services()[0].ports, vec![("http".to_string(), 80)]);
}

fn labelled_pod(name: &str, ns: &str, owner: Option<(&str, &str)>, labels: Value) -> Value {
    let owners = owner.map_or(
        json!([]),
        |(kind, name)| json!([{"kind": kind, "name": name, "controller": true}]),
    );
    json!({"metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owners},
           "spec": {"serviceAccountName": "sa-".to_string() + ns}, "status": {}})
}

#[test]
fn selectors_use_the_labels_a_workloads_pods_share() {
    let rs = Some(("ReplicaSet", "orders-7d9f8c6b5d"));
    let pods: Vec<PodFacts> = [
        labelled_pod("orders-7d9f8c6b5d-aaaaa", "shop", rs,
            json!({"app": "orders", "tier": "backend", "pod-template-hash": "7d9f8c6b5d", "canary": "a"})),
        labelled_pod("orders-7d9f8c6b5d-bbbbb", "shop", rs,
            json!({"app": "orders", "tier": "backend", "pod-template-hash": "7d9f8c6b5d", "canary": "b"})),
        labelled_pod("ledger-0", "shop", Some(("StatefulSet", "ledger")),
            json!({"app": "ledger", "controller-revision-hash": "ledger-5c8", "statefulset.kubernetes.io/pod-name": "ledger-0"})),
        labelled_pod("bare", "shop", None, json!({})),
        labelled_pod("nolabels", "shop", None, Value::Null),
    ]
    .iter()
    .filter_map(pod_facts)
    .collect();
    let services: Vec<ServiceFacts> = [
        json!({"metadata": {"name": "orders", "namespace": "shop"}, "spec": {"selector": {"app": "something-else"}}}),
        json!({"metadata": {"name": "payments", "namespace": "pay"}, "spec": {"selector": {"app": "payments"}}}),
        json!({"metadata": {"name": "external", "namespace": "pay"}, "spec": {"type": "ExternalName"}}),
    ]
    .iter()
    .filter_map(service_facts)
    .collect();
    let idx = KubeIndex::build(pods.iter(), services.iter(), [].iter());
    let names: Vec<String> = idx.selectors().into_iter().map(|s| s.service).collect();
    // Pods without labels cannot be selected; a Service without a selector selects nothing.
    assert_eq!(names, ["pay/payments", "shop/ledger", "shop/orders"]);
    let orders = &idx.selectors["shop/orders"];
    let labels = |pairs: &[(&str, &str)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // Shared labels only, the per-revision hash left out; the workload wins over the
    // Service of the same name.
    assert_eq!(
        orders.labels,
        labels(&[("app", "orders"), ("tier", "backend")])
    );
    assert_eq!(
        (orders.kind.as_str(), orders.service_account.as_deref()),
        ("Deployment", Some("sa-shop"))
    );
    assert_eq!(
        idx.selectors["shop/ledger"].labels,
        labels(&[("app", "ledger")])
    );
    let payments = &idx.selectors["pay/payments"];
    assert_eq!(
        (
            payments.namespace.as_str(),
            payments.kind.as_str(),
            payments.service_account.as_deref()
        ),
        ("pay", "Service", None)
    );
}

#[test]
fn a_pod_with_more_labels_than_kept_makes_its_workload_unselectable() {
    let many: serde_json::Map<String, Value> = (0..=selector::MAX_LABELS)
        .map(|i| (format!("l{i}"), Value::from("v")))
        .collect();
    let pods: Vec<PodFacts> = [
        labelled_pod("a", "ns", Some(("DaemonSet", "d")), json!({"l0": "v"})),
        labelled_pod("b", "ns", Some(("DaemonSet", "d")), Value::Object(many)),
    ]
    .iter()
    .filter_map(pod_facts)
    .collect();
    assert!(pods[1].labels.is_none());
    let idx = KubeIndex::build(pods.iter(), [].iter(), [].iter());
    assert!(idx.selectors.is_empty(), "{:?}", idx.selectors);
}
