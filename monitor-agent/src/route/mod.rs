//! Routes: the one place that knows what a path template is and which route a call is
//! filed under. Spec matching, the inventory, policy evaluation, policy suggestion and the
//! OpenAPI export all use it, so the route a call is filed under and the route a policy
//! judges are decided by the same rules.
//!
//! - [`path`]: cutting a target into segments (query, fragment, trailing slash, empty
//!   segments, percent-encoding);
//! - [`segment`]: one segment's grammar: literal, `{name}`, `*`, and mixed segments like
//!   `{sid}.json`;
//! - [`pattern`]: whole templates (`**` included), matched against paths and routes;
//! - [`trie`]: the most specific of many templates, in one walk;
//! - [`heuristics`]: built-in templating of identifier-like segments;
//! - [`discovery`]: each service's routes found from all the paths it served;
//! - [`router`]: the decision itself, once per call.
//!
//! Every algorithm here is iterative and linear in the path's length: a workload chooses
//! the paths, so none may recurse on their depth or backtrack on their segments.

pub mod discovery;
pub mod heuristics;
pub mod path;
pub mod pattern;
pub mod router;
pub mod segment;
#[cfg(test)]
mod tests;
pub mod trie;

pub use heuristics::template;
pub use path::{path_of, segment_count, segments};
pub use pattern::{Input, PatternError, RoutePattern, RouteTemplate};
pub use router::{RouteKind, Routed, Router};
pub use segment::{is_placeholder, Grammar, Part, Seg, PARAM};
pub use trie::Trie;
