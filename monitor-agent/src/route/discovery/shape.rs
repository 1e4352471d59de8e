//! What one path segment looks like, as evidence (never the whole decision) for whether
//! its position holds a parameter: identifiers (numbers, UUIDs, hex, dates, e-mails,
//! prefixed and base62 ids, encoded or sigil-bearing values), version names (`v2`,
//! `v1.56`, `2.0`), or words that could be either a resource name or a name used as an
//! identifier.

use crate::route::heuristics::is_uuid;

/// A segment's look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The empty segment (`/a//b`, a trailing slash): never a value.
    Empty,
    /// Identifier-like: almost never a literal of an API.
    Id,
    /// A version name: a literal, unless its position takes many values.
    Version,
    /// Letters and separators: a resource name, or a name used as an identifier.
    Word,
}

/// `name.ext` → (`name`, `.ext`): a short alphabetic extension after the last dot, as in
/// `17.json`, `report.pdf`; `None` when there is none.
pub fn split_ext(seg: &str) -> Option<(&str, &str)> {
    let dot = seg.rfind('.')?;
    let (core, ext) = (&seg[..dot], &seg[dot + 1..]);
    let ok = !core.is_empty()
        && (1..=5).contains(&ext.len())
        && ext.as_bytes()[0].is_ascii_alphabetic()
        && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some((core, &seg[dot..]))
}

/// The look of one segment (as sent: percent-encoding is not decoded).
pub fn shape(seg: &str) -> Shape {
    if seg.is_empty() {
        return Shape::Empty;
    }
    if is_version(seg) {
        return Shape::Version;
    }
    // Three or more dotted labels: host names, reverse-DNS and event type names
    // (`hs.example.net`, `m.room.message`), values rather than an API's own words.
    if is_dotted_name(seg.as_bytes()) {
        return Shape::Id;
    }
    if let Some((core, _)) = split_ext(seg) {
        // A file-like segment looks like its name: `17.json` is an id, `index.html` a word.
        return match bare_shape(core) {
            Shape::Version => Shape::Id,
            s => s,
        };
    }
    bare_shape(seg)
}

fn bare_shape(seg: &str) -> Shape {
    if seg.is_empty() {
        return Shape::Empty;
    }
    if is_version(seg) {
        return Shape::Version;
    }
    let b = seg.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let id = digits == b.len()
        || is_uuid(seg)
        || is_date(b)
        // Encoded bytes and sigils: paths, URLs, image references, `@user:server`, `a=b`.
        || b.iter().any(|c| b"%:@!$+,;=~".contains(c))
        || (digits > 0 && b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit))
        // Letters and digits mixed, as ids are (`S2-6262224667`, `00ub0oNGTSWT`); a word
        // with one digit (`ipv6`, `s3`) stays a word.
        || (digits > 0 && letters > 0 && (digits >= 2 || b.len() >= 8))
        || (letters >= 8 && random_case(seg));
    if id {
        Shape::Id
    } else {
        Shape::Word
    }
}

fn is_dotted_name(b: &[u8]) -> bool {
    let mut labels = 0;
    for label in b.split(|c| *c == b'.') {
        if label.is_empty()
            || !label
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return false;
        }
        labels += 1;
    }
    labels >= 3
}

/// `v2`, `v1.56`, `v2beta1`, `2.0`, `1.2.3`: how APIs name their versions.
fn is_version(seg: &str) -> bool {
    let b = seg.as_bytes();
    let dotted = |s: &[u8]| {
        !s.is_empty()
            && s.split(|c| *c == b'.' || *c == b'_')
                .all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
    };
    if let Some(rest) = b.strip_prefix(b"v").or_else(|| b.strip_prefix(b"V")) {
        // `v2`, `v1.56`, then an optional `alpha1` / `beta` tail.
        let num_end = rest
            .iter()
            .position(u8::is_ascii_alphabetic)
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let tail_ok = tail.iter().all(u8::is_ascii_alphanumeric)
            && tail.first().is_none_or(u8::is_ascii_alphabetic)
            && tail.len() <= 8;
        return !num.is_empty() && num[0].is_ascii_digit() && dotted(num) && tail_ok;
    }
    // `2.0`, `1.2.3`: digits with one or two dots.
    let dots = b.split(|c| *c == b'.').count() - 1;
    (1..=2).contains(&dots) && dotted(b) && b.len() <= 12
}

/// `2026-11-27`, optionally followed by a time.
fn is_date(b: &[u8]) -> bool {
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b.len() == 10 || b[10] == b'T' || b[10] == b' ')
}

/// Letters in random case, as base62 ids without digits have (`NffrFeUfNVHib`), unlike
/// camelCase words (`removeCustomFieldSetting`): a run without a vowel, or several
/// one-letter runs, or ten or more capitals.
fn random_case(seg: &str) -> bool {
    let b = seg.as_bytes();
    if !b.iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    let upper = b.iter().filter(|c| c.is_ascii_uppercase()).count();
    if upper == 0 || (upper == b.len() && b.len() < 10) {
        return false;
    }
    if upper == b.len() {
        return true;
    }
    let (mut vowelless, mut singles) = (0, 0);
    for run in case_runs(b) {
        let vowel = run.iter().any(|c| b"aeiouyAEIOUY".contains(c));
        vowelless += usize::from(run.len() >= 3 && !vowel);
        singles += usize::from(run.len() == 1);
    }
    vowelless >= 1 || singles >= 2
}

/// Splits `fooBARBaz` into `foo`, `BAR`, `Baz`: a capital starts a run unless it continues
/// a run of capitals that is not followed by a lower-case letter.
fn case_runs(b: &[u8]) -> Vec<&[u8]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..b.len() {
        let (prev, cur) = (b[i - 1], b[i]);
        let next_lower = b.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        let boundary = (prev.is_ascii_lowercase() && cur.is_ascii_uppercase())
            || (prev.is_ascii_uppercase() && cur.is_ascii_uppercase() && next_lower);
        if boundary {
            runs.push(&b[start..i]);
            start = i;
        }
    }
    runs.push(&b[start..]);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        for s in [
            "42",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "9f86d081884c",
            "2026-11-27",
            "jane@example.com",
            "S2-6262224667",
            "00ub0oNGTSWTBKOLGLNR",
            "L88917AVBK2S5",
            "NffrFeUfNVHib",
            "https%3A%2F%2Fgit.example.com",
            "!room:matrix.org",
            "nginx:1.25-alpine",
            "17.json",
            "ZRWHAKLNCESBHTAQ",
            "m.room.message",
            "hs.example.net",
        ] {
            assert_eq!(shape(s), Shape::Id, "{s}");
        }
        for s in ["v1", "v1.56", "2.0", "v2beta1", "V3", "1.2.3"] {
            assert_eq!(shape(s), Shape::Version, "{s}");
        }
        for s in [
            "users",
            "removeCustomFieldSetting",
            "ipv6",
            "s3",
            "json",
            "index.html",
            "api-gateway-eu",
            "nostalgic_hopper",
            "README",
            "_ping",
            "deadbeef",
        ] {
            assert_eq!(shape(s), Shape::Word, "{s}");
        }
        assert_eq!(shape(""), Shape::Empty);
    }

    #[test]
    fn extensions() {
        assert_eq!(split_ext("17.json"), Some(("17", ".json")));
        assert_eq!(split_ext("a.tar.gz"), Some(("a.tar", ".gz")));
        assert_eq!(split_ext(".json"), None);
        assert_eq!(split_ext("v1.2"), None);
        assert_eq!(split_ext("x.toolong"), None);
    }
}
