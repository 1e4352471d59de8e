//! Keeps secrets out of what leaves the process: credentials in a request target (query
//! values under a credential's name or of a credential's shape, bare query words and path
//! segments that look random) are replaced by a short keyed hash, so equal values can still
//! be correlated without being recoverable. What "looks like" means is in `looks`.

mod looks;

use std::hash::{BuildHasher, Hasher};

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
    /// credential's shape, bare query words that look like either.
    pub fn target(&self, target: &str) -> String {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut out = String::with_capacity(target.len());
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if secret_looking(seg) {
                out.push_str(&self.hash(seg));
            } else {
                out.push_str(seg);
            }
        }
        let Some(query) = query else {
            return out;
        };
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, value))
                    if !value.is_empty()
                        && !is_hashed(value)
                        && (secret_name(name) || credential_value(value)) =>
                {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&self.hash(value));
                }
                None if secret_looking(pair) => out.push_str(&self.hash(pair)),
                _ => out.push_str(pair),
            }
        }
        out
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
        let out = r.target(&format!("/reset/{reset}/confirm?page=2"));
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
