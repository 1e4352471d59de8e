//! Redacts arbitrary request targets: it must never panic, must leave no path segment, bare
//! query word or query value that itself looks like a credential, and must be stable (a
//! redacted target redacts to itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_agent::redact::{credential_value, secret_looking, Redactor};

fuzz_target!(|input: &[u8]| {
    let target = String::from_utf8_lossy(input);
    let r = Redactor::default();
    let out = r.target(&target).into_owned();
    let (path, query) = out.split_once('?').map_or((out.as_str(), None), |(p, q)| (p, Some(q)));
    for seg in path.split('/') {
        assert!(!secret_looking(seg), "{seg:?} left in {out:?}");
    }
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some((_, value)) => assert!(!credential_value(value), "{value:?} left in {out:?}"),
            None => assert!(!secret_looking(pair), "{pair:?} left in {out:?}"),
        }
    }
    assert_eq!(r.target(&out), out);
});
