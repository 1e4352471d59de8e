//! Declared API specs: what each service says it serves, so observed traffic can be told
//! apart into declared, undeclared ("shadow") and deprecated calls.
//!
//! OpenAPI 3.0, OpenAPI 3.1 and Swagger 2.0 documents, JSON or YAML, are read as untyped
//! trees rather than through a typed model: only paths, methods, base paths and two
//! operation annotations matter here, and an untyped walk accepts all three versions (and
//! documents that are invalid elsewhere) without a large dependency.
//!
//! Limitation: only references inside the same document are followed (`$ref: '#/...'` on a
//! path item); a path item that refers to another file declares nothing.

mod load;
mod openapi;
pub mod registry;
mod servers;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use crate::route::{Input, RoutePattern, Trie};
use std::path::{Path, PathBuf};

/// One declared operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeclaredOp {
    /// Upper-case, e.g. `GET`.
    pub method: String,
    /// The full path template including the server base path, e.g. `/api/v1/users/{userId}`,
    /// because observed requests carry the base path too.
    pub route: String,
    /// Operation-level `deprecated: true`.
    pub deprecated: bool,
    pub operation_id: Option<String>,
}

/// All operations declared for one service, from one file or every spec file in a directory.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub service: String,
    pub sources: Vec<PathBuf>,
    /// Each (method, route) once; the first declaration wins, in file-name then document order.
    pub ops: Vec<DeclaredOp>,
    /// Built from `ops` at load time; editing `ops` afterwards does not re-index.
    index: MethodIndex,
}

/// Why a spec could not be loaded. Each message is one line and starts with the file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The JSON or YAML parser rejected the text at a known position (1-based).
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    /// The parser rejected the text without saying where.
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    /// Well-formed JSON/YAML that is not a usable spec; `location` is a JSON pointer.
    #[error("{}: {reason} (at {location})", path.display())]
    Invalid {
        path: PathBuf,
        location: String,
        reason: String,
    },
    #[error("{}: no spec file (*.json, *.yaml, *.yml) in this directory", path.display())]
    NoSpecFiles { path: PathBuf },
}

impl ServiceSpec {
    /// `path` is a file or a directory (every *.json, *.yaml, *.yml directly inside it, sorted
    /// by name; a directory with no spec file is an error).
    pub fn load(service: &str, path: &Path) -> Result<ServiceSpec, SpecError> {
        let files = load::spec_files(path)?;
        let mut ops = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| SpecError::Io {
                path: file.clone(),
                source,
            })?;
            ops.extend(operations(file, &text)?);
        }
        Ok(Self::new(service, files, ops))
    }

    /// Parse from text; `source` names the origin in errors and picks JSON or YAML by its
    /// extension.
    pub fn from_str(service: &str, source: &Path, text: &str) -> Result<ServiceSpec, SpecError> {
        let ops = operations(source, text)?;
        Ok(Self::new(service, vec![source.to_path_buf()], ops))
    }

    /// The declared operation matching a request path (no query string) or an observed route
    /// template, for this method. The most specific template wins: at the first segment where
    /// candidates differ, a literal beats `{id}.json`-style beats a bare `{param}`.
    ///
    /// A `{x}` segment in `path` stands for unknown values and matches only a declared
    /// parameter: an observed route and a request path are looked up alike.
    pub fn match_op(&self, method: &str, path: &str) -> Option<&DeclaredOp> {
        self.index.find(method, path).and_then(|i| self.ops.get(i))
    }

    /// The most specific operation of any method declared for `path`, methods in
    /// declaration order.
    pub fn match_any_method(&self, path: &str) -> Option<&DeclaredOp> {
        self.index
            .methods
            .iter()
            .find_map(|(_, trie)| trie.find(path, Input::Route))
            .and_then(|i| self.ops.get(i))
    }

    fn new(service: &str, sources: Vec<PathBuf>, mut ops: Vec<DeclaredOp>) -> ServiceSpec {
        let mut seen = HashSet::new();
        ops.retain(|op| seen.insert((op.method.clone(), op.route.clone())));
        let index = MethodIndex::build(&ops);
        ServiceSpec {
            service: service.to_owned(),
            sources,
            ops,
            index,
        }
    }
}

/// One template trie per method. Few entries (one per HTTP method), so a scan beats hashing
/// and needs no upper-casing.
#[derive(Clone, Debug, Default)]
struct MethodIndex {
    methods: Vec<(String, Trie)>,
}

impl MethodIndex {
    fn build(ops: &[DeclaredOp]) -> MethodIndex {
        let mut index = MethodIndex::default();
        for (i, op) in ops.iter().enumerate() {
            let pos = if let Some(pos) = index
                .methods
                .iter()
                .position(|(m, _)| m.eq_ignore_ascii_case(&op.method))
            {
                pos
            } else {
                let method = op.method.to_ascii_uppercase();
                index.methods.push((method, Trie::default()));
                index.methods.len() - 1
            };
            index.methods[pos]
                .1
                .insert(&RoutePattern::declared(&op.route), i);
        }
        index
    }

    fn find(&self, method: &str, path: &str) -> Option<usize> {
        let (_, trie) = self
            .methods
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(method))?;
        trie.find(path, Input::Route)
    }
}

fn operations(source: &Path, text: &str) -> Result<Vec<DeclaredOp>, SpecError> {
    let doc = load::parse(source, text)?;
    openapi::operations(source, &doc)
}
