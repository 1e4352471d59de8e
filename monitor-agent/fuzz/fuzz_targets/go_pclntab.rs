//! Parses arbitrary ELF files and looks up Go functions through `.gopclntab`: never a panic,
//! and never a read outside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = monitor_agent::fuzzing::go_tls(input, "crypto/tls.(*Conn).Write");
});
