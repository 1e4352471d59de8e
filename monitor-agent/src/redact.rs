//! Keeps secrets out of what leaves the process: secret-looking query parameter values are
//! replaced by a short keyed hash, so equal values can still be correlated without being
//! recoverable.

use std::hash::{BuildHasher, Hasher};

/// Query parameter names (compared case-insensitively, `-`/`_` ignored) whose values are
/// treated as credentials.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "key",
    "password",
    "passwd",
    "pwd",
    "secret",
    "clientsecret",
    "signature",
    "sig",
    "auth",
    "authorization",
    "session",
    "sessionid",
    "sid",
    "code",
    "jwt",
    "credential",
    "credentials",
    "xamzsignature",
    "xamzcredential",
    "xamzsecuritytoken",
];

/// Hashes secrets with a per-process random key.
#[derive(Clone)]
pub(crate) struct Redactor {
    key: std::collections::hash_map::RandomState,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            key: std::collections::hash_map::RandomState::new(),
        }
    }
}

fn is_secret_name(name: &str) -> bool {
    let norm: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_' && *c != '.')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_PARAMS.contains(&norm.as_str())
        || norm.ends_with("token")
        || norm.ends_with("secret")
        || norm.ends_with("password")
        || norm.ends_with("apikey")
}

impl Redactor {
    /// Short keyed hash of a secret value, e.g. `h:3f9a1c07`.
    pub(crate) fn hash(&self, value: &str) -> String {
        let mut h = self.key.build_hasher();
        h.write(value.as_bytes());
        format!("h:{:08x}", h.finish() as u32)
    }

    /// The request target with secret-looking query values replaced.
    pub(crate) fn target(&self, target: &str) -> String {
        let Some((path, query)) = target.split_once('?') else {
            return target.to_string();
        };
        let mut out = String::with_capacity(target.len());
        out.push_str(path);
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, value)) if is_secret_name(name) && !value.is_empty() => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&self.hash(value));
                }
                _ => out.push_str(pair),
            }
        }
        out
    }
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
    fn plain_targets_are_unchanged() {
        let r = Redactor::default();
        assert_eq!(r.target("/a/b?x=1"), "/a/b?x=1");
        assert_eq!(r.target("/plain"), "/plain");
        assert_eq!(r.target("/t?token="), "/t?token=");
    }
}
