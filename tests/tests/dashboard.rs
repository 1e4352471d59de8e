//! End-to-end: a real Prometheus scrapes the real agent every second while real traffic
//! flows, and every PromQL expression of the Grafana dashboard is evaluated through
//! Prometheus's HTTP API. Each must return data; where the test knows the answer, the
//! answer is checked.

#![allow(
    clippy::float_cmp,
    reason = "Prometheus returns these sums and counts exactly"
)]

use std::time::Duration;

use monitor_tests::{
    agent::http_get,
    free_port,
    peers::{api_server, curl, grpc_server, run_ok, spec_path, GrpcCalls},
    prometheus::Prometheus,
    workspace_root, Agent,
};
use serde_json::Value;

fn dashboard() -> Value {
    let path = workspace_root().join("deploy/grafana/dashboards/monitor.json");
    let text = std::fs::read_to_string(&path).expect("reading the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// (panel title, expression) for every target of every panel, rows included.
fn expressions(dash: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((p["title"].as_str().unwrap_or("").to_string(), e.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The dashboard as Grafana would send it with `service` = `users` selected.
/// The panel's query as Grafana would send it with the service variable set: `greeter`
/// (the gRPC server) for the gRPC panels, `users` (the HTTP API) for the others.
fn instantiate(title: &str, expr: &str) -> String {
    let service = if title.starts_with("gRPC") {
        "greeter"
    } else {
        "users"
    };
    expr.replace("$__rate_interval", "1m")
        .replace("$service", service)
}

const GRPCPEER: &str = env!("CARGO_BIN_EXE_grpcpeer");

/// One round of gRPC calls: two OK, one NOT_FOUND, one INTERNAL, a stream.
fn grpc_round(port: u16) {
    let calls = GrpcCalls {
        ok: 2,
        missing: 1,
        boom: 1,
        stream: 3,
        ..GrpcCalls::default()
    };
    run_ok(&mut calls.client(GRPCPEER, port), "grpcpeer client");
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn every_dashboard_query_returns_data_on_a_real_prometheus() {
    let port = free_port();
    let _server = api_server(port);
    let grpc_port = free_port();
    let _grpc = grpc_server(GRPCPEER, grpc_port);
    let agent = Agent::start_with(&[
        "--spec",
        &format!("users={}", spec_path().display()),
        "--service",
        &format!("users=port:{port}"),
        "--service",
        &format!("greeter=port:{grpc_port}"),
    ]);
    let prom = Prometheus::start(agent.api);
    let up = prom.wait("up{job=\"monitor\"}", |r| value(&r[0]) == 1.0);
    assert_eq!(up.len(), 1, "prometheus is not scraping the agent: {up:?}");

    // Traffic over a few seconds, so that rates have several samples.
    let base = format!("http://127.0.0.1:{port}/api/v1");
    for round in 0..4 {
        for id in ["1", "2", "9"] {
            curl(&[&format!("{base}/users/{id}")]);
        }
        curl(&[&format!("{base}/users")]);
        curl(&[
            "-X",
            "POST",
            "-d",
            "{}",
            "-H",
            "Content-Type: application/json",
            &format!("{base}/users"),
        ]);
        curl(&[&format!("{base}/admin/debug")]);
        curl(&[&format!("{base}/legacy/report")]);
        grpc_round(grpc_port);
        if round < 3 {
            std::thread::sleep(Duration::from_millis(1200));
        }
    }
    let route = "/api/v1/users/{userId}";
    prom.wait(
        &format!("sum(rate(http_server_request_duration_seconds_count{{service=\"users\",http_route=\"{route}\"}}[1m]))"),
        |r| value(&r[0]) > 0.0,
    );
    prom.wait(
        "sum(api_endpoints{service=\"users\",spec_status=\"documented\"})",
        |r| value(&r[0]) == 3.0,
    );

    let dash = dashboard();
    let exprs = expressions(&dash);
    assert!(
        exprs.len() >= 20,
        "the dashboard has only {} queries",
        exprs.len()
    );
    let mut results = std::collections::BTreeMap::new();
    for (title, expr) in &exprs {
        let q = instantiate(title, expr);
        let r = prom.query(&q);
        assert!(!r.is_empty(), "panel {title:?}: no data for {q}");
        results.insert(title.clone(), r);
    }
    // The service variable's query, as Grafana evaluates label_values().
    let (_, labels) = http_get(prom.addr, "/api/v1/label/service/values").unwrap();
    assert!(labels.contains("\"users\""), "{labels}");

    let single = |title: &str| -> f64 {
        let r = &results[title];
        assert_eq!(r.len(), 1, "{title}: {r:?}");
        value(&r[0])
    };
    let rates = &results["Requests per second by service and route"];
    let test_route = rates
        .iter()
        .find(|s| s["metric"]["http_route"] == route)
        .unwrap_or_else(|| panic!("no series for {route}: {rates:?}"));
    assert!(value(test_route) > 0.0, "{test_route}");
    assert_eq!(single("Shadow endpoints (served, not declared)"), 1.0);
    assert_eq!(single("Zombie endpoints (deprecated, still called)"), 1.0);
    assert_eq!(single("Documented endpoints in use"), 3.0);
    assert_eq!(single("Declared but unused"), 2.0);
    assert_eq!(single("Ring-buffer drops per second"), 0.0);
    assert_eq!(single("Agents reporting"), 1.0);
    let errors = &results["Errors per second by status code"];
    assert!(
        errors
            .iter()
            .any(|s| s["metric"]["http_response_status_code"] == "404" && value(s) > 0.0),
        "{errors:?}"
    );
    let undeclared = &results["Calls to shadow and zombie endpoints per second"];
    for status in ["shadow", "zombie"] {
        assert!(
            undeclared
                .iter()
                .any(|s| s["metric"]["spec_status"] == status && value(s) > 0.0),
            "{status}: {undeclared:?}"
        );
    }
    let grpc = &results["gRPC calls per second by method and status code"];
    for code in ["0", "5", "13"] {
        assert!(
            grpc.iter()
                .any(|s| s["metric"]["rpc_grpc_status_code"] == code
                    && s["metric"]["http_route"] == "/demo.Greeter/SayHello"
                    && value(s) > 0.0),
            "grpc-status {code}: {grpc:?}"
        );
    }
    let ratio = &results["gRPC error ratio by method"];
    let by_method = |route: &str| {
        ratio
            .iter()
            .find(|s| s["metric"]["http_route"] == route)
            .map_or_else(|| panic!("{route}: {ratio:?}"), value)
    };
    // Two of every four SayHello calls fail; every CountTo succeeds.
    assert!(
        (by_method("/demo.Greeter/SayHello") - 0.5).abs() < 1e-9,
        "{ratio:?}"
    );
    assert_eq!(by_method("/demo.Greeter/CountTo"), 0.0, "{ratio:?}");
    // No policy is loaded in this test: the violation panels show zero, not "no data".
    assert_eq!(single("Policy violations in the last hour"), 0.0);
    let graph = &results["Who calls whom (calls per second, server side)"];
    assert!(
        graph
            .iter()
            .any(|s| s["metric"]["peer_service"] == "curl" && s["metric"]["service"] == "users"),
        "{graph:?}"
    );
}
