//! Finding spec files and parsing their text into one tree type for JSON and YAML alike.
//!
//! Both formats land in `serde_yaml_ng::Value` rather than `serde_json::Value` because its
//! mappings keep document order, so declared operations come out in the order the author
//! wrote them.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::SpecError;

const SPEC_EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// The spec files `path` stands for: itself, or the spec files directly inside it sorted by
/// name so that which file's declaration wins a duplicate is reproducible.
pub(super) fn spec_files(path: &Path) -> Result<Vec<PathBuf>, SpecError> {
    let io = |source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !std::fs::metadata(path).map_err(io)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let file = entry.map_err(io)?.path();
        // `fs::metadata` follows symlinks, so linked spec files count.
        if has_spec_extension(&file) && std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(SpecError::NoSpecFiles {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

fn has_spec_extension(path: &Path) -> bool {
    extension(path).is_some_and(|e| SPEC_EXTENSIONS.iter().any(|s| e.eq_ignore_ascii_case(s)))
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

/// JSON goes through serde_json for its sharper messages; YAML (a JSON superset) is the
/// fallback when the name does not say, unless the text plainly starts as JSON.
pub(super) fn parse(source: &Path, text: &str) -> Result<Value, SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let is_json = match extension(source) {
        Some(e) if e.eq_ignore_ascii_case("json") => true,
        Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => false,
        _ => text.trim_start().starts_with('{'),
    };
    if is_json {
        serde_json::from_str(text).map_err(|e| json_error(source, &e))
    } else {
        let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(source, &e))?;
        // Specs use `<<: *anchor` to share operation fragments; resolve before walking.
        doc.apply_merge().map_err(|e| yaml_error(source, &e))?;
        Ok(doc)
    }
}

fn json_error(source: &Path, e: &serde_json::Error) -> SpecError {
    syntax_error(source, e.to_string(), Some((e.line(), e.column())))
}

fn yaml_error(source: &Path, e: &serde_yaml_ng::Error) -> SpecError {
    let position = e.location().map(|l| (l.line(), l.column()));
    syntax_error(source, e.to_string(), position)
}

/// Both parsers append the position to their message; it moves to the `file:line:column:`
/// prefix instead of being said twice.
fn syntax_error(source: &Path, message: String, position: Option<(usize, usize)>) -> SpecError {
    let path = source.to_path_buf();
    match position {
        Some((line, column)) if line > 0 => {
            let suffix = format!(" at line {line} column {column}");
            let reason = match message.find(&suffix) {
                Some(i) => format!("{}{}", &message[..i], &message[i + suffix.len()..]),
                None => message,
            };
            SpecError::Syntax {
                path,
                line,
                column,
                reason: one_line(&reason),
            }
        }
        _ => SpecError::Parse {
            path,
            reason: one_line(&message),
        },
    }
}

/// Callers print errors one per line, so a message must not break lines.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_moves_out_of_the_message() {
        let err = parse(Path::new("a.yaml"), "a: b: c\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("a.yaml:1:5: "), "{msg}");
        assert!(!msg.contains("at line 1 column 5"), "{msg}");
    }

    #[test]
    fn unknown_extension_sniffs_json() {
        let err = parse(Path::new("spec"), "{\"a\": }").unwrap_err();
        assert!(
            err.to_string().starts_with("spec:1:7: expected value"),
            "{err}"
        );
        assert!(parse(Path::new("spec"), "a: 1\n").unwrap().is_mapping());
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let doc = parse(Path::new("a.yml"), "x: &x {k: 1}\ny:\n  <<: *x\n").unwrap();
        assert_eq!(doc["y"]["k"].as_u64(), Some(1));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert!(parse(Path::new("a.json"), "\u{feff}{}")
            .unwrap()
            .is_mapping());
    }
}
