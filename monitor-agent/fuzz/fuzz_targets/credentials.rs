//! Classifies arbitrary request headers for the credential they carry (Basic, Bearer,
//! JWT claims, API-key headers): never a panic, and whatever it keeps is bounded and free
//! of control characters, never the secret itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_agent::protocol::credentials::{AuthKind, AuthSniffer, MAX_CLAIM_CHARS, MAX_LIST};

fn clean(s: &str, max: usize) {
    assert!(s.chars().count() <= max, "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
}

fuzz_target!(|input: &[u8]| {
    let mut sniffer = AuthSniffer::default();
    // Headers separated by newlines, name and value by the first ':'.
    let mut secrets = Vec::new();
    for line in input.split(|&b| b == b'\n') {
        let at = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let (name, value) = (&line[..at], line.get(at + 1..).unwrap_or(&[]));
        sniffer.observe(name, value);
        secrets.push(value);
    }
    let auth = sniffer.finish();
    for s in [&auth.issuer, &auth.subject, &auth.detail].into_iter().flatten() {
        clean(s, MAX_CLAIM_CHARS);
    }
    assert!(auth.audiences.len() <= MAX_LIST && auth.scopes.len() <= MAX_LIST);
    for s in auth.audiences.iter().chain(&auth.scopes) {
        clean(s, MAX_CLAIM_CHARS);
    }
    if matches!(auth.kind, AuthKind::ApiKey) {
        // The detail is the header's canonical name, never its value.
        let detail = auth.detail.as_deref().unwrap_or_default();
        assert!(detail.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_'), "{detail:?}");
    }
});
