//! A bounded ring of the most recent items plus a broadcast of new ones: what the query
//! API serves for recent calls and violations, and what `--follow` streams.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

pub(crate) struct Recent<T> {
    ring: Mutex<VecDeque<Arc<T>>>,
    capacity: usize,
    live: broadcast::Sender<Arc<T>>,
}

impl<T> Recent<T> {
    /// `backlog`: how far a follower may fall behind before it skips ahead rather than
    /// hold memory.
    pub(crate) fn new(capacity: usize, backlog: usize) -> Recent<T> {
        Recent {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16))),
            capacity: capacity.max(1),
            live: broadcast::channel(backlog).0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds items, oldest first, dropping the oldest kept ones beyond the capacity. They
    /// come shared, so a call reaches the ring without being copied.
    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = Arc<T>>) {
        let followed = self.live.receiver_count() > 0;
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        for item in items {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            if followed {
                let _ = self.live.send(item.clone());
            }
            ring.push_back(item);
        }
    }

    /// The newest `limit` items that `keep` accepts, oldest first.
    pub(crate) fn latest(&self, limit: usize, keep: impl Fn(&T) -> bool) -> Vec<Arc<T>> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<T>> = ring
            .iter()
            .rev()
            .filter(|x| keep(x))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    pub(crate) fn follow(&self) -> broadcast::Receiver<Arc<T>> {
        self.live.subscribe()
    }
}
