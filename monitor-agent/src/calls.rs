//! The most recent calls, for `GET /api/v1/calls` and `monitor-agent calls --follow`:
//! a bounded ring plus a broadcast for live followers.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::{recent::Recent, record::CallRecord};

/// Live followers that fall this far behind skip ahead rather than hold memory.
const FOLLOW_BACKLOG: usize = 4096;

pub(crate) struct RecentCalls(Recent<CallRecord>);

/// Which calls a query or a follower wants.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallFilter {
    /// Either side's service.
    pub service: Option<String>,
    pub route: Option<String>,
}

impl CallFilter {
    pub(crate) fn matches(&self, c: &CallRecord) -> bool {
        self.service.as_deref().is_none_or(|s| {
            c.server.service.as_deref() == Some(s) || c.client.service.as_deref() == Some(s)
        }) && self.route.as_deref().is_none_or(|r| c.route == r)
    }
}

impl RecentCalls {
    pub(crate) fn new(capacity: usize) -> RecentCalls {
        RecentCalls(Recent::new(capacity, FOLLOW_BACKLOG))
    }

    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    pub(crate) fn push_all(&self, calls: Vec<Arc<CallRecord>>) {
        self.0.push_all(calls);
    }

    /// The newest `limit` matching calls, oldest first.
    pub(crate) fn latest(&self, limit: usize, f: &CallFilter) -> Vec<Arc<CallRecord>> {
        self.0.latest(limit, |c| f.matches(c))
    }

    pub(crate) fn follow(&self) -> broadcast::Receiver<Arc<CallRecord>> {
        self.0.follow()
    }
}
