extern crate std;
use std::vec::Vec;

use super::{audit::audit, SHORT_DATA};
use crate::{event::MAX_DATA, head::HEAD_MAX};

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: usize) {
    let n = payload as u32;
    out.extend([(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend((0..payload).map(|i| b'a' + (i % 26) as u8));
}

fn first(data: &[u8]) -> u64 {
    data.len().min(MAX_DATA) as u64
}

#[test]
fn a_batch_of_requests_with_bodies_keeps_every_header_block() {
    let mut w = Vec::new();
    for i in 0..30 {
        frame(&mut w, 1, 4, 1 + 2 * i, 40);
        frame(&mut w, 0, 1, 1 + 2 * i, 1000);
    }
    let a = audit(&w, first(&w)).unwrap();
    // Each body after the first record is skipped, its frame header copied.
    let copied: u64 = a.copies.iter().map(|c| c.1).sum();
    assert!(copied < 30 * 60, "{copied}");
    assert!(a.skipped > 25 * 900, "{}", a.skipped);
    // The same after the client preface, in the connection's first write.
    let mut first_write = crate::head::PREFACE.to_vec();
    first_write.extend(&w);
    let start = crate::head::start(&first_write, MAX_DATA);
    let at = start.frames_at().unwrap();
    let b = super::audit::audit_resumed(&first_write, first(&first_write), at, 0).unwrap();
    assert!(b.skipped > 25 * 900, "{}", b.skipped);
}

#[test]
fn a_download_copies_frame_headers_only() {
    let mut w = Vec::new();
    frame(&mut w, 1, 4, 1, 30);
    for _ in 0..40 {
        frame(&mut w, 0, 0, 1, 16 * 1024);
    }
    let a = audit(&w, first(&w)).unwrap();
    assert!(a.copies.iter().all(|&(_, n)| n == 9), "{:?}", a.copies);
    assert_eq!(a.copies.len(), 39);
}

#[test]
fn many_small_frames_end_with_a_tail_once_the_walk_is_spent() {
    let mut w = Vec::new();
    for i in 0..400 {
        frame(&mut w, 1, 4, 1 + 2 * i, 30);
    }
    let a = audit(&w, first(&w)).unwrap();
    let last = a.copies.last().unwrap();
    assert_eq!(last.0 + last.1, w.len() as u64);
    assert!(a.skipped > 0);
}

#[test]
fn a_long_header_block_frame_is_copied_whole_and_carried_over() {
    let mut w = Vec::new();
    frame(&mut w, 1, 4, 1, 20_000);
    frame(&mut w, 0, 1, 1, 5000);
    // The body is longer than SHORT_DATA: skipped.
    const { assert!(5000 > SHORT_DATA) };
    assert_eq!(audit(&w, first(&w)).unwrap().skipped, 5000);
    // Cut by the end of the write: the rest is carried into the next segment.
    let cut = &w[..15_000];
    let a = audit(cut, first(cut)).unwrap();
    assert_eq!((a.skipped, a.head_left), (0, 20_009 - 15_000));
    let mut huge = Vec::new();
    frame(&mut huge, 1, 0, 1, 200_000);
    let huge = &huge[..100_000];
    let a = audit(huge, first(huge)).unwrap();
    assert_eq!(a.head_left, HEAD_MAX);
    assert!(a.skipped > 0);
}

#[test]
fn any_bytes_any_split_keep_the_promises() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..400 {
        let mut w = Vec::new();
        let frames = next() % 120;
        for _ in 0..frames {
            let kind = [0u8, 0, 1, 9, 4, 8, 3][(next() % 7) as usize];
            let payload = match next() % 4 {
                0 => next() % 16,
                1 => next() % 600,
                2 => next() % 20_000,
                _ => next() % 3000,
            };
            frame(
                &mut w,
                kind,
                (next() % 16) as u8,
                next() as u32 >> 1,
                payload as usize,
            );
        }
        let cut = (next() as usize % (w.len() + 1)).max(w.len() / 2);
        let data = &w[..cut];
        let firsts = [
            first(data),
            (next() % (data.len() as u64 + 1)).min(MAX_DATA as u64),
        ];
        for f in firsts {
            audit(data, f)
                .unwrap_or_else(|e| panic!("{frames} frames, {cut} bytes, first {f}: {e}"));
        }
        let (frame, keep) = (next() % 3000, next() % 70_000);
        super::audit::audit_resumed(data, firsts[1], frame, keep)
            .unwrap_or_else(|e| panic!("resumed at {frame}, keep {keep}: {e}"));
        let noise: Vec<u8> = (0..next() % 70_000).map(|_| next() as u8).collect();
        audit(&noise, first(&noise)).unwrap();
    }
}

#[test]
fn a_walk_resumes_where_the_segment_before_left_its_frames() {
    let mut w = Vec::new();
    for i in 0..20 {
        frame(&mut w, 1, 4, 1 + 2 * i, 40);
        frame(&mut w, 0, 1, 1 + 2 * i, 1000);
    }
    // Read in pieces of 3000 bytes: each piece's walk starts where the one before ended.
    let mut at = 0u64;
    let mut keep = 0;
    let mut next = 0u64;
    while (at as usize) < w.len() {
        let piece = &w[at as usize..w.len().min(at as usize + 3000)];
        let first = first(piece).min(1000);
        let a = super::audit::audit_resumed(piece, first, next - at, keep).unwrap();
        let mut walk = super::Walk::resume(first, next - at, keep, piece.len() as u64);
        let mut record = [0u8; MAX_DATA];
        record[..first as usize].copy_from_slice(&piece[..first as usize]);
        walk.pass_copied(&record);
        let len = piece.len() as u64;
        let mut skipped = 0;
        let mut io = super::audit::Replay(piece);
        while walk.step(len, &mut io, &mut skipped) {}
        assert_eq!(skipped, a.skipped);
        next = at + walk.next_frame(len).expect("walked to the end");
        keep = a.head_left;
        at += len;
    }
    assert_eq!(next, w.len() as u64);
    // A segment wholly inside a DATA payload is skipped, save what is copied already.
    let a = super::audit::audit_resumed(&w[100..1000], 100, 5000, 0).unwrap();
    assert_eq!((a.skipped, a.copies.len()), (800, 0));
}
