//! How much of a segment the kernel copies: a message head in full (up to [`HEAD_MAX`]),
//! a body only at its ends.
//!
//! Copying every byte would cost as much as the traffic; copying a fixed prefix lets a
//! workload hide its calls behind one long header. The kernel cannot parse a head, so it
//! goes by what it can check in the bytes it already copied: whether a segment starts a
//! message, and whether it ends with the blank line that ends an HTTP/1 head.
#![allow(
    clippy::inline_always,
    reason = "the eBPF side must inline these: a BPF-to-BPF call costs verifier budget"
)]

use crate::event::{MAX_DATA, TAIL_DATA};

/// The longest message head copied in full: what common servers accept (nginx's
/// `large_client_header_buffers`, Node's `--max-http-header-size`, Go's
/// `DefaultMaxHeaderBytes` are all at most this).
pub const HEAD_MAX: u64 = 64 * 1024;

/// Records a segment is copied in when its head is as long as it may be.
pub const HEAD_RECORDS: usize = (HEAD_MAX as usize).div_ceil(MAX_DATA);

/// What an HTTP/2 client sends before its first frame.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 frame types that carry a header block, and the flag that ends one.
const H2_HEADERS: u8 = 1;
const H2_CONTINUATION: u8 = 9;
const H2_END_HEADERS: u8 = 0x4;

/// What a segment's first bytes say about the message it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Not the start of a head: body bytes, or more of a head begun earlier.
    Other,
    /// An HTTP/1 request or status line: the head runs to a blank line, at most
    /// `HEAD_MAX`.
    Http1,
    /// The HTTP/2 client preface: frames follow it.
    Preface,
    /// A header block frame without END_HEADERS: the block goes on in CONTINUATION frames.
    Http2Open,
    /// A HEADERS or CONTINUATION frame that ends its block, this many bytes long with
    /// its frame header.
    Http2Frame(u32),
}

impl Start {
    /// Where the segment's HTTP/2 frames start, when it starts with the preface or at a
    /// frame boundary with a header block among its first frames: it is walked frame by
    /// frame (`crate::frames`).
    #[inline(always)]
    pub const fn frames_at(self) -> Option<u64> {
        match self {
            Start::Http2Open | Start::Http2Frame(_) => Some(0),
            Start::Preface => Some(PREFACE.len() as u64),
            Start::Http1 | Start::Other => None,
        }
    }

    /// Whether a blank line at the end of the segment ends the head (HTTP/1), or only the
    /// frame length does (HTTP/2).
    #[inline(always)]
    pub const fn closes_on_blank_line(self) -> bool {
        matches!(self, Start::Http1 | Start::Other)
    }
}

/// HTTP/2 frames looked at before a header block frame is given up on: a write often
/// starts with SETTINGS, WINDOW_UPDATE or PING frames before the HEADERS.
const H2_FRAMES_SCANNED: usize = 8;

/// Classifies a segment by its first `len` bytes of `data`, on a connection already known
/// to be HTTP. Deliberately cheap, and erring towards "a head starts here": that costs at
/// most `HEAD_MAX` of copying, while the opposite error would hide a call. Request lines,
/// status lines and the HTTP/2 preface start with an upper-case letter (`GET`,
/// `HTTP/1.1`, `PRI`), a JSON or binary body seldom does; otherwise the first few HTTP/2
/// frame headers are walked for a HEADERS or CONTINUATION frame.
#[inline(always)]
pub fn start(data: &[u8], len: usize) -> Start {
    let len = if len < data.len() { len } else { data.len() };
    match data.first() {
        Some(b'P') if len >= PREFACE.len() && is_preface(data) => return Start::Preface,
        Some(c) if len > 0 && c.is_ascii_uppercase() => return Start::Http1,
        _ => {}
    }
    let mut at = 0usize;
    for _ in 0..H2_FRAMES_SCANNED {
        let Some(h) = data.get(at..at + 9) else {
            return Start::Other;
        };
        if at + 9 > len || h[5] & 0x80 != 0 {
            return Start::Other;
        }
        let frame = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let stream = h[5] | h[6] | h[7] | h[8];
        if (h[3] == H2_HEADERS || h[3] == H2_CONTINUATION) && stream != 0 {
            if h[4] & H2_END_HEADERS == 0 {
                return Start::Http2Open;
            }
            return Start::Http2Frame((at + 9 + frame) as u32);
        }
        at += 9 + frame;
    }
    Start::Other
}

/// Byte by byte: a slice comparison would be a call to `memcmp`, which eBPF lacks.
#[inline(always)]
fn is_preface(data: &[u8]) -> bool {
    let mut i = 0;
    while i < PREFACE.len() {
        if data.get(i) != Some(&PREFACE[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// Which bytes of a segment are copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Bytes from the start copied in full, in records of at most `MAX_DATA`.
    pub full: u64,
    /// Where the copy of the segment's end starts; the segment's length when there is none.
    /// The bytes in `full..tail` are reported as not captured.
    pub tail: u64,
}

impl Plan {
    /// Bytes of the segment that are not copied.
    #[inline(always)]
    pub const fn truncated(&self) -> u64 {
        self.tail - self.full
    }
}

/// How much of `n` bytes to copy when `budget` bytes of them may be head: at least
/// `MAX_DATA`, at most `HEAD_MAX`, then the last `TAIL_DATA` bytes, never a byte twice.
#[inline(always)]
pub fn plan(n: u64, budget: u64) -> Plan {
    let budget = if budget > HEAD_MAX { HEAD_MAX } else { budget };
    let full_max = if budget > MAX_DATA as u64 {
        budget
    } else {
        MAX_DATA as u64
    };
    let full = if n < full_max { n } else { full_max };
    let tail = if n <= full {
        n
    } else if n - full > TAIL_DATA as u64 {
        n - TAIL_DATA as u64
    } else {
        full
    };
    Plan { full, tail }
}

/// How many bytes the head of a segment that starts as `start` may still have.
#[inline(always)]
pub fn budget(start: Start, head_left: u64) -> u64 {
    match start {
        Start::Http1 | Start::Preface | Start::Http2Open => HEAD_MAX,
        // A frame may be longer than HEAD_MAX; the head budget is never.
        Start::Http2Frame(len) => {
            let len = u64::from(len);
            if len < HEAD_MAX {
                len
            } else {
                HEAD_MAX
            }
        }
        Start::Other => head_left,
    }
}

/// The head bytes that may follow a segment of `n` bytes, which started as `start` and
/// had `budget` to spend; `blank_line_end` says it ended with `\r\n\r\n`.
#[inline(always)]
pub fn head_left(start: Start, budget: u64, n: u64, blank_line_end: bool) -> u64 {
    if start.closes_on_blank_line() && blank_line_end {
        0
    } else {
        budget.saturating_sub(n)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    fn st(input: &[u8]) -> Start {
        start(input, input.len())
    }

    #[test]
    fn starts() {
        assert_eq!(st(b"GET / HTTP/1.1\r\n"), Start::Http1);
        assert_eq!(st(b"HTTP/1.1 200 OK\r\n"), Start::Http1);
        assert_eq!(st(b"PRI * HTTP/2.0\r\n"), Start::Http1);
        assert_eq!(
            st(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04"),
            Start::Preface
        );
        assert_eq!(Start::Preface.frames_at(), Some(24));
        // HEADERS, END_HEADERS, stream 1, 300 octets; without END_HEADERS; CONTINUATION.
        assert_eq!(st(&[0, 1, 44, 1, 4, 0, 0, 0, 1]), Start::Http2Frame(309));
        assert_eq!(st(&[0, 1, 44, 1, 1, 0, 0, 0, 1]), Start::Http2Open);
        assert_eq!(st(&[0, 0, 10, 9, 4, 0, 0, 0, 3]), Start::Http2Frame(19));
        // SETTINGS and WINDOW_UPDATE before the HEADERS of stream 3.
        let mut w = vec![0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        w.extend([0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        w.extend([0, 0, 20, 1, 4, 0, 0, 0, 3]);
        assert_eq!(st(&w), Start::Http2Frame(28 + 9 + 20));
        // Its header cut off by the end of the record; not within the frames scanned.
        assert_eq!(start(&w, w.len() - 1), Start::Other);
        let ping = [0u8, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let many: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 8).collect();
        let mut late = many.clone();
        late.extend([0, 0, 20, 1, 4, 0, 0, 0, 3]);
        assert_eq!(st(&late), Start::Other);
        // DATA; HEADERS on stream 0; body text.
        assert_eq!(st(&[0, 1, 44, 0, 1, 0, 0, 0, 1]), Start::Other);
        assert_eq!(st(&[0, 1, 44, 1, 4, 0, 0, 0, 0]), Start::Other);
        assert_eq!(st(b"{\"id\": 1}"), Start::Other);
    }

    #[test]
    fn plans_never_overlap_and_count_exactly() {
        let max = MAX_DATA as u64;
        let tail = TAIL_DATA as u64;
        for n in [
            1,
            100,
            max,
            max + 1,
            max + 300,
            max + tail,
            max + tail + 1,
            1 << 20,
        ] {
            for budget in [0, 10, max, 20_000, HEAD_MAX, HEAD_MAX * 4] {
                let p = plan(n, budget);
                assert!(p.full <= p.tail && p.tail <= n, "{n} {budget}: {p:?}");
                let copied = p.full + (n - p.tail);
                assert_eq!(copied + p.truncated(), n, "{n} {budget}");
                assert!(p.full <= HEAD_MAX.max(max));
                assert!(n - p.tail <= tail);
            }
        }
        // Writes of 4,097 to 4,607 bytes: all of it, once.
        assert_eq!(
            plan(max + 300, 0),
            Plan {
                full: max,
                tail: max
            }
        );
        assert_eq!(
            plan(1 << 20, 0),
            Plan {
                full: max,
                tail: (1 << 20) - tail
            }
        );
        assert_eq!(
            plan(20_000, HEAD_MAX),
            Plan {
                full: 20_000,
                tail: 20_000
            }
        );
        assert_eq!(plan(1 << 20, HEAD_MAX).full, HEAD_MAX);
    }

    #[test]
    fn a_head_stays_open_until_its_blank_line() {
        // A request line alone, then a long header: the header is copied in full.
        let b = budget(Start::Http1, 0);
        let left = head_left(Start::Http1, b, 30, false);
        assert_eq!(left, HEAD_MAX - 30);
        assert_eq!(plan(20_000, budget(Start::Other, left)).full, 20_000);
        assert_eq!(head_left(Start::Other, left, 20_000, true), 0);
        // A complete head: the body after it is copied at its ends only.
        assert_eq!(head_left(Start::Http1, b, 300, true), 0);
        assert_eq!(plan(1 << 20, budget(Start::Other, 0)).full, MAX_DATA as u64);
        // An HTTP/2 frame's budget is the frame.
        let b = budget(Start::Http2Frame(30_000), 0);
        assert_eq!(
            head_left(Start::Http2Frame(30_000), b, 16_000, false),
            14_000
        );
        assert_eq!(head_left(Start::Http2Frame(300), 300, 1 << 20, false), 0);
        // A 16 MiB frame opens no more than HEAD_MAX.
        assert_eq!(budget(Start::Http2Frame(16 << 20), 0), HEAD_MAX);
    }
}
