//! Walking a parsed OpenAPI 3.0/3.1 or Swagger 2.0 document into declared operations.
//!
//! Strict about the shape that decides which operations exist (paths, path items,
//! operations, servers), so a broken spec fails loudly at startup instead of silently
//! declaring nothing; lenient about annotations (`deprecated`, `operationId`) and server
//! variables, whose mistakes should not stop monitoring.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::load::one_line;
use super::servers::{servers, swagger_base};
use super::{DeclaredOp, SpecError};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Guards against `$ref` cycles between path items.
const MAX_REF_DEPTH: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Swagger2,
    OpenApi30,
    OpenApi31,
}

/// A structural problem: where (JSON pointer) and why.
pub(super) type Problem = (String, String);

pub(super) fn operations(source: &Path, doc: &Value) -> Result<Vec<DeclaredOp>, SpecError> {
    walk(doc).map_err(|(location, reason)| SpecError::Invalid {
        path: source.to_path_buf(),
        location: if location.is_empty() {
            "/".to_owned()
        } else {
            location
        },
        reason: one_line(&reason),
    })
}

fn walk(doc: &Value) -> Result<Vec<DeclaredOp>, Problem> {
    let Some(root) = doc.as_mapping() else {
        let found = describe(doc);
        return Err((
            String::new(),
            format!("expected a mapping at the top level, found {found}"),
        ));
    };
    let version = version(root)?;
    let paths = match root.get("paths") {
        None if version == Version::OpenApi31 && root.contains_key("webhooks") => {
            return Ok(vec![])
        }
        None => return Err((String::new(), "missing `paths`".to_owned())),
        Some(p) => p.as_mapping().ok_or_else(|| {
            (
                "/paths".to_owned(),
                format!("`paths` must be a mapping, found {}", describe(p)),
            )
        })?,
    };
    let root_bases = match version {
        Version::Swagger2 => vec![swagger_base(root)?],
        Version::OpenApi30 | Version::OpenApi31 => {
            servers(root.get("servers"), "/servers")?.unwrap_or_else(|| vec![String::new()])
        }
    };
    let mut ops = Vec::new();
    for (key, item) in paths {
        let Some(template) = key.as_str() else {
            return Err((
                "/paths".to_owned(),
                format!("path key {} is not a string", describe(key)),
            ));
        };
        if template.starts_with("x-") {
            continue;
        }
        let loc = format!("/paths/{}", escape(template));
        if !template.starts_with('/') {
            return Err((loc, format!("path `{template}` must start with `/`")));
        }
        path_item(doc, version, template, item, &loc, &root_bases, &mut ops)?;
    }
    Ok(ops)
}

fn version(root: &Mapping) -> Result<Version, Problem> {
    if let Some(v) = root.get("openapi") {
        let text = scalar_text(v).ok_or_else(|| {
            (
                "/openapi".to_owned(),
                format!("`openapi` must be a version string, found {}", describe(v)),
            )
        })?;
        return match text.as_str() {
            t if is_version(t, "3.0") => Ok(Version::OpenApi30),
            t if is_version(t, "3.1") => Ok(Version::OpenApi31),
            t => Err((
                "/openapi".to_owned(),
                format!("unsupported OpenAPI version `{t}` (expected 3.0.x or 3.1.x)"),
            )),
        };
    }
    if let Some(v) = root.get("swagger") {
        return match scalar_text(v) {
            Some(t) if t == "2.0" => Ok(Version::Swagger2),
            Some(t) => Err((
                "/swagger".to_owned(),
                format!("unsupported Swagger version `{t}` (expected 2.0)"),
            )),
            None => Err((
                "/swagger".to_owned(),
                format!("`swagger` must be a version string, found {}", describe(v)),
            )),
        };
    }
    if let Some(v) = root.get("swaggerVersion") {
        let found = scalar_text(v).unwrap_or_else(|| describe(v));
        return Err((
            "/swaggerVersion".to_owned(),
            format!("Swagger {found} documents are not supported (expected OpenAPI 3.0.x, 3.1.x or Swagger 2.0)"),
        ));
    }
    let keys: Vec<String> = root
        .keys()
        .take(6)
        .map(|k| scalar_text(k).unwrap_or_else(|| describe(k)))
        .collect();
    let more = if root.len() > keys.len() { ", ..." } else { "" };
    Err((
        String::new(),
        format!(
            "not an OpenAPI or Swagger document: no `openapi` or `swagger` key (top-level keys: {}{more})",
            keys.join(", ")
        ),
    ))
}

fn is_version(text: &str, major_minor: &str) -> bool {
    text.strip_prefix(major_minor)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

fn path_item(
    doc: &Value,
    version: Version,
    template: &str,
    item: &Value,
    loc: &str,
    root_bases: &[String],
    ops: &mut Vec<DeclaredOp>,
) -> Result<(), Problem> {
    let layers = layers(doc, item, loc.to_owned(), 0)?;
    let openapi3 = version != Version::Swagger2;
    let item_bases = match layers.iter().find(|(m, _)| m.contains_key("servers")) {
        Some((m, l)) if openapi3 => servers(m.get("servers"), &format!("{l}/servers"))?,
        _ => None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (map, layer_loc) in &layers {
        for (key, op) in *map {
            let Some(key) = key.as_str() else { continue };
            let Some(&method) = METHODS.iter().find(|m| m.eq_ignore_ascii_case(key)) else {
                continue;
            };
            // An earlier layer (the path item itself, before what it refers to) wins.
            if seen.contains(&method) {
                continue;
            }
            seen.push(method);
            let op_loc = format!("{layer_loc}/{}", escape(key));
            let op = op.as_mapping().ok_or_else(|| {
                (
                    op_loc.clone(),
                    format!("operation must be a mapping, found {}", describe(op)),
                )
            })?;
            let op_bases = if openapi3 {
                servers(op.get("servers"), &format!("{op_loc}/servers"))?
            } else {
                None
            };
            let bases = op_bases
                .as_deref()
                .or(item_bases.as_deref())
                .unwrap_or(root_bases);
            for base in bases {
                ops.push(DeclaredOp {
                    method: method.to_ascii_uppercase(),
                    route: format!("{base}{template}"),
                    deprecated: op.get("deprecated").and_then(Value::as_bool) == Some(true),
                    operation_id: op
                        .get("operationId")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
        }
    }
    Ok(())
}

/// The path item followed by what its local `$ref` chain points to, each with its location.
fn layers<'a>(
    doc: &'a Value,
    item: &'a Value,
    loc: String,
    depth: usize,
) -> Result<Vec<(&'a Mapping, String)>, Problem> {
    let map = item.as_mapping().ok_or_else(|| {
        (
            loc.clone(),
            format!("path item must be a mapping, found {}", describe(item)),
        )
    })?;
    let reference = match map.get("$ref") {
        None => None,
        Some(r) => Some(r.as_str().ok_or_else(|| {
            (
                format!("{loc}/$ref"),
                format!("`$ref` must be a string, found {}", describe(r)),
            )
        })?),
    };
    let mut out = vec![(map, loc.clone())];
    // External references (other files, URLs) are not followed; see the module docs.
    if let Some(pointer) = reference.and_then(|r| r.strip_prefix('#')) {
        if depth >= MAX_REF_DEPTH {
            return Err((
                format!("{loc}/$ref"),
                "`$ref` chain too deep (cyclic?)".to_owned(),
            ));
        }
        let pointer = percent_decode(pointer);
        let target = resolve(doc, &pointer).ok_or_else(|| {
            (
                format!("{loc}/$ref"),
                format!("unresolved reference `#{pointer}`"),
            )
        })?;
        out.extend(layers(doc, target, pointer, depth + 1)?);
    }
    Ok(out)
}

/// JSON pointer lookup (RFC 6901) on the YAML tree.
fn resolve<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(doc);
    }
    let mut cur = doc;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        cur = match cur {
            Value::Sequence(s) => s.get(token.parse::<usize>().ok()?)?,
            _ => cur.get(token.as_str())?,
        };
    }
    Some(cur)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Version fields are often written unquoted in YAML (`swagger: 2.0`), which parses as a
/// number; its text is what the author meant.
pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => describe(&t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_and_percent_encoding() {
        let doc: Value =
            serde_yaml_ng::from_str("paths: {'/a/{id}': {get: {}}}\nl: [x, y]").unwrap();
        assert!(resolve(&doc, &percent_decode("/paths/~1a~1%7Bid%7D/get")).is_some());
        assert_eq!(resolve(&doc, "/l/1").and_then(Value::as_str), Some("y"));
        assert!(resolve(&doc, "/l/2").is_none());
        assert_eq!(escape("/a~b/c"), "~1a~0b~1c");
    }

    #[test]
    fn versions() {
        let v = |s: &str| {
            version(
                serde_yaml_ng::from_str::<Value>(s)
                    .unwrap()
                    .as_mapping()
                    .unwrap(),
            )
        };
        assert!(matches!(v("openapi: 3.0.3"), Ok(Version::OpenApi30)));
        assert!(matches!(v("openapi: '3.1'"), Ok(Version::OpenApi31)));
        assert!(matches!(v("swagger: 2.0"), Ok(Version::Swagger2)));
        assert!(v("openapi: 3.10.0").is_err());
        let (loc, reason) = v("swaggerVersion: '1.2'\napis: []").err().unwrap();
        assert_eq!(loc, "/swaggerVersion");
        assert!(reason.contains("Swagger 1.2"), "{reason}");
    }
}
