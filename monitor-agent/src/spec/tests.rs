//! Loading the fixture specs in `testdata/` end to end.

use std::path::{Path, PathBuf};

use super::{DeclaredOp, ServiceSpec, SpecError};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/spec/testdata")
        .join(name)
}

fn load(name: &str) -> ServiceSpec {
    let path = testdata(name);
    ServiceSpec::load("svc", &path).unwrap_or_else(|e| panic!("{e}"))
}

fn routes(spec: &ServiceSpec) -> Vec<String> {
    spec.ops
        .iter()
        .map(|op| format!("{} {}", op.method, op.route))
        .collect()
}

/// The operationId matched, to keep assertions short.
fn op_id<'a>(spec: &'a ServiceSpec, method: &str, path: &str) -> Option<&'a str> {
    spec.match_op(method, path)?.operation_id.as_deref()
}

fn parse_err(name: &str, text: &str) -> String {
    let err = ServiceSpec::from_str("svc", Path::new(name), text).unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    msg
}

#[test]
fn openapi_30_yaml_with_server_base_path() {
    let spec = load("petstore-3.0.yaml");
    assert_eq!(spec.service, "svc");
    assert_eq!(spec.sources, vec![testdata("petstore-3.0.yaml")]);
    assert_eq!(
        routes(&spec),
        [
            "GET /api/v1/pets",
            "POST /api/v1/pets",
            "GET /api/v1/pets/{petId}",
            "DELETE /api/v1/pets/{petId}",
            "GET /api/v1/pets/{petId}/photo.{format}",
            "GET /health",
        ]
    );
    let delete = spec.match_op("DELETE", "/api/v1/pets/7").unwrap();
    assert_eq!(
        *delete,
        DeclaredOp {
            method: "DELETE".to_owned(),
            route: "/api/v1/pets/{petId}".to_owned(),
            deprecated: true,
            operation_id: Some("deletePet".to_owned()),
        }
    );
    assert!(!spec.match_op("get", "/api/v1/pets/7").unwrap().deprecated);
    assert_eq!(op_id(&spec, "GET", "/api/v1/pets"), Some("listPets"));
    assert_eq!(
        op_id(&spec, "GET", "/api/v1/pets/7/photo.png"),
        Some("petPhoto")
    );
    assert_eq!(
        op_id(&spec, "GET", "/pets"),
        None,
        "the base path is part of the route"
    );
    assert_eq!(op_id(&spec, "PUT", "/api/v1/pets"), None);
    assert_eq!(
        op_id(&spec, "GET", "/health"),
        Some("health"),
        "path-item servers override"
    );
}

#[test]
fn openapi_31_json_servers_refs_and_webhooks() {
    let spec = load("openapi-3.1.json");
    assert_eq!(
        routes(&spec),
        [
            "GET /v2/orders",
            "GET /orders-api/orders",
            "POST /w/orders",
            "GET /v2/orders/{orderId}",
            "GET /orders-api/orders/{orderId}",
            "PATCH /v2/orders/{orderId}",
            "PATCH /orders-api/orders/{orderId}",
        ],
        "two servers share /v2; the external $ref declares nothing; webhooks are not served"
    );
    assert_eq!(
        op_id(&spec, "GET", "/orders-api/orders/{id}"),
        Some("getOrder")
    );
    assert!(spec.match_op("PATCH", "/v2/orders/1").unwrap().deprecated);
    assert_eq!(
        op_id(&spec, "POST", "/v2/orders"),
        None,
        "operation servers override"
    );
    assert_eq!(op_id(&spec, "POST", "/w/orders"), Some("createOrder"));
}

#[test]
fn swagger_20_yaml_with_base_path() {
    let spec = load("swagger-2.0.yaml");
    assert_eq!(
        routes(&spec),
        [
            "GET /legacy/accounts",
            "PUT /legacy/accounts/{id}",
            "OPTIONS /legacy/accounts/{id}"
        ]
    );
    assert!(
        spec.match_op("PUT", "/legacy/accounts/a1")
            .unwrap()
            .deprecated
    );
    assert_eq!(
        op_id(&spec, "GET", "/legacy/accounts/"),
        Some("listAccounts")
    );
}

#[test]
fn swagger_20_without_base_path_is_rooted() {
    let spec = ServiceSpec::from_str(
        "svc",
        Path::new("s.yaml"),
        "swagger: 2.0\npaths: {/a: {get: {}}}",
    )
    .unwrap();
    assert_eq!(routes(&spec), ["GET /a"]);
}

#[test]
fn server_variables_take_their_defaults() {
    let spec = load("server-variables.yaml");
    assert_eq!(routes(&spec), ["GET /reports/v3/reports/report-{date}"]);
    assert_eq!(
        op_id(&spec, "GET", "/reports/v3/reports/report-2026-11-27"),
        Some("dailyReport")
    );
}

#[test]
fn directory_loads_every_spec_file_in_name_order() {
    let spec = load("multi");
    assert_eq!(
        spec.sources,
        vec![
            testdata("multi/a-users.yaml"),
            testdata("multi/b-orders.json")
        ]
    );
    assert_eq!(
        routes(&spec),
        [
            "GET /users/me",
            "GET /users/{userId}",
            "GET /users/{id}",
            "GET /orders"
        ]
    );
    assert_eq!(
        op_id(&spec, "GET", "/users/42"),
        Some("getUser"),
        "first file wins"
    );
    assert_eq!(op_id(&spec, "GET", "/orders"), Some("listOrders"));
}

#[test]
fn precedence_and_agent_placeholders() {
    let text = "openapi: 3.0.0\npaths:\n  /users/{userId}: {get: {operationId: byId}}\n  /users/me: {get: {operationId: me}}\n";
    let spec = ServiceSpec::from_str("svc", Path::new("p.yaml"), text).unwrap();
    assert_eq!(op_id(&spec, "GET", "/users/me"), Some("me"));
    assert_eq!(op_id(&spec, "GET", "/users/42"), Some("byId"));
    assert_eq!(op_id(&spec, "GET", "/users/{id}"), Some("byId"));
    assert_eq!(op_id(&spec, "GET", "/users/me/"), Some("me"));
    assert_eq!(op_id(&spec, "GET", "/users/42/"), Some("byId"));

    let only_me = "openapi: 3.0.0\npaths:\n  /users/me: {get: {}}\n";
    let spec = ServiceSpec::from_str("svc", Path::new("p.yaml"), only_me).unwrap();
    assert!(spec.match_op("GET", "/users/{id}").is_none());
    assert!(spec.match_op("GET", "/users/me").is_some());
}

#[test]
fn empty_paths_and_31_webhooks_only_declare_nothing() {
    for text in [
        "openapi: 3.0.0\npaths: {}\n",
        "openapi: 3.1.0\nwebhooks: {hook: {post: {}}}\n",
    ] {
        let spec = ServiceSpec::from_str("svc", Path::new("e.yaml"), text).unwrap();
        assert!(spec.ops.is_empty(), "{text}");
        assert!(spec.match_op("GET", "/").is_none());
    }
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let path = testdata("broken.yaml");
    let err = ServiceSpec::load("svc", &path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SpecError::Syntax { line: 7, .. }), "{err:?}");
    assert!(msg.starts_with(&format!("{}:7:", path.display())), "{msg}");
    assert!(msg.contains("mapping values are not allowed"), "{msg}");
}

#[test]
fn json_syntax_error_names_file_and_line() {
    let path = testdata("broken.json");
    let msg = ServiceSpec::load("svc", &path).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}:6:", path.display())), "{msg}");
    assert!(msg.contains("expected `,` or `}`"), "{msg}");
}

#[test]
fn missing_version_key() {
    let msg = parse_err("v.yaml", "info: {title: x}\npaths: {}\n");
    assert_eq!(
        msg,
        "v.yaml: not an OpenAPI or Swagger document: no `openapi` or `swagger` key (top-level keys: info, paths) (at /)"
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    let msg = parse_err("t.yaml", "- a\n- b\n");
    assert_eq!(
        msg,
        "t.yaml: expected a mapping at the top level, found a list (at /)"
    );
    let msg = parse_err("t.yaml", "");
    assert_eq!(
        msg,
        "t.yaml: expected a mapping at the top level, found nothing (null) (at /)"
    );
}

#[test]
fn unknown_versions() {
    let msg = parse_err("v.yaml", "openapi: 4.0.0\npaths: {}\n");
    assert_eq!(
        msg,
        "v.yaml: unsupported OpenAPI version `4.0.0` (expected 3.0.x or 3.1.x) (at /openapi)"
    );
    let msg = parse_err("v.yaml", "swagger: '1.2'\npaths: {}\n");
    assert!(msg.contains("unsupported Swagger version `1.2`"), "{msg}");
    let msg = parse_err("v.json", r#"{"swaggerVersion": "1.2", "apis": []}"#);
    assert!(
        msg.contains("Swagger 1.2 documents are not supported"),
        "{msg}"
    );
}

#[test]
fn paths_missing_or_not_a_mapping() {
    assert_eq!(
        parse_err("p.yaml", "openapi: 3.0.0\n"),
        "p.yaml: missing `paths` (at /)"
    );
    assert_eq!(
        parse_err("p.yaml", "openapi: 3.0.0\npaths: [/a]\n"),
        "p.yaml: `paths` must be a mapping, found a list (at /paths)"
    );
}

#[test]
fn structural_errors_carry_their_location() {
    let cases = [
        ("paths: {/a: [get]}", "(at /paths/~1a)"),
        ("paths: {/a: {get: yes}}", "(at /paths/~1a/get)"),
        ("paths: {a: {}}", "path `a` must start with `/` (at /paths/a)"),
        ("servers: {url: /x}\npaths: {}", "(at /servers)"),
        ("servers: [{description: x}]\npaths: {}", "server has no `url` (at /servers/0)"),
        ("paths: {/a: {get: {servers: [{url: 1}]}}}", "(at /paths/~1a/get/servers/0/url)"),
        ("paths: {/a: {$ref: '#/nowhere'}}", "unresolved reference `#/nowhere` (at /paths/~1a/$ref)"),
        ("paths: {/a: {$ref: '#/paths/~1a'}}", "chain too deep"),
        (
            "paths: {/a: {$ref: '#/components/pathItems/A'}}\ncomponents: {pathItems: {A: {get: 1}}}",
            "(at /components/pathItems/A/get)",
        ),
    ];
    for (body, want) in cases {
        let msg = parse_err("s.yaml", &format!("openapi: 3.1.0\n{body}\n"));
        assert!(msg.starts_with("s.yaml: "), "{msg}");
        assert!(msg.contains(want), "{body}: {msg}");
    }
}

#[test]
fn nonexistent_file_is_an_io_error() {
    let path = testdata("does-not-exist.yaml");
    let err = ServiceSpec::load("svc", &path).unwrap_err();
    assert!(matches!(err, SpecError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", path.display())),
        "{err}"
    );
}

#[test]
fn directory_without_spec_files_is_an_error() {
    let no_specs = testdata("no-specs");
    let err = ServiceSpec::load("svc", &no_specs).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no spec file (*.json, *.yaml, *.yml) in this directory",
            no_specs.display()
        )
    );

    let empty = std::env::temp_dir().join(format!("spec-empty-dir-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let err = ServiceSpec::load("svc", &empty).unwrap_err();
    std::fs::remove_dir(&empty).unwrap();
    assert!(matches!(err, SpecError::NoSpecFiles { .. }), "{err:?}");
}

#[test]
fn declared_ops_serialize_for_the_api() {
    let op = DeclaredOp {
        method: "GET".to_owned(),
        route: "/a".to_owned(),
        deprecated: false,
        operation_id: None,
    };
    assert_eq!(
        serde_json::to_string(&op).unwrap(),
        r#"{"method":"GET","route":"/a","deprecated":false,"operation_id":null}"#
    );
}
