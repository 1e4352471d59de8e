//! The kernel's copy decisions on arbitrary bytes and sizes: sniffing and head detection
//! never panic, and a copy plan never sends a byte twice, never more than its bounds, and
//! accounts for every byte of the segment; so does a walk over HTTP/2 frames, from the
//! start or resumed anywhere, which also copies every frame header and header block
//! within its budget, in no more steps than the kernel allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_common::{
    frames::audit::audit_resumed,
    head,
    sniff::{sniff, SNIFF_LEN},
    MAX_DATA, TAIL_DATA,
};

fuzz_target!(|input: &[u8]| {
    let Some((sizes, data)) = input.split_first_chunk::<13>() else {
        return;
    };
    let mut b = [0u8; SNIFF_LEN];
    let n = data.len().min(SNIFF_LEN);
    b[..n].copy_from_slice(&data[..n]);
    let _ = sniff(&b, n);
    let record = &data[..data.len().min(MAX_DATA)];
    let start = head::start(record, record.len());
    let [s0, s1, s2, s3, s4, s5, l0, l1, l2, l3, f0, f1, ended] = *sizes;
    let seg = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, 0, 0]);
    let left = u64::from(u32::from_le_bytes([l0, l1, l2, l3])).min(head::HEAD_MAX);
    let budget = head::budget(start, left);
    assert!(budget <= head::HEAD_MAX, "{start:?} {budget}");
    let p = head::plan(seg, budget);
    assert!(p.full <= p.tail && p.tail <= seg, "{seg} {budget}: {p:?}");
    assert_eq!(p.full + p.truncated() + (seg - p.tail), seg);
    assert!(p.full <= head::HEAD_MAX.max(MAX_DATA as u64));
    assert!(seg - p.tail <= TAIL_DATA as u64);
    let next = head::head_left(start, budget, seg, ended & 1 == 1);
    assert!(next <= head::HEAD_MAX, "{next}");
    // The same bytes as a segment of HTTP/2 frames, the walk starting at a frame boundary
    // `f0 f1` bytes in, the first `l0 * 16` bytes copied already, `l1 * 64` ending a frame.
    let frame = u64::from(u16::from_le_bytes([f0, f1]));
    let first = (u64::from(l0) * 16).min(MAX_DATA as u64);
    let keep = u64::from(l1) * 64;
    if let Err(e) = audit_resumed(data, first, frame, keep) {
        panic!("walk from {frame}, first {first}, keep {keep}: {e}");
    }
});
