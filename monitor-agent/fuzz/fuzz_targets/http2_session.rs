//! Feeds arbitrary bytes and gaps to both directions of HTTP/2 sessions, fresh and joined
//! mid-life: they must never panic and never hold more than their bounded buffers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_agent::protocol::{
    http2::{Session, Start},
    session::ProtocolSession,
};
use monitor_agent::protocol::session::Direction::{Egress as EGRESS, Ingress as INGRESS};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let start = match mode % 3 {
        0 => Start::Fresh { client: EGRESS },
        1 => Start::Upgraded { client: INGRESS },
        _ => Start::Attached { client: None },
    };
    let mut s = Session::new(start);
    let mut out = Vec::new();
    let mut ts = 0u64;
    while let [op, len, tail @ ..] = rest {
        ts += 1;
        let dir = if op & 1 == 0 { EGRESS } else { INGRESS };
        let n = (*len as usize).min(tail.len());
        match op >> 1 & 3 {
            0..=2 => s.data(dir, &tail[..n], ts, &mut out),
            _ => s.gap(dir, u64::from(*len) * 31, ts, &mut out),
        }
        // Kept frames and header blocks are capped at 256 KiB each, per direction.
        assert!(s.buffered_bytes() <= 4 << 20, "{}", s.buffered_bytes());
        rest = &tail[n..];
    }
    s.close(ts, &mut out);
});
