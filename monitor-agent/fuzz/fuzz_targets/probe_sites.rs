//! Decodes arbitrary bytes as a probed function (and as an ELF file exporting OpenSSL):
//! the probe placement never panics, loops or reads outside its input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = monitor_agent::fuzzing::probe_sites(input);
});
