//! Base paths: the path part of where a spec says its operations are served, because
//! observed requests carry it while path templates do not.

use serde_yaml_ng::{Mapping, Value};

use super::openapi::{describe, scalar_text, Problem};

/// Swagger 2.0 has one base path for the whole document.
pub(super) fn swagger_base(root: &Mapping) -> Result<String, Problem> {
    match root.get("basePath") {
        None => Ok(String::new()),
        Some(v) => v.as_str().map(normalize_base).ok_or_else(|| {
            (
                "/basePath".to_owned(),
                format!("`basePath` must be a string, found {}", describe(v)),
            )
        }),
    }
}

/// Distinct base paths of a `servers` list, in order; `None` when absent or empty, so the
/// enclosing level's servers apply.
pub(super) fn servers(list: Option<&Value>, loc: &str) -> Result<Option<Vec<String>>, Problem> {
    let Some(list) = list else { return Ok(None) };
    let items = list.as_sequence().ok_or_else(|| {
        (
            loc.to_owned(),
            format!("`servers` must be a list, found {}", describe(list)),
        )
    })?;
    let mut bases: Vec<String> = Vec::new();
    for (i, server) in items.iter().enumerate() {
        let loc = format!("{loc}/{i}");
        let server = server.as_mapping().ok_or_else(|| {
            (
                loc.clone(),
                format!("server must be a mapping, found {}", describe(server)),
            )
        })?;
        let url = match server.get("url") {
            None => return Err((loc, "server has no `url`".to_owned())),
            Some(u) => u.as_str().ok_or_else(|| {
                (
                    format!("{loc}/url"),
                    format!("`url` must be a string, found {}", describe(u)),
                )
            })?,
        };
        let url = substitute(url, server.get("variables").and_then(Value::as_mapping));
        let base = normalize_base(url_path(&url));
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    Ok((!bases.is_empty()).then_some(bases))
}

/// Replaces `{name}` with the variable's default; unknown names stay, which leaves a
/// parameter-like segment that still matches any value.
fn substitute(url: &str, variables: Option<&Mapping>) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + len];
        out.push_str(&rest[..open]);
        let default = variables
            .and_then(|v| v.get(name))
            .and_then(|v| v.get("default"))
            .and_then(scalar_text);
        match default {
            Some(d) => out.push_str(&d),
            None => out.push_str(&rest[open..=open + len]),
        }
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The path part of an absolute, scheme-relative or relative server URL. Relative URLs
/// are taken from the root because the document's own location is unknown here.
fn url_path(url: &str) -> &str {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    let after_authority = match url.find("://") {
        Some(i) if is_scheme(&url[..i]) => Some(&url[i + 3..]),
        _ => url.strip_prefix("//"),
    };
    match after_authority {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    }
}

fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `""` for the root, otherwise `/a/b`: joining then never doubles or drops a slash.
fn normalize_base(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .fold(String::new(), |acc, s| acc + "/" + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_paths() {
        let base = |u: &str| normalize_base(url_path(u));
        assert_eq!(base("https://x.example.com/api/v1"), "/api/v1");
        assert_eq!(base("https://x.example.com:8443/api/v1/"), "/api/v1");
        assert_eq!(base("https://x.example.com"), "");
        assert_eq!(base("//cdn.example.com/v2?x=1"), "/v2");
        assert_eq!(base("/api/v1"), "/api/v1");
        assert_eq!(base("api/v1"), "/api/v1");
        assert_eq!(base("/"), "");
        assert_eq!(base("."), "");
        assert_eq!(base(""), "");
    }

    #[test]
    fn server_variables_use_defaults_and_keep_unknown_names() {
        let vars: Value =
            serde_yaml_ng::from_str("basePath: {default: v2}\nport: {default: 8443}").unwrap();
        let vars = vars.as_mapping();
        assert_eq!(
            substitute("https://h:{port}/{basePath}/x", vars),
            "https://h:8443/v2/x"
        );
        assert_eq!(substitute("/{other}/x", vars), "/{other}/x");
        assert_eq!(substitute("/{unclosed", vars), "/{unclosed");
    }
}
