//! Observed traffic as an OpenAPI 3.1 document: what a service really serves, ready to be
//! diffed against its declared spec or to become the first draft of one.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::view::EndpointView;
use crate::route::{Grammar, Part, Seg};

/// OpenAPI's method keys; other methods (WebDAV...) cannot be expressed.
fn method_key(m: &str) -> Option<&'static str> {
    Some(match m {
        "GET" => "get",
        "PUT" => "put",
        "POST" => "post",
        "DELETE" => "delete",
        "OPTIONS" => "options",
        "HEAD" => "head",
        "PATCH" => "patch",
        "TRACE" => "trace",
        _ => return None,
    })
}

/// Schema for a built-in placeholder, so `{id}` exports as an integer and `{uuid}` as a
/// uuid-formatted string.
fn param_schema(placeholder: &str) -> Value {
    match placeholder {
        "id" => json!({"type": "integer", "minimum": 0}),
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "date" => json!({"type": "string", "format": "date"}),
        "email" => json!({"type": "string", "format": "email"}),
        _ => json!({"type": "string"}),
    }
}

/// The path with placeholder names made unique (`/a/{id}/b/{id}` → `/a/{id}/b/{id_2}`)
/// as OpenAPI requires, and its path parameters (name, original placeholder). Linear in
/// the number of parameters: each base name's counter only moves forward.
fn path_and_params(route: &str) -> (String, Vec<(String, String)>) {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    let path = rewrite_params(route, |orig| {
        let base = param_name_base(orig);
        let n = next_suffix.entry(base.clone()).or_insert(1);
        let mut name = base.clone();
        while used.contains(&name) {
            *n += 1;
            name = format!("{base}_{n}");
        }
        used.insert(name.clone());
        params.push((name.clone(), orig.to_string()));
        format!("{{{name}}}")
    });
    (path, params)
}

/// A placeholder as an OpenAPI parameter name: unusual characters become `_`.
fn param_name_base(orig: &str) -> String {
    let base: String = orig
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if base.is_empty() {
        "param".to_string()
    } else {
        base
    }
}

/// Paths equal up to parameter names are one path in OpenAPI.
fn shape_key(route: &str) -> String {
    rewrite_params(route, |_| "{}".to_owned())
}

/// The route with each parameter, as the route grammar reads it, replaced; everything
/// else (a trailing slash included: OpenAPI tells `/a/` from `/a`) kept as it is.
fn rewrite_params(route: &str, mut param: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(route.len() + 8);
    for (i, seg) in route.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match Seg::parse(seg, Grammar::Declared) {
            Ok(Seg::Param(name)) => out.push_str(&param(&name)),
            Ok(Seg::Mixed(parts)) => {
                for part in &parts {
                    match part {
                        Part::Literal(l) => out.push_str(l),
                        Part::Param(name) => out.push_str(&param(name)),
                    }
                }
            }
            _ => out.push_str(seg),
        }
    }
    out
}

/// An OpenAPI `content` map (schema unknown) from observed media types.
fn media(types: &BTreeMap<String, u64>) -> Map<String, Value> {
    types
        .keys()
        .filter(|ct| ct.contains('/'))
        .map(|ct| (ct.clone(), json!({})))
        .collect()
}

fn operation(e: &EndpointView, params: &[(String, String)]) -> Value {
    let mut parameters: Vec<Value> = params
        .iter()
        .map(|(name, orig)| {
            json!({"name": name, "in": "path", "required": true, "schema": param_schema(orig)})
        })
        .collect();
    for q in &e.query_params {
        parameters.push(
            json!({"name": q, "in": "query", "required": false, "schema": {"type": "string"}}),
        );
    }
    let content = media(&e.response_content_types);
    let mut responses = Map::new();
    for (status, n) in &e.statuses {
        let mut r = Map::new();
        r.insert("description".into(), json!(format!("observed {n} times")));
        if !content.is_empty() && status != "204" && status != "304" {
            r.insert("content".into(), Value::Object(content.clone()));
        }
        responses.insert(status.clone(), Value::Object(r));
    }
    let mut op = Map::new();
    op.insert("summary".into(), json!(format!("{} {}", e.method, e.route)));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    let req_content = media(&e.request_content_types);
    if !req_content.is_empty() && !matches!(e.method.as_str(), "GET" | "HEAD" | "DELETE" | "TRACE")
    {
        op.insert("requestBody".into(), json!({"content": req_content}));
    }
    op.insert("responses".into(), Value::Object(responses));
    op.insert(
        "x-observed".into(),
        json!({
            "calls": e.calls,
            "first_seen": e.first_seen,
            "last_seen": e.last_seen,
            "spec_status": e.spec_status,
            "callers": e.callers,
        }),
    );
    Value::Object(op)
}

/// One OpenAPI path: as written, its parameters, its operations by method.
type PathEntry = (String, Vec<(String, String)>, Map<String, Value>);

/// The OpenAPI 3.1 document for one service's observed endpoints.
pub fn export(service: &str, endpoints: &[EndpointView]) -> Value {
    // shape → (path as first written, operations by method)
    let mut paths: BTreeMap<String, PathEntry> = BTreeMap::new();
    let mut busiest_first: Vec<&EndpointView> =
        endpoints.iter().filter(|e| e.service == service).collect();
    busiest_first.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.route.cmp(&b.route)));
    for e in busiest_first {
        let Some(key) = method_key(&e.method) else {
            continue;
        };
        if !e.route.starts_with('/') {
            continue;
        }
        let entry = paths.entry(shape_key(&e.route)).or_insert_with(|| {
            let (path, params) = path_and_params(&e.route);
            (path, params, Map::new())
        });
        // Two routes of one shape with the same method: the busier one describes it.
        if !entry.2.contains_key(key) {
            let op = operation(e, &entry.1);
            entry.2.insert(key.to_string(), op);
        }
    }
    let paths: Map<String, Value> = paths
        .into_values()
        .map(|(path, _, ops)| (path, Value::Object(ops)))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{service} (observed)"),
            "version": "observed",
            "description": format!("Endpoints of {service} observed on the wire by monitor-agent; not a declared contract."),
        },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_placeholders_are_renamed() {
        let (p, params) = path_and_params("/users/{id}/orders/{id}");
        assert_eq!(p, "/users/{id}/orders/{id_2}");
        assert_eq!(params.len(), 2);
        assert_eq!(params[1], ("id_2".to_string(), "id".to_string()));
        let (p, _) = path_and_params("/files/{name}.json");
        assert_eq!(p, "/files/{name}.json");
        assert_eq!(shape_key("/u/{id}"), shape_key("/u/{uuid}"));
        // A name a placeholder already holds is skipped, never repeated.
        let (p, _) = path_and_params("/{id_2}/{id}/{id}/{id_3}");
        assert_eq!(p, "/{id_2}/{id}/{id_3}/{id_3_2}");
    }

    /// Fuzzing found a route of thousands of `{param}` that took minutes to export when each
    /// new name was searched for from `_2` among all names so far.
    #[test]
    fn thousands_of_same_named_placeholders_export_in_linear_time() {
        let route = "/{param}".repeat(20_000);
        let (p, params) = path_and_params(&route);
        assert_eq!(params.len(), 20_000);
        assert!(p.ends_with("/{param_20000}"), "{}", &p[p.len() - 40..]);
        let names: HashSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 20_000);
    }
}
