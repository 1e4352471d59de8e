//! Byte staging that remembers which capture call each byte came from, so
//! a message found in the middle of staged bytes gets the right start time.

use std::collections::VecDeque;

/// Timestamp marks kept; beyond this, old boundaries are merged (only
/// reachable when a header block arrives in very many tiny calls).
const MAX_MARKS: usize = 32;

#[derive(Debug, Default)]
pub(super) struct Staging {
    buf: Vec<u8>,
    /// Absolute stream offset of `buf[0]`.
    base: u64,
    /// `(absolute offset where a call's bytes start, its ts)`, ascending.
    marks: VecDeque<(u64, u64)>,
}

impl Staging {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn push(&mut self, data: &[u8], ts: u64) {
        if data.is_empty() {
            return;
        }
        let end = self.base + self.buf.len() as u64;
        if self.marks.back().is_none_or(|&(_, t)| t != ts) {
            self.marks.push_back((end, ts));
            if self.marks.len() > MAX_MARKS {
                self.marks.remove(1);
            }
        }
        self.buf.extend_from_slice(data);
    }

    pub(super) fn drain(&mut self, k: usize) {
        let k = k.min(self.buf.len());
        self.buf.drain(..k);
        self.base += k as u64;
        while self.marks.get(1).is_some_and(|&(off, _)| off <= self.base) {
            self.marks.pop_front();
        }
        if self.buf.is_empty() {
            self.marks.clear();
        }
    }

    pub(super) fn clear(&mut self) {
        let n = self.buf.len();
        self.drain(n);
    }

    /// Gives back the capacity of an empty staging area.
    pub(super) fn release_spare(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
            self.marks = VecDeque::new();
        }
    }

    /// Capture time of the first staged byte (`default` when empty).
    pub(super) fn front_ts(&self, default: u64) -> u64 {
        self.marks.front().map_or(default, |&(_, ts)| ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_ts_follows_drains_across_calls() {
        let mut s = Staging::default();
        s.push(b"abc", 1);
        s.push(b"de", 2);
        s.push(b"f", 3);
        assert_eq!(s.front_ts(0), 1);
        s.drain(2);
        assert_eq!(s.front_ts(0), 1);
        s.drain(1);
        assert_eq!(s.front_ts(0), 2);
        s.drain(2);
        assert_eq!((s.front_ts(0), s.bytes()), (3, &b"f"[..]));
        s.clear();
        assert_eq!(s.front_ts(9), 9);
    }

    #[test]
    fn many_tiny_calls_keep_marks_bounded() {
        let mut s = Staging::default();
        for i in 0..1000u64 {
            s.push(b"x", i);
        }
        assert!(s.marks.len() <= MAX_MARKS);
        assert_eq!(s.front_ts(0), 0);
    }
}
