//! Writing YAML by hand, because the policy and the exported manifests are read by people:
//! flow lists, comments and a stable key order matter more than a generic serializer's
//! layout. Everything a name could break is quoted.

use std::borrow::Cow;

/// `s` as a YAML scalar: plain when it cannot be read as anything but this string,
/// else double-quoted (JSON string syntax is valid YAML).
pub(super) fn scalar(s: &str) -> Cow<'_, str> {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !is_reserved_word(s);
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(serde_json::Value::from(s).to_string())
    }
}

/// Words YAML 1.1 readers (libyaml among them) turn into booleans or null.
fn is_reserved_word(s: &str) -> bool {
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "true", "false", "on", "off", "null"];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(s))
}

/// `[a, "b c"]`.
pub(super) fn flow<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<Cow<'_, str>> = items.into_iter().map(scalar).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scalar_reads_back_as_the_same_string() {
        let cases = [
            "frontend",
            "/api/v1/orders",
            "/api/{id}",
            "*",
            "/static/**",
            "Web Content",
            "10.0.0.1:8080",
            "true",
            "No",
            "null",
            "~",
            "123",
            "1e3",
            ".inf",
            "-x",
            "a: b",
            "a#b",
            "quote\"back\\slash",
            "https://auth.test",
            "é",
            "",
        ];
        for s in cases {
            let doc = format!("k: {}\nl: {}\n", scalar(s), flow([s, s]));
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc).unwrap();
            assert_eq!(v["k"].as_str(), Some(s), "{doc}");
            assert_eq!(v["l"][1].as_str(), Some(s), "{doc}");
        }
        assert_eq!(scalar("frontend"), "frontend");
        assert_eq!(scalar("/api/{id}"), "\"/api/{id}\"");
    }
}
