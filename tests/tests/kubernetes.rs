//! End-to-end, fast: Kubernetes names from recorded API responses. A real server process
//! is put in a cgroup named like a containerd container; the agent lists and watches pods,
//! Services and EndpointSlices over HTTPS with a bearer token and names the server by its
//! workload (`shop/orders`) and loopback addresses by the Service the recorded
//! EndpointSlice puts them in. The responses are served by `tests/peers/kube_api.py`; the
//! real API server is in `cluster.rs`.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use monitor_agent::{identity::Workload, record::Role};
use monitor_tests::{
    agent::{served_on, service},
    free_port,
    peers::{curl, peer_script, run_ok, Proc},
    wait_listening, Agent, Cgroup, TempDir,
};
use serde_json::json;

/// A CA and a server certificate for 127.0.0.1 signed by it (the agent's TLS stack refuses a
/// self-signed CA certificate used as the server's).
fn ca_and_server_cert(dir: &Path) -> (String, String, String) {
    let p = |f: &str| dir.join(f).display().to_string();
    let sh = format!(
        "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=kube-api -keyout srv.key -out srv.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out srv.crt 2>/dev/null",
        d = dir.display()
    );
    run_ok(Command::new("sh").arg("-c").arg(sh), "openssl (test CA)");
    (p("ca.crt"), p("srv.crt"), p("srv.key"))
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn containers_are_named_by_workload_and_addresses_by_service() {
    let dir = TempDir::new("kube");
    let container = format!("c0de{:060x}", u64::from(std::process::id()));
    let (ca, cert, key) = ca_and_server_cert(&dir.0);
    let fixtures = dir.0.join("api");
    std::fs::create_dir_all(&fixtures).unwrap();
    let write = |name: &str, v: serde_json::Value| {
        std::fs::write(fixtures.join(name), v.to_string()).unwrap();
    };
    write(
        "pods.json",
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": [
            {"metadata": {"name": "orders-6c9f7d8b4f-q8r2t", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "orders-6c9f7d8b4f", "controller": true}]},
             "spec": {"nodeName": "test-node", "serviceAccountName": "orders"},
             "status": {"podIP": "10.244.1.7", "containerStatuses": [
                {"name": "app", "ready": true, "containerID": format!("containerd://{container}")}]}}]}),
    );
    write(
        "services.json",
        json!({"kind": "ServiceList", "metadata": {"resourceVersion": "1"}, "items": [
            {"metadata": {"name": "orders", "namespace": "shop"}, "spec": {"clusterIP": "10.96.12.34"}}]}),
    );
    write(
        "slices.json",
        json!({"kind": "EndpointSliceList", "metadata": {"resourceVersion": "1"}, "items": [
            {"metadata": {"name": "loopback-x1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "loopback"}},
             "endpoints": [{"addresses": ["127.0.0.1"]}]}]}),
    );
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "t0ken-for-test\n").unwrap();
    let api_port = free_port();
    let mut api = Proc::spawn(
        Command::new("python3")
            .arg(peer_script("kube_api.py"))
            .args([&api_port.to_string(), &cert, &key, "t0ken-for-test"])
            .arg(&fixtures)
            .stdout(Stdio::piped()),
        "kube_api.py",
    );
    wait_listening(([127, 0, 0, 1], api_port).into(), "kube_api.py");
    let requests = Arc::new(Mutex::new(Vec::new()));
    {
        let out = api.child.stdout.take().unwrap();
        let sink = requests.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
    }

    // The "container": a real server in a cgroup named like containerd's.
    let cg = Cgroup::new(&format!("cri-containerd-{container}.scope"));
    let port = free_port();
    let server = Proc::spawn(
        Command::new("python3")
            .arg(peer_script("svc.py"))
            .args(["orders", &port.to_string()]),
        "svc.py",
    );
    wait_listening(([127, 0, 0, 1], port).into(), "svc.py");
    cg.adopt(server.pid());

    let agent = Agent::start_with(&[
        "--kubernetes-api",
        &format!("https://127.0.0.1:{api_port}"),
        "--kubernetes-token-file",
        token_file.to_str().unwrap(),
        "--kubernetes-ca-file",
        &ca,
        "--node-name",
        "test-node",
    ]);
    curl(&[&format!("http://127.0.0.1:{port}/api/orders/7")]);
    let eps = agent.wait_inventory("service=shop/orders", |e| !e.is_empty());
    assert_eq!(
        eps.len(),
        1,
        "the server was not named by its workload: {eps:#?}\n{}",
        agent.stderr()
    );
    assert_eq!(eps[0].route, "/api/orders/{id}");
    let first_caller = eps[0].callers.first().map(|c| c.service.as_str());
    assert_eq!(first_caller, Some("curl"));
    // The client's view names the server's address by the Service its EndpointSlice lists.
    let recs = agent.wait_records(2, Duration::from_secs(10), |r| served_on(r, port));
    let client_view = recs
        .iter()
        .find(|r| r.role == Role::Client)
        .expect("client-role record");
    assert_eq!(
        service(&client_view.server),
        "shop/loopback",
        "{client_view:?}"
    );
    let server_view = recs
        .iter()
        .find(|r| r.role == Role::Server)
        .expect("server-role record");
    let pod = server_view
        .server
        .kubernetes
        .as_deref()
        .unwrap_or_else(|| panic!("the server is not named as a pod: {server_view:?}"));
    assert_eq!(
        pod,
        &Workload {
            pod: "orders-6c9f7d8b4f-q8r2t".into(),
            namespace: "shop".into(),
            workload: "orders".into(),
            kind: "Deployment".into(),
            service_account: "orders".into(),
        }
    );
    let seen = requests.lock().unwrap().clone();
    assert!(
        seen.iter().any(|p| p.starts_with("/api/v1/pods?")
            && p.contains("fieldSelector=spec.nodeName%3Dtest-node")),
        "pods were not listed for this node only: {seen:?}"
    );
    assert_eq!(agent.metric("monitor_kubernetes_errors_total"), Some(0.0));
}
