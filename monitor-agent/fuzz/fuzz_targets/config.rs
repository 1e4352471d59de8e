//! Parses an arbitrary config file: never a panic; an error names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_agent::settings::ConfigFile;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    if let Err(e) = ConfigFile::parse("fuzz.yaml", &text) {
        assert!(e.to_string().contains("fuzz.yaml"), "{e}");
    }
});
