//! The streams open on one HTTP/2 connection, bounded in number and accounted in bytes.
//! A client can open streams and never see them answered, so the table has a cap (the
//! oldest, lowest id, is dropped beyond it, counted as a dropped request and as
//! `http2_open_streams` in `monitor_limit_reached`), and what the streams hold counts
//! toward the node's parser memory budget.

use std::collections::BTreeMap;

use crate::limits::Limit;

/// Most streams tracked at once on one connection.
pub(super) const MAX_STREAMS: usize = 4096;

/// What a stream holds besides its fixed size, for memory accounting.
pub(super) trait Held {
    fn held_bytes(&self) -> usize;
}

#[derive(Debug)]
pub(super) struct Streams<S> {
    /// Each stream with the bytes it was accounted at when it was opened.
    map: BTreeMap<u32, (S, usize)>,
    held: usize,
}

impl<S> Default for Streams<S> {
    fn default() -> Self {
        Streams {
            map: BTreeMap::new(),
            held: 0,
        }
    }
}

impl<S: Held> Streams<S> {
    /// Opens a stream; returns how many older ones were dropped to make room.
    pub(super) fn open(&mut self, id: u32, s: S) -> u64 {
        let mut dropped = 0;
        if !self.map.contains_key(&id) && self.map.len() >= MAX_STREAMS {
            if let Some((_, (_, cost))) = self.map.pop_first() {
                self.held -= cost;
                dropped += 1;
                Limit::Http2Streams.reached();
            }
        }
        let cost = size_of::<(u32, S, usize)>() + s.held_bytes();
        self.held += cost;
        if let Some((_, old)) = self.map.insert(id, (s, cost)) {
            self.held -= old;
        }
        dropped
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut S> {
        self.map.get_mut(&id).map(|(s, _)| s)
    }

    pub(super) fn contains(&self, id: u32) -> bool {
        self.map.contains_key(&id)
    }

    pub(super) fn remove(&mut self, id: u32) -> Option<S> {
        let (s, cost) = self.map.remove(&id)?;
        self.held -= cost;
        Some(s)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut S> {
        self.map.values_mut().map(|(s, _)| s)
    }

    /// Open stream ids, lowest first.
    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.map.keys().copied()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Forgets every stream; returns how many there were.
    pub(super) fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        self.held = 0;
        n
    }

    /// Bytes the open streams hold.
    pub(super) fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Text(String);
    impl Held for Text {
        fn held_bytes(&self) -> usize {
            self.0.len()
        }
    }

    #[test]
    fn the_oldest_stream_gives_way_and_bytes_balance() {
        let mut s = Streams::default();
        let before = Limit::Http2Streams.count();
        let mut dropped = 0;
        for id in 0..MAX_STREAMS as u32 + 5 {
            dropped += s.open(id * 2 + 1, Text("x".repeat(100)));
        }
        assert_eq!(dropped, 5);
        assert_eq!(s.len(), MAX_STREAMS);
        assert!(!s.contains(1) && !s.contains(9) && s.contains(11));
        assert!(Limit::Http2Streams.count() >= before + 5);
        assert!(s.held() >= MAX_STREAMS * 100);
        for id in 5..MAX_STREAMS as u32 + 5 {
            assert!(s.remove(id * 2 + 1).is_some());
        }
        assert_eq!(s.held(), 0);
        s.open(1, Text(String::new()));
        assert_eq!(s.clear(), 1);
        assert_eq!(s.held(), 0);
    }
}
