use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use super::*;
use crate::{
    inventory::view,
    record::{Peer, Role},
    route::{RouteKind, RouteTemplate},
    spec::ServiceSpec,
};

const SPEC: &str = r#"
openapi: 3.0.3
info: {title: users, version: "1"}
servers: [{url: "http://localhost/api"}]
paths:
  /users:
    get: {operationId: listUsers, responses: {"200": {description: ok}}}
  /users/{userId}:
    get: {operationId: getUser, responses: {"200": {description: ok}}}
  /users/me:
    get: {operationId: me, responses: {"200": {description: ok}}}
  /legacy/search:
    get: {operationId: oldSearch, deprecated: true, responses: {"200": {description: ok}}}
  /never:
    post: {operationId: neverCalled, responses: {"200": {description: ok}}}
"#;

fn call(inv: &mut Inventory, service: &str, method: &str, path: &str, status: u16) -> CallRecord {
    let route = inv.route(service, method, path, RouteKind::Complete);
    let s: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let c: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut server = Peer::local(s, 1, Arc::from("python3"));
    server.service = Some(Arc::from(service));
    let mut client = Peer::remote(c);
    client.service = Some(Arc::from("curl"));
    let rec = CallRecord {
        ts: UNIX_EPOCH + Duration::from_hours(500_000),
        route,
        status,
        duration_us: 250,
        request_bytes: 10,
        response_bytes: 20,
        response_content_type: Some("application/json".into()),
        ..CallRecord::sample(Role::Server, client, server, method, path)
    };
    inv.observe(&rec);
    rec
}

fn with_spec() -> Inventory {
    let mut inv = Inventory::new(InventoryConfig::default());
    let spec = ServiceSpec::from_str("users", Path::new("users.yaml"), SPEC).unwrap();
    inv.set_specs(HashMap::from([("users".to_string(), Arc::new(spec))]));
    inv
}

fn status_of(inv: &Inventory, service: &str, method: &str, route: &str) -> Option<SpecStatus> {
    inv.endpoints()
        .find(|(k, _)| k.service == service && k.method == method && k.route == route)
        .map(|(_, e)| e.spec_status)
}

#[test]
fn calls_are_classified_against_the_spec() {
    let mut inv = with_spec();
    for i in 0..3 {
        call(
            &mut inv,
            "users",
            "GET",
            &format!("/api/users/{i}?verbose=1"),
            200,
        );
    }
    call(&mut inv, "users", "GET", "/api/users/me", 200);
    call(&mut inv, "users", "GET", "/api/legacy/search?q=x", 200);
    call(&mut inv, "users", "GET", "/api/admin/dump", 500);
    call(&mut inv, "users", "DELETE", "/api/users/7", 403);
    assert_eq!(
        status_of(&inv, "users", "GET", "/api/users/{userId}"),
        Some(SpecStatus::Documented)
    );
    assert_eq!(
        status_of(&inv, "users", "GET", "/api/users/me"),
        Some(SpecStatus::Documented)
    );
    assert_eq!(
        status_of(&inv, "users", "GET", "/api/legacy/search"),
        Some(SpecStatus::Zombie)
    );
    assert_eq!(
        status_of(&inv, "users", "GET", "/api/admin/dump"),
        Some(SpecStatus::Shadow)
    );
    // An undeclared method on a declared path is shadow, filed under the declared template.
    assert_eq!(
        status_of(&inv, "users", "DELETE", "/api/users/{userId}"),
        Some(SpecStatus::Shadow)
    );
    let views = view::endpoints(&inv, &view::Filter::default());
    let get_user = views
        .iter()
        .find(|v| v.method == "GET" && v.route == "/api/users/{userId}")
        .unwrap();
    assert_eq!(get_user.calls, 3);
    assert_eq!(get_user.operation_id.as_deref(), Some("getUser"));
    assert_eq!(get_user.query_params, ["verbose"]);
    assert_eq!(get_user.callers[0].service, "curl");
    let unused: Vec<_> = inv
        .unused()
        .into_iter()
        .map(|(_, op)| op.operation_id.unwrap())
        .collect();
    assert_eq!(unused, ["neverCalled", "listUsers"]);
    let shadow_only = view::endpoints(
        &inv,
        &view::Filter {
            spec_status: Some(SpecStatus::Shadow),
            ..Default::default()
        },
    );
    assert_eq!(shadow_only.len(), 2);
}

#[test]
fn services_without_a_spec_are_shadow() {
    let mut inv = with_spec();
    call(&mut inv, "orders", "GET", "/orders/42", 200);
    assert_eq!(
        status_of(&inv, "orders", "GET", "/orders/{id}"),
        Some(SpecStatus::Shadow)
    );
}

#[test]
fn a_spec_loaded_later_refiles_endpoints() {
    let mut inv = Inventory::new(InventoryConfig::default());
    call(&mut inv, "users", "GET", "/api/users/1", 200);
    call(&mut inv, "users", "GET", "/api/users/2", 200);
    assert_eq!(
        status_of(&inv, "users", "GET", "/api/users/{id}"),
        Some(SpecStatus::Shadow)
    );
    inv.take_changes();
    let spec = ServiceSpec::from_str("users", Path::new("u.yaml"), SPEC).unwrap();
    inv.set_specs(HashMap::from([("users".to_string(), Arc::new(spec))]));
    assert_eq!(status_of(&inv, "users", "GET", "/api/users/{id}"), None);
    assert_eq!(
        status_of(&inv, "users", "GET", "/api/users/{userId}"),
        Some(SpecStatus::Documented)
    );
    let (up, removed) = inv.take_changes();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1.stats.calls, 2);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].route, "/api/users/{id}");
}

#[test]
fn operator_patterns_win_over_heuristics() {
    let mut inv = Inventory::new(InventoryConfig {
        patterns: vec!["/files/{name}".parse::<RouteTemplate>().unwrap()],
        ..Default::default()
    });
    call(&mut inv, "f", "GET", "/files/readme", 200);
    call(&mut inv, "f", "GET", "/files/notes", 200);
    assert_eq!(
        status_of(&inv, "f", "GET", "/files/{name}"),
        Some(SpecStatus::Shadow)
    );
    assert_eq!(inv.len(), 1);
}

#[test]
fn discovered_routes_refile_existing_endpoints() {
    let mut inv = Inventory::new(InventoryConfig::default());
    let names = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    for (i, name) in names.iter().enumerate() {
        for sub in ["comments", "likes"] {
            call(
                &mut inv,
                "blog",
                "GET",
                &format!("/posts/{name}-{i}x/{sub}"),
                200,
            );
        }
    }
    call(&mut inv, "blog", "GET", "/posts", 200);
    let mut routes: Vec<(String, u64)> = inv
        .endpoints()
        .map(|(k, e)| (k.route.clone(), e.stats.calls))
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            ("/posts".to_string(), 1),
            ("/posts/{param}/comments".to_string(), 8),
            ("/posts/{param}/likes".to_string(), 8)
        ]
    );
}

#[test]
fn endpoint_count_is_bounded() {
    let mut inv = Inventory::new(InventoryConfig {
        max_endpoints: 3,
        cardinality_limit: 0,
        ..Default::default()
    });
    for p in ["/a", "/b", "/c", "/d", "/e"] {
        call(&mut inv, "s", "GET", p, 200);
    }
    assert_eq!(inv.len(), 3);
    assert_eq!(inv.overflow, 2);
}

#[test]
fn restored_endpoints_keep_their_parameters() {
    let mut inv = Inventory::new(InventoryConfig::default());
    let stats = EndpointStats {
        calls: 5,
        ..Default::default()
    };
    inv.restore(
        EndpointKey {
            service: "blog".into(),
            method: "GET".into(),
            route: "/posts/{param}".into(),
        },
        stats,
    );
    inv.restored();
    call(&mut inv, "blog", "GET", "/posts/hello", 200);
    let e = inv
        .endpoints()
        .find(|(k, _)| k.route == "/posts/{param}")
        .unwrap();
    assert_eq!(e.1.stats.calls, 6);
}

/// Any token is a method on the wire: unregistered ones share one endpoint per route, so
/// random methods cannot fill the inventory.
#[test]
fn unregistered_methods_are_filed_under_other() {
    let mut inv = Inventory::new(InventoryConfig::default());
    for m in ["PROPFIND", "PURGE", "XYZZY", "M-SEARCH", "Get-Out"] {
        let rec = call(&mut inv, "dav", m, "/files", 200);
        assert_eq!(rec.method, m, "the record keeps the method as sent");
    }
    call(&mut inv, "dav", "GET", "/files", 200);
    let mut eps: Vec<(String, u64)> = inv
        .endpoints()
        .map(|(k, e)| (k.method.clone(), e.stats.calls))
        .collect();
    eps.sort();
    assert_eq!(eps, [("GET".to_string(), 1), ("_OTHER".to_string(), 5)]);
    // A registered method in another case is that method.
    call(&mut inv, "dav", "get", "/files", 200);
    assert_eq!(inv.len(), 2);
}
