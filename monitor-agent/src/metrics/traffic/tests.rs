use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::*;
use crate::record::Peer;

fn call(role: Role, route: &str, method: &str, both: bool) -> CallRecord {
    let mut server = Peer::local("127.0.0.1:8080".parse().unwrap(), 2, Arc::from("py"));
    server.service = Some(Arc::from("users"));
    let mut client = Peer::remote("127.0.0.1:40000".parse().unwrap());
    client.service = Some(Arc::from("curl"));
    CallRecord {
        duration_us: 2_000,
        seen_by_both: both,
        client_duration_us: both.then_some(3_000),
        request_body_bytes: 100,
        ..CallRecord::sample(role, client, server, method, route)
    }
}

fn encode(r: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, r).unwrap();
    s
}

#[test]
fn series_follow_the_semantic_conventions() {
    let mut reg = Registry::default();
    let f = TrafficFamilies::register(&mut reg, 10);
    let mut t = TrafficRecorder::new(f, 10);
    t.record(
        &call(Role::Server, "/users/{id}", "GET", true),
        Some(SpecStatus::Shadow),
    );
    t.record(&call(Role::Server, "/users/{id}", "BREW", false), None);
    let text = encode(&reg);
    let server = r#"http_server_request_duration_seconds_count{service="users",peer_service="curl",http_request_method="GET",http_route="/users/{id}",http_response_status_code="200",network_protocol_name="http",network_protocol_version="1.1",rpc_grpc_status_code=""} 1"#;
    assert!(text.contains(server), "{text}");
    // Seen by both: the client's view too, with the client as `service`.
    let client = r#"http_client_request_duration_seconds_count{service="curl",peer_service="users",http_request_method="GET",http_route="/users/{id}",http_response_status_code="200",network_protocol_name="http",network_protocol_version="1.1",rpc_grpc_status_code=""} 1"#;
    assert!(text.contains(client), "{text}");
    assert!(text.contains(r#"http_client_request_duration_seconds_sum{service="curl",peer_service="users",http_request_method="GET",http_route="/users/{id}",http_response_status_code="200",network_protocol_name="http",network_protocol_version="1.1",rpc_grpc_status_code=""} 0.003"#), "{text}");
    assert!(text.contains(r#"http_request_method="_OTHER""#), "{text}");
    assert!(
        text.contains(r#"api_undeclared_calls_total{service="users",spec_status="shadow"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_server_request_body_size_bytes_sum{service="users""#),
        "{text}"
    );
}

#[test]
fn routes_beyond_the_cap_are_other_and_counted() {
    let mut reg = Registry::default();
    let f = TrafficFamilies::register(&mut reg, 3);
    let mut t = TrafficRecorder::new(f, 3);
    for i in 0..10 {
        t.record(&call(Role::Server, &format!("/r{i}"), "GET", false), None);
    }
    let text = encode(&reg);
    let routes = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .count();
    assert_eq!(routes, 4, "three routes and _OTHER: {text}");
    assert!(text.contains(r#"http_route="_OTHER""#));
    assert!(
        text.contains(r#"monitor_metric_route_overflow_calls_total{service="users"} 7"#),
        "{text}"
    );
    assert!(text.contains("monitor_metric_route_cap 3"), "{text}");
    // A client-only view records nothing on the server side.
    t.record(&call(Role::Client, "/r0", "GET", false), None);
    let text = encode(&reg);
    assert!(
        text.contains(
            r#"http_client_request_duration_seconds_count{service="curl",peer_service="users""#
        ),
        "{text}"
    );
}

#[test]
fn grpc_calls_carry_their_status_code() {
    let mut reg = Registry::default();
    let f = TrafficFamilies::register(&mut reg, 10);
    let mut t = TrafficRecorder::new(f, 10);
    let mut c = call(Role::Server, "/demo.Greeter/SayHello", "POST", false);
    c.protocol = Protocol::Grpc;
    c.grpc = Some(crate::protocol::exchange::Grpc {
        service: "demo.Greeter".into(),
        method: "SayHello".into(),
        status: Some(5),
        message: None,
    });
    t.record(&c, None);
    c.grpc.as_mut().unwrap().status = Some(0);
    t.record(&c, None);
    t.record(&c, None);
    let text = encode(&reg);
    let series = |code: &str, n: u32| {
        format!(
            r#"http_server_request_duration_seconds_count{{service="users",peer_service="curl",http_request_method="POST",http_route="/demo.Greeter/SayHello",http_response_status_code="200",network_protocol_name="http",network_protocol_version="2",rpc_grpc_status_code="{code}"}} {n}"#
        )
    };
    assert!(text.contains(&series("5", 1)), "{text}");
    assert!(text.contains(&series("0", 2)), "{text}");
    // Codes outside gRPC's 0-16 are one label value, however many a server invents.
    for code in [17, 99, 4_000_000_000] {
        c.grpc.as_mut().unwrap().status = Some(code);
        t.record(&c, None);
    }
    let text = encode(&reg);
    assert!(text.contains(&series("_OTHER", 3)), "{text}");
    assert!(!text.contains(r#"rpc_grpc_status_code="17""#), "{text}");
}
