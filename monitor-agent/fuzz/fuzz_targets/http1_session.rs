//! Feeds arbitrary bytes, gaps and closes to both sides of an HTTP/1 session: it must never
//! panic and never hold more than its header limit per side plus its bounded queue of
//! requests awaiting responses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_agent::protocol::{
    http1::{Limits, Session, Side},
    session::ProtocolSession as _,
};

fuzz_target!(|input: &[u8]| {
    let limits = Limits::default();
    let head = limits.max_header_bytes.max(64);
    let bound = 2 * (head + 64) + 4 * limits.max_pending_requests * (512 + head);
    let mut s = Session::new(limits);
    let mut out = Vec::new();
    let mut rest = input;
    let mut ts = 0u64;
    while let [op, len, tail @ ..] = rest {
        ts += 1;
        let side = if op & 1 == 0 { Side::Request } else { Side::Response };
        let n = (*len as usize).min(tail.len());
        match op >> 1 & 3 {
            0 | 1 => s.on_data(side, &tail[..n], ts, &mut out),
            2 => s.on_gap(side, u64::from(*len) * 97, ts, &mut out),
            _ => s.on_close(ts, &mut out),
        }
        assert!(s.buffered_bytes() <= bound, "{} > {bound}", s.buffered_bytes());
        rest = &tail[n..];
    }
});
