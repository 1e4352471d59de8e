//! Credential classification from request headers.
//!
//! The monitor needs to know *how* an API is called (anonymously, with a key, with a
//! JWT issued by whom, for which principal) to build inventories and policies, but it
//! must never become a place where secrets accumulate: captured traffic is exported,
//! logged and stored. So everything here reduces a header to a small, non-secret
//! [`Auth`] summary at the moment the header is seen, and the raw value is never
//! copied anywhere.
//!
//! Work is bounded because header values are attacker-controlled: oversized
//! `Authorization` values are not parsed at all, and JWT segments are only decoded up
//! to a fixed size.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::{Map, Value};

/// Header names that carry API keys, lower-case.
///
/// Kept as an explicit list rather than a pattern (e.g. "*-key") so that headers like
/// `x-idempotency-key` or `sec-websocket-key` are never mistaken for credentials.
pub const API_KEY_HEADERS: [&str; 10] = [
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-auth-token",
    "x-access-token",
    "x-api-token",
    "x-functions-key",
    "ocp-apim-subscription-key",
    "x-goog-api-key",
];

/// `Authorization` values beyond this are not parsed: no legitimate credential is this
/// large, and parsing it would let a client make the monitor do unbounded work.
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;
/// Decoded size limit for each JWT segment we look into (header and payload).
const MAX_JWT_DECODED: usize = 8 * 1024;
/// Claims are principal identifiers, not documents; longer ones are truncated so a
/// hostile token cannot inflate every record that carries it.
pub const MAX_CLAIM_CHARS: usize = 128;
const MAX_USER_CHARS: usize = 64;
const MAX_SCHEME_CHARS: usize = 32;

/// RFC 7617 says standard base64, but clients disagree on padding.
const BASIC_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// JWTs are unpadded base64url (RFC 7515 §2), but tolerating padding costs nothing.
const JWT_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    #[default]
    None,
    Basic,
    Bearer,
    Jwt,
    ApiKey,
    Other,
}

/// What credential a request carried; never the credential itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Auth {
    pub kind: AuthKind,
    /// JWT `iss` claim (bounded to 128 chars, control chars stripped), when kind is Jwt
    /// and the claim is a string.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    /// JWT `sub` claim (same bounds) — callers' principal, used later by policy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    /// For Basic: the user name (not the password). For ApiKey: the lower-cased header
    /// name that carried it (e.g. "x-api-key"). For Other: the lower-cased
    /// Authorization scheme (e.g. "digest", "negotiate", "aws4-hmac-sha256"), bounded
    /// to 32 chars.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// JWT `aud` (a string or a list), at most [`MAX_LIST`] values, for audience policies.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub audiences: Vec<String>,
    /// JWT `scope` (space-separated) or `scp` (string or list), at most [`MAX_LIST`] values.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scopes: Vec<String>,
    /// JWT `exp`, seconds since the Unix epoch, so expired tokens can be flagged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_at: Option<i64>,
}

/// Claims that are lists are cut here: enough for any real token, bounded for hostile ones.
pub const MAX_LIST: usize = 32;

impl Auth {
    fn of(kind: AuthKind) -> Self {
        Auth {
            kind,
            ..Auth::default()
        }
    }

    fn with_detail(kind: AuthKind, detail: Option<String>) -> Self {
        Auth {
            kind,
            detail,
            ..Auth::default()
        }
    }

    /// Short label for tables and metrics: "none", "basic", "bearer", "jwt", "api_key",
    /// "other". Static so metric label sets stay bounded.
    pub fn label(&self) -> &'static str {
        match self.kind {
            AuthKind::None => "none",
            AuthKind::Basic => "basic",
            AuthKind::Bearer => "bearer",
            AuthKind::Jwt => "jwt",
            AuthKind::ApiKey => "api_key",
            AuthKind::Other => "other",
        }
    }
}

/// Accumulates the credential evidence of one request while its headers are iterated
/// once (the HTTP/1 parser calls `observe` for every header; HTTP/2 will do the same
/// with decoded headers).
///
/// Each header is classified as soon as it is observed, so the sniffer only ever holds
/// the non-secret summary, never a header value.
#[derive(Debug, Default)]
pub struct AuthSniffer {
    /// First non-empty `Authorization` header; later ones are ignored because servers
    /// disagree on which of several wins and the first is the common choice.
    authorization: Option<Auth>,
    /// Name of the first API-key header with a non-empty value.
    api_key_header: Option<&'static str>,
}

impl AuthSniffer {
    pub fn observe(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"authorization") {
            if self.authorization.is_none() && !trim(value).is_empty() {
                self.authorization = Some(classify_authorization(value));
            }
        } else if self.api_key_header.is_none() && !trim(value).is_empty() {
            // `Proxy-Authorization` falls through to here and matches nothing: it
            // authenticates the client to a proxy, not to the API being monitored.
            self.api_key_header = api_key_header(name);
        }
    }

    /// `Authorization` wins over API-key headers: when both are present the key is
    /// usually a gateway subscription key and the Authorization header names the
    /// actual caller.
    pub fn finish(self) -> Auth {
        if let Some(auth) = self.authorization {
            return auth;
        }
        match self.api_key_header {
            Some(header) => Auth::with_detail(AuthKind::ApiKey, Some(header.to_owned())),
            None => Auth::default(),
        }
    }
}

/// Header names that carry API keys (compared case-insensitively).
pub fn is_api_key_header(name: &[u8]) -> bool {
    api_key_header(name).is_some()
}

/// Returns the canonical spelling so the stored detail never echoes client bytes.
fn api_key_header(name: &[u8]) -> Option<&'static str> {
    API_KEY_HEADERS
        .iter()
        .copied()
        .find(|known| name.eq_ignore_ascii_case(known.as_bytes()))
}

fn classify_authorization(value: &[u8]) -> Auth {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Auth::with_detail(AuthKind::Other, Some("oversized".to_owned()));
    }
    let value = trim(value);
    let (scheme, credentials) = match value.iter().position(|b| is_ws(*b)) {
        Some(i) => (&value[..i], trim(&value[i..])),
        None => (value, &[][..]),
    };

    if scheme.eq_ignore_ascii_case(b"basic") {
        return Auth::with_detail(AuthKind::Basic, basic_user(credentials));
    }
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return jwt_claims(credentials).unwrap_or_else(|| Auth::of(AuthKind::Bearer));
    }
    if credentials.is_empty() {
        // A lone word is not an auth scheme (every scheme carries a token68 or
        // auth-params); it is a raw credential some APIs accept without a scheme.
        // Reporting it as a scheme would leak the secret into `detail`.
        return jwt_claims(scheme).unwrap_or_else(|| {
            Auth::with_detail(AuthKind::ApiKey, Some("authorization".to_owned()))
        });
    }
    // Only an RFC 9110 token can be a scheme; anything else might be part of a secret.
    let detail = (!scheme.is_empty() && scheme.iter().all(|b| is_tchar(*b)))
        .then(|| bounded_text(&scheme.to_ascii_lowercase(), MAX_SCHEME_CHARS))
        .flatten();
    Auth::with_detail(AuthKind::Other, detail)
}

/// The user name of `Basic` credentials. Credentials without a ':' are malformed and
/// yield `None` rather than the whole decoded value, which could be a bare secret.
fn basic_user(credentials: &[u8]) -> Option<String> {
    let decoded = BASIC_ENGINE.decode(credentials).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = bounded_text(&decoded[..colon], MAX_USER_CHARS)?;
    // Some APIs take the key as the user name (`sk_live_...:`): that is the secret itself.
    (!crate::redact::secret_looking(&user)).then_some(user)
}

/// `Some(Jwt)` if `token` has the shape of a JWS compact serialization whose header is
/// a JOSE header (has `alg`) and whose payload is a JSON object. Opaque tokens that
/// merely contain two dots are rejected so they stay `Bearer`.
fn jwt_claims(token: &[u8]) -> Option<Auth> {
    let mut segments = token.split(|b| *b == b'.');
    let (header, payload, signature) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    // The signature is never decoded, only checked for alphabet; it may be empty for
    // unsecured (`alg: none`) tokens.
    if !signature.iter().all(|b| is_base64url(*b)) {
        return None;
    }

    let header = decode_json_object(header)?;
    if !header.contains_key("alg") {
        return None;
    }
    let payload = decode_json_object(payload)?;

    let scopes = match payload.get("scope") {
        Some(Value::String(s)) => list_claim(&Value::Array(
            s.split_whitespace()
                .map(|x| Value::String(x.into()))
                .collect(),
        )),
        _ => payload.get("scp").map(list_claim).unwrap_or_default(),
    };
    Some(Auth {
        kind: AuthKind::Jwt,
        issuer: string_claim(&payload, "iss"),
        subject: string_claim(&payload, "sub"),
        detail: None,
        audiences: payload.get("aud").map(list_claim).unwrap_or_default(),
        scopes,
        expires_at: payload.get("exp").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        }),
    })
}

/// A claim that may be one string or a list of strings (`aud`, `scp`).
fn list_claim(v: &Value) -> Vec<String> {
    let one = |x: &Value| match x {
        Value::String(s) => bounded_text(s.as_bytes(), MAX_CLAIM_CHARS),
        _ => None,
    };
    match v {
        Value::Array(items) => items.iter().filter_map(one).take(MAX_LIST).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// Decodes one base64url JWT segment into a JSON object, refusing segments whose
/// decoded form would exceed [`MAX_JWT_DECODED`] before doing any decoding work.
fn decode_json_object(segment: &[u8]) -> Option<Map<String, Value>> {
    if segment.len() > (MAX_JWT_DECODED * 4).div_ceil(3) {
        return None;
    }
    let bytes = JWT_ENGINE.decode(segment).ok()?;
    // Deserializing into a Map (not a derived struct) rejects arrays and scalars, and
    // serde_json's recursion limit bounds nesting.
    serde_json::from_slice::<Map<String, Value>>(&bytes).ok()
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => bounded_text(s.as_bytes(), MAX_CLAIM_CHARS),
        _ => None,
    }
}

/// Makes client-supplied text safe to put in logs and tables: lossy UTF-8, control
/// characters removed (no terminal escapes or forged log lines), bounded length.
/// Empty results become `None` so "absent" has one representation.
fn bounded_text(bytes: &[u8], max_chars: usize) -> Option<String> {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    (!text.is_empty()).then_some(text)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_ws(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_ws(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    fn sniff(headers: &[(&str, &str)]) -> Auth {
        let mut sniffer = AuthSniffer::default();
        for (name, value) in headers {
            sniffer.observe(name.as_bytes(), value.as_bytes());
        }
        sniffer.finish()
    }

    fn b64url(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.c2lnbmF0dXJl_-x", b64url(header), b64url(payload))
    }

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    const JWT_HEADER: &str = r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#;
    const JWT_PAYLOAD: &str =
        r#"{"iss":"https://auth.example.com/","sub":"user-42","aud":"api","exp":1900000000}"#;

    #[test]
    fn basic_reports_user_only() {
        let auth = sniff(&[("Authorization", &basic("alice:s3cr3t"))]);
        assert_eq!(
            auth,
            Auth::with_detail(AuthKind::Basic, Some("alice".into()))
        );
        // A key used as the user name is the secret: only the scheme is kept.
        for key in ["sk_live_51H8abcdEFGHijkl", "Q9vYb2Xq7LmN4pRs8TuWz1Ac"] {
            let auth = sniff(&[("Authorization", &basic(&format!("{key}:")))]);
            assert_eq!(auth, Auth::of(AuthKind::Basic), "{key}");
        }
    }

    #[test]
    fn basic_password_may_contain_colons() {
        let auth = sniff(&[("Authorization", &basic("bob:pa:ss"))]);
        assert_eq!(auth.detail.as_deref(), Some("bob"));
    }

    #[test]
    fn basic_unpadded_is_accepted() {
        let value = format!("Basic {}", URL_SAFE_NO_PAD.encode("al:x"));
        assert_eq!(
            sniff(&[("authorization", &value)]).detail.as_deref(),
            Some("al")
        );
    }

    #[test]
    fn basic_undecodable_or_colonless_has_no_detail() {
        for value in ["Basic !!!not-base64!!!", &basic("justatoken"), "Basic"] {
            let auth = sniff(&[("Authorization", value)]);
            assert_eq!(auth, Auth::of(AuthKind::Basic), "{value}");
        }
    }

    #[test]
    fn basic_user_is_bounded_and_sanitized() {
        let user = format!("a\u{1b}[31m\n{}", "u".repeat(100));
        let auth = sniff(&[("Authorization", &basic(&format!("{user}:pw")))]);
        let detail = auth.detail.unwrap();
        assert_eq!(detail.chars().count(), MAX_USER_CHARS);
        assert!(detail.starts_with("a[31mu"));
        assert!(!detail.chars().any(char::is_control));
    }

    #[test]
    fn bearer_opaque() {
        let auth = sniff(&[("Authorization", "Bearer ya29.a0AfH6SMBx-opaque_token")]);
        assert_eq!(auth, Auth::of(AuthKind::Bearer));
        assert_eq!(auth.label(), "bearer");
    }

    #[test]
    fn bearer_jwt_reports_issuer_and_subject() {
        let token = jwt(JWT_HEADER, JWT_PAYLOAD);
        let auth = sniff(&[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(
            auth,
            Auth {
                kind: AuthKind::Jwt,
                issuer: Some("https://auth.example.com/".into()),
                subject: Some("user-42".into()),
                audiences: vec!["api".into()],
                expires_at: Some(1_900_000_000),
                ..Auth::default()
            }
        );
    }

    #[test]
    fn jwt_audiences_scopes_and_expiry() {
        let auth = sniff(&[(
            "Authorization",
            &format!(
                "Bearer {}",
                jwt(
                    r#"{"alg":"RS256"}"#,
                    r#"{"iss":"i","aud":["orders","billing"],"scope":"orders:read orders:write","exp":1800000000}"#
                )
            ),
        )]);
        assert_eq!(auth.audiences, ["orders", "billing"]);
        assert_eq!(auth.scopes, ["orders:read", "orders:write"]);
        assert_eq!(auth.expires_at, Some(1_800_000_000));
        let auth = sniff(&[(
            "Authorization",
            &format!(
                "Bearer {}",
                jwt(
                    r#"{"alg":"RS256"}"#,
                    r#"{"aud":"orders","scp":["a","b"],"exp":1.5e9}"#
                )
            ),
        )]);
        assert_eq!(auth.audiences, ["orders"]);
        assert_eq!(auth.scopes, ["a", "b"]);
        assert_eq!(auth.expires_at, Some(1_500_000_000));
        let many: Vec<String> = (0..100).map(|i| format!("\"s{i}\"")).collect();
        let auth = sniff(&[(
            "Authorization",
            &format!(
                "Bearer {}",
                jwt(
                    r#"{"alg":"RS256"}"#,
                    &format!(r#"{{"scp":[{}]}}"#, many.join(","))
                )
            ),
        )]);
        assert_eq!(auth.scopes.len(), MAX_LIST);
    }

    #[test]
    fn jwt_with_non_string_claims_has_no_issuer() {
        let token = jwt(JWT_HEADER, r#"{"iss":12345,"sub":{"id":1}}"#);
        let auth = sniff(&[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(auth, Auth::of(AuthKind::Jwt));
    }

    #[test]
    fn jwt_without_claims_or_signature() {
        // Unsecured JWT: empty signature segment.
        let token = format!("{}.{}.", b64url(r#"{"alg":"none"}"#), b64url("{}"));
        let auth = sniff(&[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(auth, Auth::of(AuthKind::Jwt));
    }

    #[test]
    fn jwt_claims_are_bounded_and_sanitized() {
        let long = "i".repeat(500);
        let payload = format!(r#"{{"iss":"{long}","sub":"a\u0007b\nc"}}"#);
        let token = jwt(JWT_HEADER, &payload);
        let auth = sniff(&[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(auth.issuer.unwrap().chars().count(), MAX_CLAIM_CHARS);
        assert_eq!(auth.subject.as_deref(), Some("abc"));
    }

    #[test]
    fn malformed_jwts_are_plain_bearer() {
        let h = b64url(JWT_HEADER);
        let p = b64url(JWT_PAYLOAD);
        let cases = [
            // two segments
            format!("{h}.{p}"),
            // four and five segments (JWE is not inspected)
            format!("{h}.{p}.sig.more"),
            format!("{h}.{p}.a.b.c"),
            // bad base64 in header / payload / signature
            format!("{h}.{p}!.sig"),
            format!("%%%.{p}.sig"),
            format!("{h}.{p}.si+g/"),
            // payload not JSON, or JSON but not an object
            format!("{h}.{}.sig", b64url("not json")),
            format!("{h}.{}.sig", b64url(r#"["iss","sub"]"#)),
            format!("{h}.{}.sig", b64url(r#""string""#)),
            // header without alg, header not an object
            format!("{}.{p}.sig", b64url(r#"{"typ":"JWT"}"#)),
            format!("{}.{p}.sig", b64url("[1]")),
            // empty segments
            format!(".{p}.sig"),
            format!("{h}..sig"),
        ];
        for token in cases {
            let auth = sniff(&[("Authorization", &format!("Bearer {token}"))]);
            assert_eq!(auth, Auth::of(AuthKind::Bearer), "{token}");
        }
    }

    #[test]
    fn jwt_payload_over_limit_is_not_decoded() {
        let big = format!(r#"{{"iss":"x","pad":"{}"}}"#, "p".repeat(MAX_JWT_DECODED));
        let token = jwt(JWT_HEADER, &big);
        assert!(token.len() < MAX_AUTHORIZATION_LEN);
        let auth = sniff(&[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(auth, Auth::of(AuthKind::Bearer));

        // Exactly at the limit still decodes.
        let pad = MAX_JWT_DECODED - r#"{"iss":"x","pad":""}"#.len();
        let fits = format!(r#"{{"iss":"x","pad":"{}"}}"#, "p".repeat(pad));
        let token = jwt(JWT_HEADER, &fits);
        let auth = sniff(&[("Authorization", &format!("Bearer {token}"))]);
        assert_eq!(auth.issuer.as_deref(), Some("x"));
    }

    #[test]
    fn api_key_headers() {
        for name in API_KEY_HEADERS {
            let auth = sniff(&[("Host", "example.com"), (name, "k-123")]);
            assert_eq!(
                auth,
                Auth::with_detail(AuthKind::ApiKey, Some(name.into())),
                "{name}"
            );
            assert!(is_api_key_header(name.as_bytes()));
        }
        assert_eq!(sniff(&[("X-API-Key", "abc")]).label(), "api_key");
        assert!(!is_api_key_header(b"x-idempotency-key"));
        assert!(!is_api_key_header(b"sec-websocket-key"));
        assert!(!is_api_key_header(b"authorization"));
        assert!(!is_api_key_header(b""));
    }

    #[test]
    fn case_and_whitespace_insensitive() {
        let token = jwt(JWT_HEADER, JWT_PAYLOAD);
        let auth = sniff(&[("AUTHORIZATION", &format!(" \tbEaReR \t {token} \t"))]);
        assert_eq!(auth.kind, AuthKind::Jwt);
        assert_eq!(auth.subject.as_deref(), Some("user-42"));

        let auth = sniff(&[(
            "authorization",
            &format!("BASIC  {}", STANDARD.encode("u:p")),
        )]);
        assert_eq!(auth.detail.as_deref(), Some("u"));

        let auth = sniff(&[("Ocp-Apim-Subscription-Key", "abc")]);
        assert_eq!(auth.detail.as_deref(), Some("ocp-apim-subscription-key"));
    }

    #[test]
    fn authorization_wins_over_api_key() {
        let before = sniff(&[("x-api-key", "k"), ("Authorization", "Bearer t")]);
        let after = sniff(&[("Authorization", "Bearer t"), ("x-api-key", "k")]);
        assert_eq!(before, Auth::of(AuthKind::Bearer));
        assert_eq!(after, before);
    }

    #[test]
    fn first_of_each_header_wins() {
        let auth = sniff(&[
            ("Authorization", &basic("first:x")),
            ("Authorization", "Bearer t"),
        ]);
        assert_eq!(auth.detail.as_deref(), Some("first"));
        let auth = sniff(&[("apikey", "a"), ("x-goog-api-key", "b")]);
        assert_eq!(auth.detail.as_deref(), Some("apikey"));
    }

    #[test]
    fn other_schemes_report_scheme() {
        let auth = sniff(&[(
            "Authorization",
            r#"Digest username="u", realm="r", nonce="n", response="abc""#,
        )]);
        assert_eq!(
            auth,
            Auth::with_detail(AuthKind::Other, Some("digest".into()))
        );
        assert_eq!(auth.label(), "other");

        let auth = sniff(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ff",
        )]);
        assert_eq!(auth.detail.as_deref(), Some("aws4-hmac-sha256"));

        let long = format!("{} token", "S".repeat(50));
        let auth = sniff(&[("authorization", &long)]);
        assert_eq!(auth.detail, Some("s".repeat(MAX_SCHEME_CHARS)));

        // Not a token: no detail rather than echoing arbitrary bytes.
        let auth = sniff(&[("authorization", "sk:live\u{7f} extra")]);
        assert_eq!(auth, Auth::of(AuthKind::Other));
    }

    #[test]
    fn schemeless_authorization_is_not_echoed() {
        let auth = sniff(&[("Authorization", "sk_live_51Habcdefghijk")]);
        assert_eq!(
            auth,
            Auth::with_detail(AuthKind::ApiKey, Some("authorization".into()))
        );
        // A bare JWT without "Bearer" is still recognised.
        let auth = sniff(&[("Authorization", &jwt(JWT_HEADER, JWT_PAYLOAD))]);
        assert_eq!(auth.kind, AuthKind::Jwt);
        // A scheme without credentials is still that scheme.
        assert_eq!(sniff(&[("Authorization", "Bearer")]).kind, AuthKind::Bearer);
    }

    #[test]
    fn empty_values_count_as_none() {
        assert_eq!(sniff(&[]), Auth::default());
        assert_eq!(sniff(&[("Authorization", "")]), Auth::default());
        assert_eq!(sniff(&[("Authorization", " \t ")]), Auth::default());
        assert_eq!(sniff(&[("x-api-key", "")]), Auth::default());
        // An empty header does not shadow a later real one.
        let auth = sniff(&[("Authorization", ""), ("Authorization", "Bearer t")]);
        assert_eq!(auth.kind, AuthKind::Bearer);
        let auth = sniff(&[("x-api-key", " "), ("api-key", "k")]);
        assert_eq!(auth.detail.as_deref(), Some("api-key"));
        assert_eq!(Auth::default().label(), "none");
    }

    #[test]
    fn proxy_authorization_is_ignored() {
        let auth = sniff(&[("Proxy-Authorization", &basic("proxyuser:pw"))]);
        assert_eq!(auth, Auth::default());
    }

    #[test]
    fn oversized_authorization_is_not_parsed() {
        let value = format!("Basic {}", "A".repeat(MAX_AUTHORIZATION_LEN));
        let auth = sniff(&[("Authorization", &value)]);
        assert_eq!(
            auth,
            Auth::with_detail(AuthKind::Other, Some("oversized".into()))
        );

        let exact = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN - 7));
        assert_eq!(exact.len(), MAX_AUTHORIZATION_LEN);
        assert_eq!(sniff(&[("Authorization", &exact)]).kind, AuthKind::Bearer);
    }

    #[test]
    fn labels() {
        let cases = [
            (AuthKind::None, "none"),
            (AuthKind::Basic, "basic"),
            (AuthKind::Bearer, "bearer"),
            (AuthKind::Jwt, "jwt"),
            (AuthKind::ApiKey, "api_key"),
            (AuthKind::Other, "other"),
        ];
        for (kind, label) in cases {
            let auth = Auth::of(kind.clone());
            assert_eq!(auth.label(), label);
            // The metric label and the serialized kind agree.
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{label}\"")
            );
        }
    }

    #[test]
    fn serde_round_trip_and_skips_absent_fields() {
        assert_eq!(
            serde_json::to_string(&Auth::default()).unwrap(),
            r#"{"kind":"none"}"#
        );
        let auth = sniff(&[(
            "Authorization",
            &format!("Bearer {}", jwt(JWT_HEADER, JWT_PAYLOAD)),
        )]);
        let json = serde_json::to_string(&auth).unwrap();
        assert_eq!(serde_json::from_str::<Auth>(&json).unwrap(), auth);
        assert_eq!(
            serde_json::from_str::<Auth>(r#"{"kind":"api_key"}"#).unwrap(),
            Auth::of(AuthKind::ApiKey)
        );
    }

    #[test]
    fn serialized_auth_never_contains_secrets() {
        let token = jwt(JWT_HEADER, JWT_PAYLOAD);
        let (_, signature) = token.rsplit_once('.').unwrap();
        let cases: Vec<(String, String, Vec<String>)> = vec![
            (
                "Authorization".into(),
                basic("alice:hunter2-password"),
                vec!["hunter2".into(), STANDARD.encode("alice:hunter2-password")],
            ),
            (
                "Authorization".into(),
                "Bearer opaque-secret-token-value".into(),
                vec!["opaque-secret".into()],
            ),
            (
                "Authorization".into(),
                format!("Bearer {token}"),
                vec![token.clone(), signature.into(), b64url(JWT_PAYLOAD)],
            ),
            (
                "Authorization".into(),
                "Digest username=\"u\", response=\"digest-secret-response\"".into(),
                vec!["digest-secret".into()],
            ),
            (
                "Authorization".into(),
                "raw-secret-key-without-scheme".into(),
                vec!["raw-secret".into()],
            ),
            (
                "X-Api-Key".into(),
                "key-secret-value-123".into(),
                vec!["key-secret".into()],
            ),
        ];
        for (name, value, secrets) in cases {
            let auth = sniff(&[(&name, &value)]);
            let json = serde_json::to_string(&auth).unwrap();
            let debug = format!("{auth:?}");
            for secret in secrets {
                assert!(!json.contains(&secret), "{json} leaks {secret}");
                assert!(!debug.contains(&secret), "{debug} leaks {secret}");
            }
        }
    }

    fn header_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"Authorization".to_vec()),
            Just(b"x-api-key".to_vec()),
            Just(b"Proxy-Authorization".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..32),
        ]
    }

    /// Values shaped enough to reach the base64 and JSON paths, not just the scheme
    /// split.
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        let segment = "[A-Za-z0-9_=+/-]{0,40}";
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            (segment, segment, segment)
                .prop_map(|(a, b, c)| format!("Bearer {a}.{b}.{c}").into_bytes()),
            (any::<String>(), any::<String>()).prop_map(|(h, p)| {
                format!("bearer {}.{}.x", b64url(&h), b64url(&p)).into_bytes()
            }),
            any::<Vec<u8>>().prop_map(|raw| format!("Basic {}", STANDARD.encode(raw)).into_bytes()),
            any::<String>().prop_map(|p| {
                format!("Bearer {}.{}.", b64url(r#"{"alg":"x"}"#), b64url(&p)).into_bytes()
            }),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(headers in proptest::collection::vec((header_name(), header_value()), 0..6)) {
            let mut sniffer = AuthSniffer::default();
            for (name, value) in &headers {
                sniffer.observe(name, value);
                let _ = is_api_key_header(name);
            }
            let auth = sniffer.finish();
            let _ = auth.label();
            for field in [&auth.issuer, &auth.subject, &auth.detail].into_iter().flatten() {
                prop_assert!(!field.is_empty());
                prop_assert!(!field.chars().any(char::is_control));
                prop_assert!(field.chars().count() <= MAX_CLAIM_CHARS);
            }
            let json = serde_json::to_string(&auth).unwrap();
            prop_assert_eq!(serde_json::from_str::<Auth>(&json).unwrap(), auth);
        }

        #[test]
        fn api_key_value_never_stored(key in "[ -~]{1,64}") {
            prop_assume!(!key.trim().is_empty());
            let auth = sniff(&[("x-api-key", &key)]);
            prop_assert_eq!(auth, Auth::with_detail(AuthKind::ApiKey, Some("x-api-key".into())));
        }
    }
}
