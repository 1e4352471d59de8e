//! What looks like a credential: by the name it travels under (compared the way servers
//! decode names: percent-decoded, inside brackets, case and separators ignored), and by its
//! own shape, whatever the name (JWTs, cloud and SaaS key formats, long random strings).
//! Erring towards "secret" costs a hashed value; the other error leaks a credential into
//! records, metrics and the database.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Parameter names (after normalising) whose values are credentials.
const SECRET_NAMES: &[&str] = &[
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "key",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "passcode",
    "secret",
    "clientsecret",
    "clientassertion",
    "assertion",
    "codeverifier",
    "code",
    "otp",
    "totp",
    "pin",
    "privatekey",
    "signature",
    "sig",
    "auth",
    "authorization",
    "session",
    "sessionid",
    "sid",
    "jwt",
    "credential",
    "credentials",
    "samlresponse",
    "samlrequest",
    "ticket",
    "xamzsignature",
    "xamzcredential",
    "xamzsecuritytoken",
    "xgoogsignature",
    "xgoogcredential",
    "awsaccesskeyid",
    "accountkey",
    "sharedaccesssignature",
];

/// Name endings that make any name a credential's (`github_token`, `db_password`...).
const SECRET_SUFFIXES: &[&str] = &[
    "token",
    "secret",
    "password",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "signature",
    "credential",
];

/// Key formats that say what they are whatever they are called.
const KEY_PREFIXES: &[&str] = &[
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "whsec_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "ya29.",
    "-----BEGIN",
];

/// Longest value examined; longer ones are judged by their first this many bytes.
const MAX_EXAMINED: usize = 4096;

/// As a server would read it; borrowed when nothing is encoded (every path segment of
/// every call is examined, and most are plain words).
fn decoded(s: &str) -> Cow<'_, str> {
    let s = &s[..floor_char_boundary(s, MAX_EXAMINED)];
    if s.contains('+') {
        Cow::Owned(
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned(),
        )
    } else {
        percent_decode_str(s).decode_utf8_lossy()
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Whether a parameter called `name` carries a credential: `%74oken`, `user[password]`,
/// `X-Amz-Signature`, `client_secret` all do.
pub fn secret_name(name: &str) -> bool {
    decoded(name)
        .split(['[', ']', '.'])
        .filter(|part| !part.is_empty())
        .any(|part| {
            let norm: String = part
                .chars()
                .filter(|c| !matches!(c, '-' | '_' | ' '))
                .map(|c| c.to_ascii_lowercase())
                .collect();
            SECRET_NAMES.contains(&norm.as_str())
                || SECRET_SUFFIXES.iter().any(|s| norm.ends_with(s))
        })
}

/// Whether a value has the shape of a credential: a JWT, a key with a known prefix, an
/// AWS access key id, a Google API key.
pub fn credential_value(value: &str) -> bool {
    let v = decoded(value);
    let v = v.trim();
    KEY_PREFIXES.iter().any(|p| v.starts_with(p))
        || is_jwt(v)
        || is_aws_key_id(v)
        || is_google_key(v)
}

fn is_jwt(v: &str) -> bool {
    let mut parts = v.split('.');
    let (Some(h), Some(p), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    parts.next().is_none() && h.starts_with("eyJ") && p.len() >= 4 && base64url(h) && base64url(p)
}

fn base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
}

fn is_aws_key_id(v: &str) -> bool {
    v.len() == 20
        && (v.starts_with("AKIA") || v.starts_with("ASIA"))
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn is_google_key(v: &str) -> bool {
    v.len() == 39 && v.starts_with("AIza") && base64url(v)
}

/// Whether a string looks randomly generated (a reset link's token, a signed URL's
/// signature): at least 24 characters of a token alphabet, letters and digits mixed, not a
/// UUID, close to the alphabet's entropy, and switching often between lower case, upper
/// case and digits (separators aside), which words and slugs do not.
pub fn high_entropy(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 24 || b.len() > MAX_EXAMINED || is_uuid(b) {
        return false;
    }
    if !b.iter().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'+' | b'/' | b'~' | b'.')
    }) {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if digits < 2 || letters < 2 {
        return false;
    }
    let class = |c: u8| match c {
        b'a'..=b'z' => 0u8,
        b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let body: Vec<u8> = b.iter().map(|&c| class(c)).filter(|&k| k != 3).collect();
    let switches = body.windows(2).filter(|w| w[0] != w[1]).count();
    if switches * 10 < body.len() * 3 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &c in b {
        counts[usize::from(c)] += 1;
    }
    let n = b.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum();
    bits >= 3.5
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_judged_as_servers_decode_them() {
        for n in [
            "token",
            "%74oken",
            "user[password]",
            "user%5Bpassword%5D",
            "X-Amz-Signature",
            "x-goog-credential",
            "client_secret",
            "client_assertion",
            "code_verifier",
            "otp",
            "PIN",
            "private_key",
            "github_token",
            "db.password",
            "AWSAccessKeyId",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in [
            "page",
            "limit",
            "user",
            "q",
            "sort",
            "monkey",
            "idempotency_key_id",
            "",
        ] {
            assert!(!secret_name(n), "{n}");
        }
    }

    #[test]
    fn values_that_say_what_they_are() {
        for v in [
            "sk_live_51H8abcdEFGHijklMNOP",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyA-abcdefghijklmnopqrstuvwxyz12345",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.",
            "xoxb-1234-5678-abcdef",
        ] {
            assert!(credential_value(v), "{v}");
        }
        for v in ["42", "hello", "AKIA", "eyJ.x", "true", "2026-12-02"] {
            assert!(!credential_value(v), "{v}");
        }
    }

    #[test]
    fn random_strings_are_told_from_names_and_ids() {
        assert!(high_entropy("Q9vYb2Xq7LmN4pRs8TuWz1Ac"));
        assert!(high_entropy("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"));
        assert!(!high_entropy("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!high_entropy("nginx-7d9c8b5f6-x2k4p"));
        assert!(!high_entropy("aaaaaaaaaaaaaaaaaaaaaaaa1111"));
        assert!(!high_entropy("my-first-blog-post-title-2024"));
    }
}
