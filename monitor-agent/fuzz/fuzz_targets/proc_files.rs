//! Parses arbitrary `/proc/PID/maps`, `/proc/PID/cgroup` and `/proc/PID/task/TID/syscall`
//! text the way TLS discovery, identity and the blocked-read pickup do: never a panic;
//! libraries found are absolute paths from the text; a container id is 12 lower-case hex
//! digits; a blocked read names a non-negative descriptor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_agent::{fuzzing, identity::process::container_id};

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    for lib in fuzzing::libssl_paths(&text) {
        assert!(lib.starts_with('/') && text.contains(&lib), "{lib:?}");
    }
    if let Some(path) = fuzzing::cgroup_path(&text) {
        assert!(text.contains(&path));
        if let Some(id) = container_id(&path) {
            assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id:?}");
        }
    }
    let _ = container_id(&text);
    for line in text.lines() {
        if let Some((fd, _)) = fuzzing::blocked_read(line) {
            assert!(fd >= 0, "{line:?}");
        }
    }
});
