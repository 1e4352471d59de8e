//! Parses arbitrary BTF blobs and walks them for the socket offsets and one member named
//! by the input: never a panic, a hang or unbounded recursion, whatever the type graph.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (names, blob) = input.split_at(input.len().min(16));
    let names = String::from_utf8_lossy(names);
    let (strukt, member) = names.split_once(' ').unwrap_or((&names, "fd"));
    let _ = monitor_agent::fuzzing::btf(blob, strukt, member);
});
