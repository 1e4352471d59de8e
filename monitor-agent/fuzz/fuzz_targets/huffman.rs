//! Huffman-decodes arbitrary bytes as an HPACK string literal: never a panic, and never
//! more symbols than the input can hold (the shortest code is 5 bits).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut out = Vec::new();
    let ok = monitor_agent::fuzzing::huffman(input, &mut out);
    if ok {
        assert!(out.len() * 5 <= input.len() * 8, "{} symbols from {} bytes", out.len(), input.len());
    }
    // The decoder reuses its buffer: a second decode into it gives the same answer.
    let mut again = vec![0xAA; 3];
    assert_eq!(monitor_agent::fuzzing::huffman(input, &mut again), ok);
    if ok {
        assert_eq!(again, out);
    }
});
