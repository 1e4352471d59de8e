use std::sync::Arc;

use super::*;
use crate::record::Peer;

const W: u64 = 1_000_000_000;

fn rec(role: Role, client: &str, server: &str, path: &str) -> Arc<CallRecord> {
    let c: SocketAddr = client.parse().unwrap();
    let s: SocketAddr = server.parse().unwrap();
    let (client, server) = match role {
        Role::Client => (Peer::local(c, 10, Arc::from("curl")), Peer::remote(s)),
        Role::Server => (Peer::remote(c), Peer::local(s, 20, Arc::from("python3"))),
    };
    Arc::new(CallRecord {
        duration_us: if role == Role::Server { 100 } else { 150 },
        ..CallRecord::sample(role, client, server, "GET", path)
    })
}

#[test]
fn both_sides_make_one_call() {
    let mut p = Pairing::new(W);
    let mut out = Vec::new();
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:8080");
    p.push(rec(Role::Client, c, s, "/a"), 0, &mut out);
    p.push(rec(Role::Client, c, s, "/b"), 0, &mut out);
    assert!(out.is_empty());
    p.push(rec(Role::Server, c, s, "/a"), 10, &mut out);
    p.push(rec(Role::Server, c, s, "/b"), 10, &mut out);
    assert_eq!(out.len(), 2);
    for (r, path) in out.iter().zip(["/a", "/b"]) {
        assert_eq!(r.path, path);
        assert!(r.seen_by_both);
        assert_eq!(r.duration_us, 100, "server timing wins");
        assert_eq!(r.client.pid, Some(10));
        assert_eq!(r.server.pid, Some(20));
    }
    p.expire(10 * W, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(p.paired, 2);
}

#[test]
fn one_side_counts_once_after_the_window() {
    let mut p = Pairing::new(W);
    let mut out = Vec::new();
    p.push(
        rec(Role::Server, "127.0.0.1:40001", "127.0.0.1:8080", "/x"),
        0,
        &mut out,
    );
    p.expire(W / 2, &mut out);
    assert!(out.is_empty());
    p.expire(W, &mut out);
    assert_eq!(out.len(), 1);
    assert!(!out[0].seen_by_both);
    // The other side turning up after all is not counted again.
    p.push(
        rec(Role::Client, "127.0.0.1:40001", "127.0.0.1:8080", "/x"),
        W + 1,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    p.expire(100 * W, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn remote_peers_count_at_once() {
    let mut p = Pairing::new(W);
    let mut out = Vec::new();
    p.push(
        rec(Role::Server, "192.0.2.7:40000", "10.0.0.1:8080", "/x"),
        0,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(p.waiting(), 0);
}

#[test]
fn same_path_on_different_connections_is_not_mixed_up() {
    let mut p = Pairing::new(W);
    let mut out = Vec::new();
    let s = "127.0.0.1:8080";
    p.push(rec(Role::Client, "127.0.0.1:1", s, "/a"), 0, &mut out);
    p.push(rec(Role::Server, "127.0.0.1:2", s, "/a"), 0, &mut out);
    assert!(out.is_empty());
    p.push(rec(Role::Server, "127.0.0.1:1", s, "/a"), 0, &mut out);
    p.push(rec(Role::Client, "127.0.0.1:2", s, "/a"), 0, &mut out);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|r| r.seen_by_both));
    p.flush(&mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn many_repeats_on_one_connection_pair_in_order_and_in_linear_time() {
    let mut p = Pairing::new(W);
    let mut out = Vec::new();
    let (client, server) = ("127.0.0.1:40002", "127.0.0.1:8080");
    // 50,000 client-side repeats then their server sides: quadratic pairing would take
    // over a billion comparisons here.
    let n = 50_000;
    for i in 0..n {
        let mut r = rec(Role::Client, client, server, "/same");
        Arc::make_mut(&mut r).duration_us = i;
        p.push(r, 0, &mut out);
    }
    assert_eq!(p.waiting(), n as usize);
    for _ in 0..n {
        p.push(rec(Role::Server, client, server, "/same"), 1, &mut out);
    }
    assert_eq!(out.len(), n as usize);
    for (i, r) in out.iter().enumerate() {
        assert!(r.seen_by_both);
        assert_eq!(r.client_duration_us, Some(i as u64), "paired in order");
    }
    assert_eq!(p.waiting(), 0);
}

#[test]
fn waiting_calls_are_capped_and_the_oldest_counted_alone() {
    let mut p = Pairing::new(W);
    let mut out = Vec::new();
    let before = Limit::PairingWaiting.count();
    let s = "127.0.0.1:8080";
    for i in 0..MAX_WAITING + 10 {
        let c = format!("127.0.0.1:{}", 1 + i % 60_000);
        p.push(rec(Role::Client, &c, s, &format!("/p{i}")), 0, &mut out);
    }
    assert_eq!(out.len(), 10, "the ten oldest are counted alone");
    assert_eq!(out[0].path, "/p0");
    assert!(Limit::PairingWaiting.count() >= before + 10);
    // Their server sides, late, are not counted again.
    p.push(rec(Role::Server, "127.0.0.1:1", s, "/p0"), 1, &mut out);
    assert_eq!(out.len(), 10);
    p.flush(&mut out);
    assert_eq!(out.len(), MAX_WAITING + 10);
}

/// A pod calling a Service's cluster IP, DNAT'd to a backend pod on this node: the client
/// saw the cluster IP, the server its own pod IP; the Service's EndpointSlice joins them.
#[test]
fn a_call_through_a_service_pairs_with_its_backend() {
    use crate::identity::kubernetes::{list_facts, pod_facts, service_facts, slice_facts};
    let pods = list_facts(
        &serde_json::json!({"items": [
            {"metadata": {"name": "orders-1", "namespace": "shop"},
             "status": {"podIP": "10.244.0.9"}}]}),
        pod_facts,
    );
    let services = list_facts(
        &serde_json::json!({"items": [
            {"metadata": {"name": "orders-api", "namespace": "shop"},
             "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "web", "port": 80}]}}]}),
        service_facts,
    );
    let slices = list_facts(
        &serde_json::json!({"items": [
            {"metadata": {"namespace": "shop", "labels": {"kubernetes.io/service-name": "orders-api"}},
             "endpoints": [{"addresses": ["10.244.0.9"]}],
             "ports": [{"name": "web", "port": 8080}]}]}),
        slice_facts,
    );
    let index = KubeIndex::build(pods.iter(), services.iter(), slices.iter());
    let mut p = Pairing::new(W).with_kubernetes(Some(Arc::new(RwLock::new(index))));
    let mut out = Vec::new();
    let client = "10.244.0.7:41000";
    // The client's side first: the cluster IP is no local address, but its backend is here.
    p.push(
        rec(Role::Client, client, "10.96.0.50:80", "/o"),
        0,
        &mut out,
    );
    assert!(out.is_empty(), "counted alone before its server side came");
    p.push(
        rec(Role::Server, client, "10.244.0.9:8080", "/o"),
        10,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].seen_by_both);
    assert_eq!(out[0].client.pid, Some(10));
    // A backend's other port, or another pod, is not that Service.
    p.push(
        rec(Role::Client, client, "10.96.0.50:80", "/p"),
        20,
        &mut out,
    );
    p.push(
        rec(Role::Server, client, "10.244.0.9:9090", "/p"),
        30,
        &mut out,
    );
    p.expire(10 * W, &mut out);
    assert_eq!(out.len(), 3);
    assert!(out[1..].iter().all(|r| !r.seen_by_both));
}
