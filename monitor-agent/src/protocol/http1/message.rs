//! One direction's incremental message framing.
//!
//! `buf` is a bounded staging area for bytes that cannot be consumed in
//! place: a partial header block, the few bytes kept while searching for a
//! message start, or bytes that arrived in the same call right after a
//! header block. Body bytes are otherwise counted straight from the caller's
//! slice and never copied.

use super::chunked::Chunked;
use super::head::{self, BodyLen, Head, Parsed};
use super::resync::{self, TAIL_KEEP};
use super::staging::Staging;
use super::types::Side;

/// Validating every small append catches garbage before it fills the buffer;
/// past this size we only re-parse when a line ends, to avoid quadratic work.
const EAGER_PARSE_BYTES: usize = 64;

/// Running totals of the message currently being framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Acc {
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes: u64,
    pub truncated: bool,
}

#[derive(Debug)]
pub(super) enum Event {
    /// A header block was parsed; body framing starts now and may be
    /// overridden with [`Framer::set_body`] before the next step.
    Head {
        head: Head,
        start_ns: u64,
        head_bytes: u64,
    },
    /// The current message ended.
    Complete(Acc),
    /// Sync was lost; the partial message (if any) is gone.
    Lost {
        parse_error: bool,
        /// Some bytes of an unparsed header block were thrown away.
        partial_head: bool,
    },
    /// A plausible message start was found after losing sync.
    Resynced,
}

#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

#[derive(Debug)]
enum State {
    /// Expecting (or accumulating) a header block.
    Idle,
    Body(Body),
    Resync,
    /// After an upgrade or close nothing more is HTTP/1.
    Ignore,
}

enum Step {
    Emit(Event),
    Again,
    Wait,
}

#[derive(Debug)]
pub(super) struct Framer {
    side: Side,
    limit: usize,
    buf: Staging,
    /// `buf` holds bytes not yet looked at by the parser/scanner.
    dirty: bool,
    state: State,
    msg: Option<Acc>,
}

impl Framer {
    pub(super) fn new(side: Side, max_header_bytes: usize) -> Self {
        Framer {
            side,
            // Below this even a minimal head cannot fit; keep resync workable.
            limit: max_header_bytes.max(64),
            buf: Staging::default(),
            dirty: false,
            state: State::Idle,
            msg: None,
        }
    }

    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn release_spare(&mut self) {
        self.buf.release_spare();
    }

    /// Advances by at most one event; `None` means all input is consumed.
    pub(super) fn next(&mut self, input: &mut &[u8], ts: u64) -> Option<Event> {
        loop {
            let step = match self.state {
                State::Ignore => {
                    self.buf.clear();
                    *input = &[];
                    Step::Wait
                }
                State::Idle => self.step_idle(input, ts),
                State::Resync => self.step_resync(input, ts),
                State::Body(_) => self.step_body(input, ts),
            };
            match step {
                Step::Emit(ev) => return Some(ev),
                Step::Again => {}
                Step::Wait => return None,
            }
        }
    }

    /// Replaces the body framing chosen from the head alone.
    pub(super) fn set_body(&mut self, body: BodyLen) {
        if matches!(self.state, State::Body(_)) {
            self.state = State::Body(self.body_state(body));
        }
    }

    /// Bytes staged after the last message, handed over when the connection switches
    /// protocol.
    pub(super) fn take_staged(&mut self) -> Vec<u8> {
        let v = self.buf.bytes().to_vec();
        self.buf.clear();
        v
    }

    pub(super) fn ignore_rest(&mut self) {
        self.state = State::Ignore;
        self.buf.clear();
        self.msg = None;
    }

    /// `len` bytes at this point were not captured.
    pub(super) fn gap(&mut self, len: u64, ts: u64) -> Option<Event> {
        if len == 0 {
            return None;
        }
        match &mut self.state {
            State::Ignore => None,
            State::Resync => {
                // Bytes before the gap cannot combine with bytes after it.
                self.buf.clear();
                None
            }
            State::Idle => {
                let partial_head = !self.buf.is_empty();
                Some(self.lose_sync(false, partial_head))
            }
            State::Body(body) => {
                let absorbed = match body {
                    Body::Length(rem) if len <= *rem => {
                        *rem -= len;
                        true
                    }
                    Body::Length(_) => false,
                    Body::Chunked(c) => c.skip(len),
                    Body::UntilClose => true,
                };
                if !absorbed {
                    return Some(self.lose_sync(false, false));
                }
                if let Some(acc) = &mut self.msg {
                    acc.bytes = acc.bytes.saturating_add(len);
                    acc.end_ns = ts;
                    acc.truncated = true;
                }
                match self.state {
                    State::Body(Body::Length(0)) => Some(self.complete()),
                    _ => None,
                }
            }
        }
    }

    /// The connection ended: only a close-delimited body completes.
    pub(super) fn close(&mut self) -> Option<Event> {
        let ev = match self.state {
            State::Body(Body::UntilClose) => Some(self.complete()),
            _ => None,
        };
        self.ignore_rest();
        ev
    }

    fn step_idle(&mut self, input: &mut &[u8], ts: u64) -> Step {
        // Some clients send a stray CRLF after a body; that is not an error.
        let crlf = self.buf.bytes().iter().take_while(|b| is_crlf(**b)).count();
        self.buf.drain(crlf);
        if self.buf.is_empty() {
            let k = input.iter().take_while(|b| is_crlf(**b)).count();
            *input = input.get(k..).unwrap_or(&[]);
        }
        // The common case: a whole head at the start of the segment, parsed where it lies
        // instead of being staged first. Anything else goes through the staging area.
        if self.buf.is_empty() && !input.is_empty() {
            let direct = &input[..self.limit.min(input.len())];
            if let Parsed::Complete(n, head) = head::parse(self.side, direct) {
                *input = input.get(n..).unwrap_or(&[]);
                self.dirty = false;
                return Step::Emit(self.head_found(n, head, ts, ts));
            }
        }
        let take = self.limit.saturating_sub(self.buf.len()).min(input.len());
        if take > 0 {
            let (chunk, rest) = input.split_at(take);
            if chunk.contains(&b'\n') || self.buf.len() + take <= EAGER_PARSE_BYTES {
                self.dirty = true;
            }
            self.buf.push(chunk, ts);
            *input = rest;
        }
        if self.buf.len() >= self.limit {
            self.dirty = true;
        }
        if !self.dirty {
            return Step::Wait;
        }
        self.dirty = false;
        match head::parse(self.side, self.buf.bytes()) {
            Parsed::Partial if self.buf.len() >= self.limit => Step::Emit(self.parse_error()),
            Parsed::Partial => {
                if input.is_empty() {
                    Step::Wait
                } else {
                    Step::Again
                }
            }
            Parsed::Invalid => Step::Emit(self.parse_error()),
            Parsed::Complete(n, head) => {
                let start_ns = self.buf.front_ts(ts);
                self.buf.drain(n);
                Step::Emit(self.head_found(n, head, start_ns, ts))
            }
        }
    }

    /// A head of `n` bytes, whose first byte was captured at `start_ns`, is complete: its
    /// body comes next.
    fn head_found(&mut self, n: usize, head: Head, start_ns: u64, ts: u64) -> Event {
        self.msg = Some(Acc {
            start_ns,
            end_ns: ts,
            bytes: n as u64,
            truncated: false,
        });
        let body = match &head {
            Head::Request(r) => r.body,
            Head::Response(r) => r.body,
        };
        self.state = State::Body(self.body_state(body));
        Event::Head {
            head,
            start_ns,
            head_bytes: n as u64,
        }
    }

    fn step_resync(&mut self, input: &mut &[u8], ts: u64) -> Step {
        if !self.dirty {
            if input.is_empty() {
                return Step::Wait;
            }
            let take = self.limit.saturating_sub(self.buf.len()).min(input.len());
            let (chunk, rest) = input.split_at(take);
            self.buf.push(chunk, ts);
            *input = rest;
        }
        self.dirty = false;
        if let Some(p) = resync::find_start(self.side, self.buf.bytes()) {
            self.buf.drain(p);
            self.state = State::Idle;
            self.dirty = true;
            Step::Emit(Event::Resynced)
        } else {
            let excess = self.buf.len().saturating_sub(TAIL_KEEP);
            self.buf.drain(excess);
            Step::Again
        }
    }

    fn step_body(&mut self, input: &mut &[u8], ts: u64) -> Step {
        let from_buf = !self.buf.is_empty();
        let data: &[u8] = if from_buf { self.buf.bytes() } else { input };
        let (used, outcome) = match &mut self.state {
            State::Body(Body::Length(rem)) => {
                let n = (*rem).min(data.len() as u64);
                *rem -= n;
                (n as usize, Ok(*rem == 0))
            }
            State::Body(Body::Chunked(c)) => {
                if data.is_empty() {
                    (0, Ok(false))
                } else {
                    c.feed(data)
                }
            }
            State::Body(Body::UntilClose) => (data.len(), Ok(false)),
            _ => (0, Ok(false)),
        };
        if from_buf {
            self.buf.drain(used);
        } else {
            *input = input.get(used..).unwrap_or(&[]);
        }
        if used > 0 {
            if let Some(acc) = &mut self.msg {
                acc.bytes = acc.bytes.saturating_add(used as u64);
                acc.end_ns = ts;
            }
        }
        match outcome {
            Ok(true) => Step::Emit(self.complete()),
            Ok(false) if self.buf.is_empty() && input.is_empty() => Step::Wait,
            Ok(false) => Step::Again,
            Err(_) => {
                // The offending byte may itself start the next message, so
                // scan from it rather than past it.
                let ev = self.lose_sync(true, false);
                if from_buf {
                    self.dirty = true;
                }
                Step::Emit(ev)
            }
        }
    }

    fn body_state(&self, body: BodyLen) -> Body {
        match body {
            BodyLen::None => Body::Length(0),
            BodyLen::Length(n) => Body::Length(n),
            BodyLen::Chunked => Body::Chunked(Chunked::new(self.limit)),
            BodyLen::UntilClose => Body::UntilClose,
        }
    }

    fn complete(&mut self) -> Event {
        self.state = State::Idle;
        self.dirty = !self.buf.is_empty();
        let acc = self.msg.take().unwrap_or(Acc {
            start_ns: 0,
            end_ns: 0,
            bytes: 0,
            truncated: false,
        });
        Event::Complete(acc)
    }

    /// A bad header block: skip its first byte and look for the next start
    /// among the bytes already staged.
    fn parse_error(&mut self) -> Event {
        self.msg = None;
        self.state = State::Resync;
        self.buf.drain(1);
        self.dirty = true;
        Event::Lost {
            parse_error: true,
            partial_head: false,
        }
    }

    /// Drops the current message. Staged bytes are kept only for a parse
    /// error inside a body, where they are contiguous with what follows.
    fn lose_sync(&mut self, parse_error: bool, partial_head: bool) -> Event {
        self.msg = None;
        self.state = State::Resync;
        if !parse_error {
            self.buf.clear();
        }
        self.dirty = false;
        Event::Lost {
            parse_error,
            partial_head,
        }
    }
}

fn is_crlf(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}
