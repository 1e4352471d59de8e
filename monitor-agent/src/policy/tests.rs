//! End to end through the real inventory: calls are filed as the agent files them, a
//! policy is suggested from the inventory's view, and the same calls are replayed
//! against it.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use super::*;
use crate::{
    inventory::{
        stats::OTHER,
        view::{endpoints, Filter},
        Inventory, InventoryConfig,
    },
    protocol::credentials::{Auth, AuthKind},
    record::{CallRecord, Peer, Role},
    route::RouteKind,
};

const T0: u64 = 1_800_000_000;

struct Traffic {
    inv: Inventory,
    calls: Vec<CallRecord>,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            inv: Inventory::new(InventoryConfig {
                cardinality_limit: 5,
                ..InventoryConfig::default()
            }),
            calls: Vec::new(),
        }
    }

    /// Files one call the way the pipeline does and keeps it for the replay.
    fn call(&mut self, client: Option<&str>, server: &str, method: &str, path: &str, auth: Auth) {
        let route = self.inv.route(server, method, path, RouteKind::Complete);
        let c: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let s: SocketAddr = "10.0.0.3:8080".parse().unwrap();
        let mut client_peer = Peer::remote(c);
        client_peer.service = client.map(Arc::from);
        let mut server_peer = Peer::local(s, 1, Arc::from("srv"));
        server_peer.service = Some(Arc::from(server));
        let ts = UNIX_EPOCH + Duration::from_secs(T0 + self.calls.len() as u64);
        let mut auth = auth;
        if auth.kind == AuthKind::Jwt {
            auth.audiences = vec!["orders".into()];
            auth.scopes = vec!["orders:read".into()];
            auth.expires_at = Some(T0 as i64 + 3600);
        }
        let rec = CallRecord {
            ts,
            route,
            auth,
            ..CallRecord::sample(Role::Server, client_peer, server_peer, method, path)
        };
        self.inv.observe(&rec);
        self.calls.push(rec);
    }

    fn suggest(&self) -> (Policy, Vec<String>) {
        suggest(&endpoints(&self.inv, &Filter::default()))
    }

    fn violations(&self, p: &Policy) -> Vec<(String, Violation)> {
        self.calls
            .iter()
            .filter_map(|rec| {
                let facts = CallFacts::from_record(rec);
                p.evaluate(&facts).map(|v| (rec.to_text(), v))
            })
            .collect()
    }
}

fn jwt(iss: &str) -> Auth {
    Auth {
        kind: AuthKind::Jwt,
        issuer: Some(iss.into()),
        subject: Some("u1".into()),
        ..Auth::default()
    }
}

fn of(kind: AuthKind, detail: Option<&str>) -> Auth {
    Auth {
        kind,
        detail: detail.map(String::from),
        ..Auth::default()
    }
}

fn shop() -> Traffic {
    let mut t = Traffic::new();
    let issuer = "https://auth.test";
    let fe = Some("frontend");
    t.call(
        fe,
        "orders",
        "GET",
        "/api/v1/orders?page=2&token=h:1a2b",
        jwt(issuer),
    );
    t.call(fe, "orders", "GET", "/api/v1/orders/42", jwt(issuer));
    t.call(fe, "orders", "get", "/api/v1/orders/43", jwt(issuer));
    t.call(fe, "orders", "POST", "/api/v1/orders", jwt(issuer));
    t.call(
        fe,
        "orders",
        "DELETE",
        "/api/v1/orders/7",
        of(AuthKind::Bearer, None),
    );
    // A template and a literal it covers, one anonymous.
    t.call(fe, "orders", "GET", "/users/me", Auth::default());
    t.call(fe, "orders", "GET", "/users/42", jwt(issuer));
    t.call(
        Some("batch"),
        "orders",
        "GET",
        "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000",
        jwt("https://other.test"),
    );
    // Cardinality merging turns these into /products/{param} half way through.
    for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        t.call(
            fe,
            "orders",
            "GET",
            &format!("/products/{name}"),
            Auth::default(),
        );
    }
    // An unnamed client, an API key, a bare IP caller, the root.
    t.call(
        None,
        "payments",
        "POST",
        "/charge",
        of(AuthKind::ApiKey, Some("x-api-key")),
    );
    t.call(
        Some("orders"),
        "payments",
        "POST",
        "/charge",
        of(AuthKind::ApiKey, Some("x-api-key")),
    );
    t.call(
        Some("10.0.0.1"),
        "orders",
        "GET",
        "/healthz",
        Auth::default(),
    );
    t.call(Some("frontend"), "web", "GET", "/", Auth::default());
    t
}

#[test]
fn replaying_the_observed_traffic_gives_no_violation() {
    let t = shop();
    let (policy, warnings) = t.suggest();
    assert!(warnings.is_empty(), "{warnings:?}");
    let v = t.violations(&policy);
    assert!(v.is_empty(), "{v:#?}\n{}", policy.to_yaml());

    // The same through the file: what an operator would save and load.
    let reloaded = Policy::parse("suggested.yaml", &policy.to_yaml()).unwrap();
    assert_eq!(reloaded, policy);
    assert!(t.violations(&reloaded).is_empty());
}

#[test]
fn the_suggestion_is_tight() {
    let t = shop();
    let (policy, _) = t.suggest();
    let yaml = policy.to_yaml();
    assert!(
        yaml.contains("  - from: [frontend]\n    to: [orders]\n    methods: [DELETE, GET, POST]\n"),
        "{yaml}"
    );
    assert!(yaml.contains("\"/products/{param}\""), "{yaml}");

    let mut t2 = Traffic::new();
    let fe = Some("frontend");
    t2.call(
        fe,
        "payments",
        "POST",
        "/charge",
        of(AuthKind::ApiKey, Some("x-api-key")),
    );
    t2.call(
        Some("newcomer"),
        "orders",
        "GET",
        "/api/v1/orders",
        jwt("https://auth.test"),
    );
    t2.call(
        fe,
        "orders",
        "PUT",
        "/api/v1/orders/1",
        jwt("https://auth.test"),
    );
    t2.call(
        fe,
        "orders",
        "GET",
        "/api/v2/orders",
        jwt("https://auth.test"),
    );
    t2.call(fe, "orders", "GET", "/api/v1/orders", Auth::default());
    t2.call(
        fe,
        "orders",
        "GET",
        "/api/v1/orders/9",
        jwt("https://evil.test"),
    );
    t2.call(
        Some("batch"),
        "orders",
        "GET",
        "/api/v1/orders/1",
        jwt("https://auth.test"),
    );
    let reasons: Vec<Reason> = t2
        .violations(&policy)
        .into_iter()
        .map(|(_, v)| v.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            Reason::EdgeNotAllowed,
            Reason::UnknownCaller,
            Reason::MethodNotAllowed,
            Reason::RouteNotAllowed,
            Reason::MissingCredentials,
            Reason::IssuerNotAllowed,
            // batch's call with an auth.test token is fine: /api/v1/orders/{id} requires
            // the issuers of every GET its pattern covers, other.test included.
        ]
    );
}

#[test]
fn callers_beyond_the_inventory_bound_are_a_warning_and_stay_violations() {
    let mut t = Traffic::new();
    for i in 0..300 {
        t.call(
            Some(&format!("client-{i:03}")),
            "api",
            "GET",
            "/x",
            Auth::default(),
        );
    }
    let (policy, warnings) = t.suggest();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(OTHER) && warnings[0].contains("44 calls"),
        "{warnings:?}"
    );
    let v = t.violations(&policy);
    assert_eq!(v.len(), 44);
    assert!(v.iter().all(|(_, v)| v.reason == Reason::UnknownCaller));
}

#[test]
fn exports_of_a_suggestion_parse() {
    use serde::Deserialize;
    let (policy, _) = shop().suggest();
    for format in ExportFormat::ALL {
        let out = export(&policy, format, &Placements::assumed("shop"));
        let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&out)
            .map(|d| {
                serde_yaml_ng::Value::deserialize(d)
                    .unwrap_or_else(|e| panic!("{format}: {e}\n{out}"))
            })
            .collect();
        assert!(!docs.is_empty(), "{format}");
    }
}
