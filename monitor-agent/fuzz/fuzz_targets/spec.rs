//! Loads an arbitrary OpenAPI document (YAML or JSON) and matches arbitrary paths against
//! it: never a panic, and matching is linear, whatever the templates (`/{a}-{b}-{c}.png`
//! with many separators used to be exponential).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use monitor_agent::spec::ServiceSpec;

fuzz_target!(|input: &[u8]| {
    // The document, then a NUL, then request paths one per line.
    let at = input.iter().position(|&b| b == 0).unwrap_or(input.len());
    let doc = String::from_utf8_lossy(&input[..at]);
    let paths = String::from_utf8_lossy(input.get(at + 1..).unwrap_or(&[]));
    let Ok(spec) = ServiceSpec::from_str("svc", Path::new("fuzz.yaml"), &doc) else {
        return;
    };
    for path in paths.lines() {
        let _ = spec.match_op("GET", path);
        let _ = spec.match_any_method(path);
        // The same path repeated makes long segments out of short inputs.
        let _ = spec.match_op("POST", &path.repeat(64));
    }
});
