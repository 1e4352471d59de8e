//! Pairs the two framed directions into exchanges.
//!
//! Pairing rule after loss of sync (chosen so a call is never invented or
//! mis-paired, at the price of dropping some):
//! * Response stream loses sync (gap it cannot absorb, garbage): every
//!   request still waiting for a response is dropped and counted, because
//!   any of their responses may have been in the lost bytes. Requests that
//!   arrive afterwards pair normally. Only a loss between two responses with
//!   at most one request waiting is settled by time instead (see `pending`).
//! * Request stream loses sync: the partial request is dropped (counted) and
//!   a barrier is queued; see `pending` for how responses pass it.

use super::head::{BodyLen, Head, RequestHead, ResponseHead};
use super::message::{Acc, Event, Framer};
use super::pending::{Assign, Pending, PendingRequest, ResponseInfo};
use monitor_common::Direction;

use super::types::{Exchange, Limits, Side};
use crate::protocol::{
    exchange::Protocol,
    session::{ProtocolSession, SessionStats, Switch, Upgrade},
};
use crate::text::Text;

/// Reassembles one TCP connection's HTTP/1.x traffic.
#[derive(Debug)]
pub struct Session {
    req: Framer,
    resp: Framer,
    pending: Pending,
    /// Request whose head is parsed but whose body is still arriving.
    req_in_progress: Option<u64>,
    resp_cur: Option<CurrentResponse>,
    /// 1xx responses seen ahead of the final one; folded into it.
    interim: Option<Acc>,
    stats: SessionStats,
    upgraded: bool,
    /// Response-side bytes that followed the `101 Switching Protocols` head: the first
    /// bytes of the new protocol.
    after_upgrade: Vec<u8>,
    /// The kernel direction requests travel in.
    requests: Direction,
}

#[derive(Debug)]
struct CurrentResponse {
    status: u16,
    interim: bool,
    assign: Assign,
    upgrade: bool,
    content_type: Option<Text>,
    head_bytes: u64,
}

impl Session {
    pub fn new(limits: Limits) -> Self {
        Session {
            req: Framer::new(Side::Request, limits.max_header_bytes),
            resp: Framer::new(Side::Response, limits.max_header_bytes),
            pending: Pending::new(limits.max_pending_requests),
            req_in_progress: None,
            resp_cur: None,
            interim: None,
            stats: SessionStats::default(),
            upgraded: false,
            after_upgrade: Vec::new(),
            requests: Direction::Egress,
        }
    }

    /// The session of a connection whose requests travel in `dir` (the observed process
    /// writes them when it is the client).
    #[must_use]
    pub fn with_requests(mut self, dir: Direction) -> Self {
        self.requests = dir;
        self
    }

    fn side(&self, dir: Direction) -> Side {
        if dir == self.requests {
            Side::Request
        } else {
            Side::Response
        }
    }

    /// Bytes of one stream, in order. `ts_ns` is the capture timestamp of these bytes.
    pub fn on_data(&mut self, side: Side, data: &[u8], ts_ns: u64, out: &mut Vec<Exchange>) {
        if self.upgraded {
            return;
        }
        let mut input = data;
        while let Some(ev) = self.framer(side).next(&mut input, ts_ns) {
            self.handle(side, ev, ts_ns, out);
            if self.upgraded {
                if side == Side::Response {
                    self.after_upgrade.extend_from_slice(input);
                }
                return;
            }
        }
    }

    /// The response bytes that followed a protocol switch in the same segment.
    fn take_after_upgrade(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.after_upgrade)
    }

    /// `len` bytes of `side`'s stream were not captured at this point.
    pub fn on_gap(&mut self, side: Side, len: u64, ts_ns: u64, out: &mut Vec<Exchange>) {
        self.stats.gaps += 1;
        if self.upgraded {
            return;
        }
        if let Some(ev) = self.framer(side).gap(len, ts_ns) {
            self.handle(side, ev, ts_ns, out);
        }
    }

    /// The connection closed: completes a close-delimited response; requests
    /// still waiting for a response are dropped (counted).
    pub fn on_close(&mut self, ts_ns: u64, out: &mut Vec<Exchange>) {
        if let Some(ev) = self.resp.close() {
            self.handle(Side::Response, ev, ts_ns, out);
        }
        self.req.close();
        self.req_in_progress = None;
        self.resp_cur = None;
        self.interim = None;
        for r in self.pending.drain() {
            if r.response.is_some() {
                // Answered, but the request body never finished.
                push_answered(r, true, out);
            } else {
                self.stats.dropped_requests += 1;
            }
        }
    }

    /// True after a 101 Switching Protocols (or a successful CONNECT 2xx):
    /// later bytes are not HTTP/1 and are ignored.
    pub fn upgraded(&self) -> bool {
        self.upgraded
    }

    fn framer(&mut self, side: Side) -> &mut Framer {
        match side {
            Side::Request => &mut self.req,
            Side::Response => &mut self.resp,
        }
    }

    fn handle(&mut self, side: Side, ev: Event, ts_ns: u64, out: &mut Vec<Exchange>) {
        match ev {
            Event::Resynced => self.stats.resyncs += 1,
            Event::Lost {
                parse_error,
                partial_head,
            } => {
                if parse_error {
                    self.stats.parse_errors += 1;
                }
                match side {
                    Side::Request => self.request_lost(partial_head, out),
                    Side::Response => self.response_lost(partial_head, ts_ns),
                }
            }
            Event::Head {
                head: Head::Request(h),
                start_ns,
                head_bytes,
            } => self.request_head(h, start_ns, head_bytes),
            Event::Head {
                head: Head::Response(h),
                start_ns,
                head_bytes,
            } => self.response_head(h, start_ns, head_bytes),
            Event::Complete(acc) => match side {
                Side::Request => self.request_complete(acc, out),
                Side::Response => self.response_complete(acc, out),
            },
        }
    }

    fn request_head(&mut self, h: RequestHead, start_ns: u64, head_bytes: u64) {
        let id = self.pending.next_id();
        let req = PendingRequest {
            id,
            method: h.method,
            target: h.target,
            host: h.host,
            auth: h.auth,
            content_type: h.content_type,
            upgrade_h2c: h.upgrade_h2c,
            start_ns,
            end_ns: start_ns,
            bytes: head_bytes,
            head_bytes,
            truncated: false,
            complete: false,
            response: None,
        };
        self.stats.dropped_requests += self.pending.push(req);
        self.req_in_progress = Some(id);
    }

    fn request_complete(&mut self, acc: Acc, out: &mut Vec<Exchange>) {
        let Some(id) = self.req_in_progress.take() else {
            return;
        };
        let Some(r) = self.pending.get_mut(id) else {
            return;
        };
        r.end_ns = acc.end_ns;
        r.bytes = acc.bytes;
        r.truncated = acc.truncated;
        r.complete = true;
        if r.response.is_some() {
            if let Some(r) = self.pending.remove(id) {
                push_answered(r, false, out);
            }
        }
    }

    fn request_lost(&mut self, partial_head: bool, out: &mut Vec<Exchange>) {
        match self.req_in_progress.take() {
            Some(id) => match self.pending.remove(id) {
                Some(r) if r.response.is_some() => push_answered(r, true, out),
                Some(_) => self.stats.dropped_requests += 1,
                None => {}
            },
            None if partial_head => self.stats.dropped_requests += 1,
            None => {}
        }
        self.stats.dropped_requests += self.pending.push_barrier();
    }

    fn response_head(&mut self, h: ResponseHead, start_ns: u64, head_bytes: u64) {
        let interim = (100..200).contains(&h.status) && h.status != 101;
        if interim {
            self.interim.get_or_insert(Acc {
                start_ns,
                end_ns: start_ns,
                bytes: 0,
                truncated: false,
            });
            self.resp_cur = Some(CurrentResponse {
                status: h.status,
                interim: true,
                assign: Assign::Unmatched,
                upgrade: false,
                content_type: None,
                head_bytes,
            });
            return;
        }
        let first_start = self.interim.map_or(start_ns, |i| i.start_ns);
        self.stats.dropped_requests += self.pending.settle_response_loss();
        let assign = self.pending.assign(first_start);
        let mut upgrade = h.status == 101;
        match &assign {
            Assign::Unmatched => self.stats.unmatched_responses += 1,
            Assign::Evicted => {}
            Assign::Request { method, .. } => {
                if method == "HEAD" {
                    self.resp.set_body(BodyLen::None);
                } else if method == "CONNECT" && (200..300).contains(&h.status) {
                    self.resp.set_body(BodyLen::None);
                    upgrade = true;
                }
            }
        }
        self.resp_cur = Some(CurrentResponse {
            status: h.status,
            interim: false,
            assign,
            upgrade,
            content_type: h.content_type,
            head_bytes,
        });
    }

    fn response_complete(&mut self, acc: Acc, out: &mut Vec<Exchange>) {
        let Some(cur) = self.resp_cur.take() else {
            return;
        };
        if cur.interim {
            if let Some(i) = &mut self.interim {
                i.bytes = i.bytes.saturating_add(acc.bytes);
                i.end_ns = acc.end_ns;
                i.truncated |= acc.truncated;
            }
            return;
        }
        let interim = self.interim.take();
        let info = ResponseInfo {
            status: cur.status,
            start_ns: interim.map_or(acc.start_ns, |i| i.start_ns),
            end_ns: acc.end_ns,
            bytes: acc.bytes.saturating_add(interim.map_or(0, |i| i.bytes)),
            truncated: acc.truncated || interim.is_some_and(|i| i.truncated),
            content_type: cur.content_type,
            body_bytes: acc.bytes.saturating_sub(cur.head_bytes),
        };
        if let Assign::Request { id, .. } = cur.assign {
            if let Some(r) = self.pending.answer(id, info) {
                push_answered(r, false, out);
            }
        }
        if cur.upgrade {
            self.upgraded = true;
            self.after_upgrade = self.resp.take_staged();
            self.req.ignore_rest();
            self.resp.ignore_rest();
        }
    }

    fn response_lost(&mut self, partial_head: bool, ts_ns: u64) {
        let mid_response = partial_head || self.resp_cur.is_some() || self.interim.is_some();
        self.resp_cur = None;
        self.interim = None;
        self.stats.dropped_requests += self.pending.response_lost(mid_response, ts_ns);
    }
}

fn push_answered(r: PendingRequest, request_truncated: bool, out: &mut Vec<Exchange>) {
    if let Some(info) = r.response.clone() {
        let mut ex = exchange(r, info);
        ex.request_truncated |= request_truncated;
        out.push(ex);
    }
}

fn exchange(r: PendingRequest, info: ResponseInfo) -> Exchange {
    Exchange {
        method: r.method,
        target: r.target,
        host: r.host,
        status: info.status,
        request_start_ns: r.start_ns,
        request_end_ns: r.end_ns,
        response_start_ns: info.start_ns,
        response_end_ns: info.end_ns,
        request_bytes: r.bytes,
        response_bytes: info.bytes,
        request_body_bytes: r.bytes.saturating_sub(r.head_bytes),
        response_body_bytes: info.body_bytes,
        request_truncated: r.truncated,
        response_truncated: info.truncated,
        auth: r.auth.map(|a| *a).unwrap_or_default(),
        request_content_type: r.content_type,
        response_content_type: info.content_type,
        upgrade_h2c: r.upgrade_h2c && info.status == 101,
        ..Default::default()
    }
}

impl ProtocolSession for Session {
    fn protocol(&self) -> Protocol {
        Protocol::Http1
    }

    fn data(&mut self, dir: Direction, bytes: &[u8], ts_ns: u64, out: &mut Vec<Exchange>) {
        self.on_data(self.side(dir), bytes, ts_ns, out);
    }

    fn gap(&mut self, dir: Direction, len: u64, ts_ns: u64, out: &mut Vec<Exchange>) {
        self.on_gap(self.side(dir), len, ts_ns, out);
    }

    fn close(&mut self, ts_ns: u64, out: &mut Vec<Exchange>) {
        self.on_close(ts_ns, out);
    }

    fn stats(&self) -> &SessionStats {
        &self.stats
    }

    fn buffered_bytes(&self) -> usize {
        self.req.buffered() + self.resp.buffered() + self.pending.held_bytes()
    }

    fn requests_direction(&self) -> Option<Direction> {
        Some(self.requests)
    }

    fn release_spare(&mut self) {
        self.req.release_spare();
        self.resp.release_spare();
        self.pending.release_spare();
    }

    fn switch(&mut self, out: &mut Vec<Exchange>) -> Switch {
        if !self.upgraded {
            return Switch::Stay;
        }
        let after = self.take_after_upgrade();
        match out.iter().position(|x| x.upgrade_h2c) {
            Some(i) => Switch::H2c(Box::new(Upgrade {
                request: out.remove(i),
                after,
                requests: self.requests,
            })),
            None => Switch::Unfollowed,
        }
    }
}
