//! Routes and files arbitrary requests the way the pipeline does (route templates from
//! the input, route discovery with its re-filing, endpoint filing, the inventory views and
//! OpenAPI export): never a panic or a stack overflow, however deep or wide the paths; the
//! endpoint table stays within its cap; every method outside the registered set is filed
//! as `_OTHER`; a route never carries the query and keeps the path's segments.
#![no_main]

use std::{net::SocketAddr, sync::Arc};

use libfuzzer_sys::fuzz_target;
use monitor_agent::{
    inventory::{openapi, view, Inventory, InventoryConfig},
    record::{method_or_other, CallRecord, Peer, Role},
    route::RouteKind,
};

const MAX_ENDPOINTS: usize = 64;

/// A line `R<n> <segment>` expands into `n * 64` copies of the segment, so that short
/// inputs reach deep paths.
fn expand(line: &str) -> String {
    let Some(rest) = line.strip_prefix('R') else {
        return line.to_string();
    };
    let (n, seg) = rest.split_once(' ').unwrap_or((rest, "/"));
    let n = n.parse::<usize>().unwrap_or(1).min(256) * 64;
    seg.repeat(n)
}

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let mut lines = text.lines();
    let patterns = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .filter_map(|p| p.parse().ok())
        .collect();
    let mut inv = Inventory::new(InventoryConfig {
        patterns,
        cardinality_limit: 4,
        max_endpoints: MAX_ENDPOINTS,
    });
    let server_addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    for (i, line) in lines.enumerate() {
        let line = expand(line);
        let (method, target) = line.split_once(' ').unwrap_or(("GET", &line));
        let service = ["users", "orders", ""][i % 3];
        let kind = [RouteKind::Complete, RouteKind::Complete, RouteKind::Partial, RouteKind::Rpc][i % 4];
        let route = inv.route(service, method, target, kind);
        assert!(!route.contains('?'), "{route:?} from {target:?}");
        let segments = monitor_agent::route::segment_count;
        assert_eq!(segments(&route), segments(target), "{route:?} from {target:?}");
        let mut server = Peer::local(server_addr, 1, Arc::from("server"));
        server.service = Some(Arc::from(service));
        let client = Peer::remote("127.0.0.1:40000".parse().unwrap());
        let call = CallRecord {
            route,
            ..CallRecord::sample(Role::Server, client, server, method, target)
        };
        inv.observe(&call);
        assert!(inv.len() <= MAX_ENDPOINTS);
    }
    let views = view::endpoints(&inv, &view::Filter::default());
    for (key, _) in inv.endpoints() {
        assert_eq!(method_or_other(&key.method), key.method.as_str(), "{key:?}");
    }
    for service in ["users", "orders", ""] {
        let mine: Vec<_> = views.iter().filter(|v| v.service == service).cloned().collect();
        let _ = openapi::export(service, &mine);
    }
});
