//! Built-in route templating (the heuristics): path segments that are identifiers, not names, become
//! placeholders, so `/users/42/orders/7f9c...` and `/users/43/orders/...` are one route.
//!
//! The rules only fire on segments that cannot reasonably be a resource name: numbers,
//! UUIDs, long hex strings, dates, e-mail addresses and long random-looking tokens. Short
//! words (`me`, `v1`, `latest`) are kept.

/// What an identifier-like path segment is replaced by.
pub(crate) fn placeholder(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        return None;
    }
    if segment.bytes().all(|b| b.is_ascii_digit()) {
        return Some("{id}");
    }
    if is_uuid(segment) {
        return Some("{uuid}");
    }
    if is_date(segment) {
        return Some("{date}");
    }
    if is_email(segment) {
        return Some("{email}");
    }
    if segment.len() >= 16 && segment.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some("{hex}");
    }
    // A segment the redactor hashed looked like a credential: one parameter, never one
    // endpoint per secret.
    if is_token(segment) || crate::redact::is_hashed(segment) {
        return Some("{token}");
    }
    None
}

pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `2026-11-27` or `20261127`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let plausible = |y: &[u8], m: &[u8], d: &[u8]| {
        let n = |x: &[u8]| x.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
        (1900..=2200).contains(&n(y)) && (1..=12).contains(&n(m)) && (1..=31).contains(&n(d))
    };
    match b.len() {
        10 if b[4] == b'-' && b[7] == b'-' && digits(0..4) && digits(5..7) && digits(8..10) => {
            plausible(&b[0..4], &b[5..7], &b[8..10])
        }
        _ => false,
    }
}

fn is_email(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// Long base64/base64url-like strings mixing letters and digits (API keys, hashes, opaque ids).
fn is_token(s: &str) -> bool {
    if s.len() < 20 {
        return false;
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'.' | b'~'));
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let letters = s.bytes().filter(u8::is_ascii_alphabetic).count();
    ok && digits >= 2 && letters >= 2
}

/// The route of a request path (no query string): identifier-like segments replaced.
pub fn template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(placeholder(seg).unwrap_or(seg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn identifiers_become_placeholders() {
        let cases = [
            ("/users/42", "/users/{id}"),
            ("/users/42/orders/7", "/users/{id}/orders/{id}"),
            (
                "/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                "/items/{uuid}",
            ),
            ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/{hex}"),
            (
                "/commits/a94a8fe5ccb19ba61c4c0873d391e987982fbbd3/files",
                "/commits/{hex}/files",
            ),
            ("/reports/2026-11-27", "/reports/{date}"),
            (
                "/people/jane.doe@example.com/avatar",
                "/people/{email}/avatar",
            ),
            ("/keys/sk_live_51HxYz2eZvKYlo2C0a1b2c3d4", "/keys/{token}"),
            // What the redactor hashed in the path.
            ("/reset/h:0a1b2c3d/confirm", "/reset/{token}/confirm"),
            ("/notes/h:zz", "/notes/h:zz"),
            (
                "/v1/accounts/123/transactions/456",
                "/v1/accounts/{id}/transactions/{id}",
            ),
            ("/", "/"),
            ("", ""),
        ];
        for (path, want) in cases {
            assert_eq!(template(path), want, "{path}");
        }
    }

    #[test]
    fn names_are_kept() {
        for path in [
            "/users/me",
            "/v1",
            "/v2/health",
            "/api/latest/items",
            "/static/app.js",
            "/a/b",
            "/healthz",
            "/orders/pending",
            "/docs/getting-started",
            "/deadbeef",
            "/files/report-final-version",
            "/2026",
        ] {
            let want = if path == "/2026" { "/{id}" } else { path };
            assert_eq!(template(path), want, "{path}");
        }
    }

    #[test]
    fn not_dates_or_emails_by_accident() {
        assert_eq!(template("/x/2026-13-40"), "/x/2026-13-40");
        assert_eq!(template("/x/@mention"), "/x/@mention");
        assert_eq!(template("/x/user@host"), "/x/user@host");
        assert_eq!(
            template("/x/abcdefghijklmnopqrstuvwxyz"),
            "/x/abcdefghijklmnopqrstuvwxyz"
        );
    }
}
