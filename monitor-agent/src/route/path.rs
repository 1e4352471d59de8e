//! How a request target is cut into the segments every route decision works on.
//!
//! One definition, because the route a call is filed under and the route a policy judges
//! must see the same segments: the query string and fragment never count, one trailing
//! slash is folded (`/users/` matches what `/users` matches), inner empty segments are kept
//! (`/a//b` has three segments, the middle one empty) and percent-encoding is compared as
//! sent, never decoded, so `%2F` cannot create a segment boundary that the server did not see.

/// The path of a request target: everything before the query string or fragment.
pub fn path_of(target: &str) -> &str {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    &target[..end]
}

/// The segments of a path (or route) for matching: after the leading slash, with one
/// trailing slash folded and the query ignored. The root (`/`, or empty) has none.
pub fn segments(path: &str) -> impl Iterator<Item = &str> + Clone {
    body(path_of(path))
        .into_iter()
        .flat_map(|body| body.split('/'))
}

/// What [`segments`] walks, for a walk that keeps its place as the unsplit rest: `None`
/// for a path with no segments.
pub(super) fn segment_body(path: &str) -> Option<&str> {
    body(path_of(path))
}

/// The first segment of a [`segment_body`] and the rest after it, if any.
pub(super) fn split_first(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((seg, next)) => (seg, Some(next)),
        None => (rest, None),
    }
}

/// How many segments [`segments`] yields, without collecting them.
pub fn segment_count(path: &str) -> usize {
    body(path_of(path)).map_or(0, |b| b.bytes().filter(|&c| c == b'/').count() + 1)
}

/// The path without its leading slash and one trailing slash; `None` for the root.
fn body(path: &str) -> Option<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    (!p.is_empty()).then_some(p)
}
