//! Keeps secrets out of what leaves the process: credentials in a request target (query
//! values under a credential's name or of a credential's shape, bare query words and path
//! segments that look random) are replaced by a short keyed hash, so equal values can still
//! be correlated without being recoverable. What "looks like" means is in `looks`.

mod looks;

use std::{
    borrow::Cow,
    hash::{BuildHasher, Hasher},
};

pub use looks::{credential_value, high_entropy, secret_name};

/// The prefix of a hashed value, which route templating treats as a parameter.
pub const HASHED: &str = "h:";

/// Hashes secrets with a per-process random key.
#[derive(Clone)]
pub struct Redactor {
    key: std::collections::hash_map::RandomState,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            key: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl Redactor {
    /// Short keyed hash of a secret value, e.g. `h:3f9a1c07`.
    pub fn hash(&self, value: &str) -> String {
        let mut h = self.key.build_hasher();
        h.write(value.as_bytes());
        format!("{HASHED}{:08x}", h.finish() as u32)
    }

    /// The request target with what looks like a credential replaced: path segments that
    /// look random or like a key, query values under a credential's name or of a
    /// credential's shape, bare query words that look like either. Borrowed when nothing
    /// was replaced, as for most calls.
    pub fn target<'a>(&self, target: &'a str) -> Cow<'a, str> {
        let mut out = Rewrite::of(target);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut at = 0;
        for seg in path.split('/') {
            if secret_looking(seg) {
                out.replace(at, seg, &self.hash(seg));
            }
            at += seg.len() + 1;
        }
        let Some(query) = query else {
            return out.finish();
        };
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((name, value))
                    if !value.is_empty()
                        && !is_hashed(value)
                        && (secret_name(name) || credential_value(value)) =>
                {
                    out.replace(at + name.len() + 1, value, &self.hash(value));
                }
                None if secret_looking(pair) => out.replace(at, pair, &self.hash(pair)),
                _ => {}
            }
            at += pair.len() + 1;
        }
        out.finish()
    }
}

/// A string copied only from its first replaced piece on.
struct Rewrite<'a> {
    source: &'a str,
    out: Option<String>,
    /// Bytes of `source` already in `out`.
    copied: usize,
}

impl<'a> Rewrite<'a> {
    fn of(source: &'a str) -> Self {
        Rewrite {
            source,
            out: None,
            copied: 0,
        }
    }

    /// Puts `with` in place of `piece`, which starts at byte `at` of the source.
    fn replace(&mut self, at: usize, piece: &str, with: &str) {
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.source.len()));
        out.push_str(&self.source[self.copied..at]);
        out.push_str(with);
        self.copied = at + piece.len();
    }

    fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.source),
            Some(mut out) => {
                out.push_str(&self.source[self.copied..]);
                Cow::Owned(out)
            }
        }
    }
}

/// Whether `s` is what [`Redactor::hash`] makes: hashing it again would hide nothing.
pub fn is_hashed(s: &str) -> bool {
    s.strip_prefix(HASHED)
        .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A value that is a credential by its shape alone, or random enough to be one.
pub fn secret_looking(s: &str) -> bool {
    credential_value(s) || high_entropy(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target is copied only when something in it is replaced, and then exactly the
    /// replaced pieces differ.
    #[test]
    fn plain_targets_are_borrowed_and_rewrites_keep_the_rest() {
        let r = Redactor::default();
        for plain in ["/", "/a/b?x=1&y", "/api/items/42?page=2&sort=", "", "?"] {
            assert!(matches!(r.target(plain), Cow::Borrowed(_)), "{plain}");
        }
        let out = r.target("/a?token=T1&x=1&token=T2");
        let h = |v: &str| r.hash(v);
        assert_eq!(out, format!("/a?token={}&x=1&token={}", h("T1"), h("T2")));
    }

    #[test]
    fn secret_query_values_are_hashed() {
        let r = Redactor::default();
        let out = r.target("/a/b?x=1&access_token=SECRETVALUE&API-Key=k2&page=2");
        assert!(!out.contains("SECRETVALUE"), "{out}");
        assert!(!out.contains("k2"), "{out}");
        assert!(out.starts_with("/a/b?x=1&access_token=h:"), "{out}");
        assert!(out.ends_with("&page=2"), "{out}");
        assert_eq!(r.hash("v"), r.hash("v"));
    }

    #[test]
    fn credentials_are_hashed_wherever_they_are() {
        let r = Redactor::default();
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let reset = "Q9vYb2Xq7LmN4pRs8TuWz1Ac";
        for (target, secret) in [
            ("/a?%74oken=S3CRET1".to_string(), "S3CRET1"),
            ("/a?user[password]=S3CRET2".to_string(), "S3CRET2"),
            ("/a?X-Amz-Signature=S3CRET3&x=1".to_string(), "S3CRET3"),
            ("/a?client_secret=S3CRET4".to_string(), "S3CRET4"),
            (format!("/a?next={jwt}"), jwt),
            (
                "/a?k=sk_live_51H8abcdEFGH".to_string(),
                "sk_live_51H8abcdEFGH",
            ),
            (format!("/a?{reset}"), reset),
            (format!("/reset/{reset}/confirm"), reset),
            (format!("/v1/{jwt}"), jwt),
        ] {
            let out = r.target(&target);
            assert!(!out.contains(secret), "{target} -> {out}");
            assert!(out.contains(HASHED), "{target} -> {out}");
        }
        let out = r
            .target(&format!("/reset/{reset}/confirm?page=2"))
            .into_owned();
        assert!(
            out.starts_with("/reset/h:") && out.ends_with("/confirm?page=2"),
            "{out}"
        );
    }

    #[test]
    fn plain_targets_are_unchanged() {
        let r = Redactor::default();
        assert_eq!(r.target("/a/b?x=1"), "/a/b?x=1");
        assert_eq!(r.target("/plain"), "/plain");
        assert_eq!(r.target("/t?token="), "/t?token=");
        for t in [
            "/users/123e4567-e89b-12d3-a456-426614174000",
            "/pods/nginx-7d9c8b5f6-x2k4p",
            "/blog/my-first-blog-post-title-2024?draft",
        ] {
            assert_eq!(r.target(t), t);
        }
    }
}
