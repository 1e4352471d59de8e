//! The most recent calls, for `GET /api/v1/calls` and `monitor-agent calls --follow`:
//! a bounded ring plus a broadcast for live followers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

use crate::record::CallRecord;

/// Live followers that fall this far behind skip ahead rather than hold memory.
const FOLLOW_BACKLOG: usize = 4096;

pub struct RecentCalls {
    ring: Mutex<VecDeque<Arc<CallRecord>>>,
    capacity: usize,
    live: broadcast::Sender<Arc<CallRecord>>,
}

/// Which calls a query or a follower wants.
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    /// Either side's service.
    pub service: Option<String>,
    pub route: Option<String>,
}

impl CallFilter {
    pub fn matches(&self, c: &CallRecord) -> bool {
        self.service.as_deref().is_none_or(|s| {
            c.server.service.as_deref() == Some(s) || c.client.service.as_deref() == Some(s)
        }) && self.route.as_deref().is_none_or(|r| c.route == r)
    }
}

impl RecentCalls {
    pub fn new(capacity: usize) -> RecentCalls {
        RecentCalls {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16))),
            capacity: capacity.max(1),
            live: broadcast::channel(FOLLOW_BACKLOG).0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn push_all(&self, calls: Vec<CallRecord>) {
        if calls.is_empty() {
            return;
        }
        let followed = self.live.receiver_count() > 0;
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        for c in calls {
            let c = Arc::new(c);
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            if followed {
                let _ = self.live.send(c.clone());
            }
            ring.push_back(c);
        }
    }

    /// The newest `limit` matching calls, oldest first.
    pub fn latest(&self, limit: usize, f: &CallFilter) -> Vec<Arc<CallRecord>> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<CallRecord>> = ring
            .iter()
            .rev()
            .filter(|c| f.matches(c))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    pub fn follow(&self) -> broadcast::Receiver<Arc<CallRecord>> {
        self.live.subscribe()
    }
}
