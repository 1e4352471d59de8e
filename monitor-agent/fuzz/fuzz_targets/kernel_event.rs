//! Decodes arbitrary ring-buffer records: a record the reader accepts has its payload
//! length as claimed and a printable process name, and no record panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = monitor_agent::fuzzing::kernel_event(input);
});
