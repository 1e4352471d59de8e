//! FIFO of requests awaiting responses, plus the markers that keep pairing
//! honest after something was lost.
//!
//! * `Barrier`: the request stream lost sync here, so an unknown number of
//!   requests (possibly zero) is missing. A response reaching a barrier is
//!   attributed to the missing requests (unmatched) when it started before
//!   the next known request did, since it cannot answer a request not yet
//!   sent. The first response starting at or after that request lifts the
//!   barrier. This relies on the client not pipelining across the loss.
//! * `Skip`: requests evicted by `max_pending_requests`. Exactly one response
//!   is owed per evicted request, so those are discarded by count.
//! * The response stream lost sync between two responses, with at most one
//!   request waiting. If a request was sent after the loss, the waiting one's
//!   response was in it (the client waited for it): dropped. Otherwise the
//!   next response answers it, if it was sent before that response began. The
//!   same assumption as barriers; a loss that swallowed nothing (a kernel that
//!   forgot a connection's state and picked it up again) so costs no call.

use std::collections::VecDeque;

use crate::text::Text;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct ResponseInfo {
    pub status: u16,
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes: u64,
    pub truncated: bool,
    pub content_type: Option<Text>,
    /// The final response's body (no head, no interim responses).
    pub body_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct PendingRequest {
    pub id: u64,
    pub method: Text,
    pub target: String,
    pub host: Option<Text>,
    /// `None` for no credential.
    pub auth: Option<Box<crate::protocol::credentials::Auth>>,
    pub content_type: Option<Text>,
    pub upgrade_h2c: bool,
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes: u64,
    /// Start line and headers, so the body size is `bytes - head_bytes`.
    pub head_bytes: u64,
    pub truncated: bool,
    /// The request body is fully seen.
    pub complete: bool,
    /// A final response that arrived before the request finished.
    pub response: Option<ResponseInfo>,
}

#[derive(Debug)]
enum Entry {
    Barrier,
    Request(PendingRequest),
    Skip { count: u64, first_start_ns: u64 },
}

/// Who a final response answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Assign {
    Request {
        id: u64,
        method: Text,
    },
    /// Answers a request evicted for overflow (already counted as dropped).
    Evicted,
    Unmatched,
}

#[derive(Debug)]
pub(super) struct Pending {
    entries: VecDeque<Entry>,
    max_requests: usize,
    live: usize,
    next_id: u64,
    /// Request currently being answered; never evicted under its response.
    assigned: Option<u64>,
    /// When the response stream lost sync between two responses, until the next.
    response_loss_ns: Option<u64>,
}

impl Pending {
    pub(super) fn new(max_requests: usize) -> Self {
        Pending {
            entries: VecDeque::new(),
            max_requests: max_requests.max(1),
            live: 0,
            next_id: 0,
            assigned: None,
            response_loss_ns: None,
        }
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Queues a request; returns how many old requests were evicted.
    pub(super) fn push(&mut self, req: PendingRequest) -> u64 {
        let mut evicted = 0;
        while self.live >= self.max_requests && self.evict_oldest() {
            evicted += 1;
        }
        crate::limits::Limit::Http1Pending.reached_by(evicted);
        self.entries.push_back(Entry::Request(req));
        self.live += 1;
        evicted
    }

    /// Gives back the queue's slots when no request waits (a keep-alive connection
    /// between calls).
    pub(super) fn release_spare(&mut self) {
        if self.entries.is_empty() {
            self.entries = VecDeque::new();
        }
    }

    /// Bytes the queued requests hold (their text and their slots), for the node's parser
    /// memory budget.
    pub(super) fn held_bytes(&self) -> usize {
        let opt = |v: &Option<Text>| v.as_ref().map_or(0, |t| t.len());
        self.entries
            .iter()
            .map(|e| {
                size_of::<Entry>()
                    + match e {
                        Entry::Request(r) => {
                            r.method.len() + r.target.len() + opt(&r.host) + opt(&r.content_type)
                        }
                        _ => 0,
                    }
            })
            .sum()
    }

    /// Marks a loss on the request stream; returns how many requests were dropped. A
    /// stream that keeps losing sync while nothing is answered would pile up markers
    /// (barriers, and the evicted slots between them) without end: past twice the request
    /// cap, the queue is given up as out of sync (its unanswered requests dropped, counted
    /// in `http1_pending_requests`), and one barrier stands for all of it.
    pub(super) fn push_barrier(&mut self) -> u64 {
        if matches!(self.entries.back(), Some(Entry::Barrier)) {
            return 0;
        }
        let mut dropped = 0;
        if self.entries.len() - self.live > 2 * self.max_requests {
            dropped = self.drop_unanswered();
            crate::limits::Limit::Http1Pending.reached();
        }
        self.entries.push_back(Entry::Barrier);
        dropped
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut PendingRequest> {
        self.entries.iter_mut().find_map(|e| match e {
            Entry::Request(r) if r.id == id => Some(r),
            _ => None,
        })
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<PendingRequest> {
        let pos = self
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Request(r) if r.id == id))?;
        if self.assigned == Some(id) {
            self.assigned = None;
        }
        match self.entries.remove(pos) {
            Some(Entry::Request(r)) => {
                self.live = self.live.saturating_sub(1);
                Some(r)
            }
            _ => None,
        }
    }

    /// Decides which request a final response answers. Barriers and evicted
    /// slots are consumed here, the request itself only once it is answered.
    pub(super) fn assign(&mut self, response_start_ns: u64) -> Assign {
        loop {
            match self.entries.front_mut() {
                None => return Assign::Unmatched,
                Some(Entry::Skip { count, .. }) => {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.entries.pop_front();
                    }
                    return Assign::Evicted;
                }
                Some(Entry::Request(r)) => {
                    if r.response.is_some() {
                        return Assign::Unmatched;
                    }
                    self.assigned = Some(r.id);
                    return Assign::Request {
                        id: r.id,
                        method: r.method.clone(),
                    };
                }
                Some(Entry::Barrier) => {
                    let next_start = match self.entries.get(1) {
                        Some(Entry::Request(r)) => r.start_ns,
                        Some(Entry::Skip { first_start_ns, .. }) => *first_start_ns,
                        _ => return Assign::Unmatched,
                    };
                    if response_start_ns < next_start {
                        return Assign::Unmatched;
                    }
                    self.entries.pop_front();
                }
            }
        }
    }

    /// Records the final response for `id`. Returns the request once both
    /// halves are complete; a request still sending its body keeps waiting.
    pub(super) fn answer(&mut self, id: u64, info: ResponseInfo) -> Option<PendingRequest> {
        self.assigned = None;
        let req = self.get_mut(id)?;
        req.response = Some(info);
        if req.complete {
            self.remove(id)
        } else {
            None
        }
    }

    /// The response stream lost sync at `ts_ns` (`mid_response`: inside a response).
    /// Between two responses, with at most one request waiting, the next response
    /// settles it (`settle_response_loss`). Otherwise any unanswered request may have had
    /// its response in the lost bytes, so none of them can be paired safely. Returns how
    /// many requests were dropped.
    pub(super) fn response_lost(&mut self, mid_response: bool, ts_ns: u64) -> u64 {
        let waiting: u64 = self
            .entries
            .iter()
            .map(|e| match e {
                Entry::Request(r) => u64::from(r.response.is_none()),
                Entry::Skip { count, .. } => *count,
                Entry::Barrier => 0,
            })
            .sum();
        if !mid_response && self.assigned.is_none() && waiting <= 1 {
            self.response_loss_ns.get_or_insert(ts_ns);
            return 0;
        }
        self.drop_unanswered()
    }

    /// Keeps only requests already answered (their bodies still arriving); returns how
    /// many were dropped.
    fn drop_unanswered(&mut self) -> u64 {
        let before = self.live;
        self.entries
            .retain(|e| matches!(e, Entry::Request(r) if r.response.is_some()));
        self.live = self.entries.len();
        self.assigned = None;
        self.response_loss_ns = None;
        (before - self.live) as u64
    }

    /// Before the first response after a loss between responses: a request waiting since
    /// before the loss, when another was sent after it, had its response lost (dropped,
    /// counted in the return value). A barrier then keeps the response from answering a
    /// request sent after it began.
    pub(super) fn settle_response_loss(&mut self) -> u64 {
        let Some(loss) = self.response_loss_ns.take() else {
            return 0;
        };
        let unanswered_since = |e: &Entry, after: bool| matches!(e, Entry::Request(r) if r.response.is_none() && (r.start_ns > loss) == after);
        let mut dropped = 0;
        if self.entries.iter().any(|e| unanswered_since(e, true)) {
            let before = self.entries.len();
            self.entries.retain(|e| !unanswered_since(e, false));
            dropped = (before - self.entries.len()) as u64;
            self.live -= dropped as usize;
        }
        if !matches!(self.entries.front(), Some(Entry::Barrier)) {
            self.entries.push_front(Entry::Barrier);
        }
        dropped
    }

    /// Empties the queue (connection closed).
    pub(super) fn drain(&mut self) -> Vec<PendingRequest> {
        self.live = 0;
        self.assigned = None;
        self.entries
            .drain(..)
            .filter_map(|e| match e {
                Entry::Request(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn evict_oldest(&mut self) -> bool {
        let assigned = self.assigned;
        let Some(pos) = self
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Request(r) if Some(r.id) != assigned))
        else {
            return false;
        };
        let start = match self.entries.get(pos) {
            Some(Entry::Request(r)) => r.start_ns,
            _ => return false,
        };
        self.live = self.live.saturating_sub(1);
        if let Some(Entry::Skip { count, .. }) =
            pos.checked_sub(1).and_then(|p| self.entries.get_mut(p))
        {
            *count += 1;
            self.entries.remove(pos);
        } else if let Some(e) = self.entries.get_mut(pos) {
            *e = Entry::Skip {
                count: 1,
                first_start_ns: start,
            };
        }
        true
    }
}
