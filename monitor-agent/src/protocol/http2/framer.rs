//! Splits one direction of a connection into HTTP/2 frames.
//!
//! Frame lengths make HTTP/2 easy to follow through capture gaps: a gap inside a DATA
//! payload only shortens what is left to skip, so the next frame is still found. Only
//! frames whose payload matters (header blocks, RST_STREAM, SETTINGS, GOAWAY) are kept;
//! DATA is counted and never copied. When a gap swallows a frame boundary the framer waits
//! for a later segment that starts with a believable chain of frame headers.

use super::frame::{
    FrameHeader, CONTINUATION, DATA, DEFAULT_MAX_FRAME_LEN, FLAG_PADDED, GOAWAY, HEADERS,
    HEADER_LEN, PREFACE, PUSH_PROMISE, RST_STREAM, SETTINGS,
};

/// Largest frame payload kept in memory; a header block frame beyond it is treated as lost.
const KEEP_MAX: usize = 256 * 1024;

#[derive(Debug)]
pub(super) enum Event<'a> {
    /// A frame whose payload matters, complete; `ts_ns` is when its last octet was seen.
    Frame {
        head: FrameHeader,
        payload: &'a [u8],
        ts_ns: u64,
    },
    /// A DATA frame has passed; its payload was counted, not kept. `body` excludes padding
    /// (when the pad length octet itself was lost, the padding is counted as body).
    /// `lost`: part of the payload went by in a gap.
    Data {
        head: FrameHeader,
        body: u32,
        ts_ns: u64,
        lost: bool,
    },
    /// A frame whose payload matters was partly lost to a gap.
    Lost { head: FrameHeader },
    /// A frame header that breaks the protocol's rules; the frame is skipped by its length.
    Malformed { head: FrameHeader },
    /// Frame boundaries are lost until a later segment starts with believable frames.
    Unaligned { parse_error: bool },
    /// Frame boundaries were found again at the start of a segment.
    Realigned,
}

#[derive(Debug)]
enum State {
    /// Expecting the client preface (the client side of a connection seen from its start).
    Preface { matched: usize },
    /// Between frames; `have` octets of the next header are in `head`.
    Header { have: usize },
    /// Collecting the payload of a frame that matters.
    Keep { head: FrameHeader },
    /// Passing over a payload; `pad` is the DATA pad length once its octet was seen;
    /// `lost` once part of the payload went by in a gap.
    Skip {
        head: FrameHeader,
        remaining: u32,
        pad: Option<u8>,
        lost: bool,
    },
    /// Lost; waiting for a segment that starts at a frame boundary.
    Unaligned,
}

#[derive(Debug)]
pub(super) struct Framer {
    state: State,
    head: [u8; HEADER_LEN],
    keep: Vec<u8>,
    /// Largest frame the receiving peer accepts (its SETTINGS_MAX_FRAME_SIZE).
    max_len: u32,
}

impl Framer {
    /// A direction seen from its first octet; `preface` for the client's side.
    pub(super) fn at_start(preface: bool) -> Framer {
        Framer::with(if preface {
            State::Preface { matched: 0 }
        } else {
            State::Header { have: 0 }
        })
    }

    /// A direction joined at an unknown point.
    pub(super) fn unaligned() -> Framer {
        Framer::with(State::Unaligned)
    }

    fn with(state: State) -> Framer {
        Framer {
            state,
            head: [0; HEADER_LEN],
            keep: Vec::new(),
            max_len: DEFAULT_MAX_FRAME_LEN,
        }
    }

    pub(super) fn set_max_len(&mut self, n: u32) {
        self.max_len = n.clamp(DEFAULT_MAX_FRAME_LEN, super::frame::MAX_FRAME_LEN);
    }

    pub(super) fn buffered(&self) -> usize {
        self.keep.capacity()
    }

    /// Gives back the room of a frame that is no longer being gathered.
    pub(super) fn release_spare(&mut self) {
        if self.keep.is_empty() {
            self.keep = Vec::new();
        }
    }

    /// One captured segment of this direction, in stream order.
    pub(super) fn feed(&mut self, mut input: &[u8], ts_ns: u64, f: &mut dyn FnMut(Event<'_>)) {
        if matches!(self.state, State::Unaligned) {
            let Some(rest) = self.realign(input) else {
                return;
            };
            input = rest;
            f(Event::Realigned);
        }
        while !input.is_empty() {
            match &mut self.state {
                State::Unaligned => return,
                State::Preface { matched } => {
                    let want = &PREFACE[*matched..];
                    let n = want.len().min(input.len());
                    if input[..n] != want[..n] {
                        self.lose(true, f);
                        return;
                    }
                    *matched += n;
                    input = &input[n..];
                    if *matched == PREFACE.len() {
                        self.state = State::Header { have: 0 };
                    }
                }
                State::Header { have } => {
                    let n = (HEADER_LEN - *have).min(input.len());
                    self.head[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    input = &input[n..];
                    if *have == HEADER_LEN {
                        let head = FrameHeader::parse(&self.head);
                        self.begin(head, ts_ns, f);
                    }
                }
                State::Keep { head } => {
                    let head = *head;
                    input = self.payload(head, input, ts_ns, f);
                }
                State::Skip {
                    head,
                    remaining,
                    pad,
                    ..
                } => {
                    if head.kind == DATA && pad.is_none() && head.has(FLAG_PADDED) {
                        *pad = Some(input[0]);
                    }
                    let n = (*remaining as usize).min(input.len());
                    *remaining -= n as u32;
                    input = &input[n..];
                    if *remaining == 0 {
                        self.finish_skip(ts_ns, f);
                    }
                }
            }
        }
    }

    /// Where frames start in a segment of a direction that lost its place, if they do;
    /// the framer is aligned again from there.
    fn realign<'a>(&mut self, input: &'a [u8]) -> Option<&'a [u8]> {
        let rest = if let Some(rest) = input.strip_prefix(PREFACE.as_slice()) {
            // The preface only ever starts a connection: frames follow it.
            rest
        } else if starts_with_frames(input, self.max_len) {
            input
        } else {
            // The last frames of a write the kernel cut: its tail ends on a frame
            // boundary, so a chain of whole frames may end exactly where it does.
            &input[frames_ending_at_end(input, self.max_len)?..]
        };
        self.state = State::Header { have: 0 };
        Some(rest)
    }

    /// Takes the payload of the frame `head` from `input`, handing the frame to `f` once it
    /// is whole; returns the bytes after what was taken.
    fn payload<'a>(
        &mut self,
        head: FrameHeader,
        input: &'a [u8],
        ts_ns: u64,
        f: &mut dyn FnMut(Event<'_>),
    ) -> &'a [u8] {
        let need = head.len as usize - self.keep.len();
        if self.keep.is_empty() && input.len() >= need {
            // The whole payload is in this segment: no copy.
            let (payload, rest) = input.split_at(need);
            self.state = State::Header { have: 0 };
            f(Event::Frame {
                head,
                payload,
                ts_ns,
            });
            return rest;
        }
        let n = need.min(input.len());
        self.keep.extend_from_slice(&input[..n]);
        if self.keep.len() == head.len as usize {
            self.state = State::Header { have: 0 };
            let payload = std::mem::take(&mut self.keep);
            f(Event::Frame {
                head,
                payload: &payload,
                ts_ns,
            });
            self.keep = payload;
            self.keep.clear();
            if self.keep.capacity() > 64 * 1024 {
                self.keep = Vec::new();
            }
        }
        &input[n..]
    }

    /// `len` octets of this direction were not captured here.
    pub(super) fn gap(&mut self, len: u64, ts_ns: u64, f: &mut dyn FnMut(Event<'_>)) {
        if len == 0 {
            return;
        }
        match &mut self.state {
            State::Unaligned => {}
            State::Preface { .. } | State::Header { .. } => self.lose(false, f),
            State::Keep { head } => {
                let head = *head;
                let rest = u64::from(head.len) - self.keep.len() as u64;
                self.keep.clear();
                f(Event::Lost { head });
                #[allow(
                    clippy::comparison_chain,
                    reason = "three states, each with its own shape"
                )]
                if len < rest {
                    self.state = State::Skip {
                        head,
                        remaining: (rest - len) as u32,
                        pad: Some(0),
                        lost: true,
                    };
                } else if len == rest {
                    self.state = State::Header { have: 0 };
                } else {
                    self.lose(false, f);
                }
            }
            State::Skip {
                remaining,
                pad,
                lost,
                ..
            } => {
                pad.get_or_insert(0);
                *lost = true;
                if len <= u64::from(*remaining) {
                    *remaining -= len as u32;
                    if *remaining == 0 {
                        self.finish_skip(ts_ns, f);
                    }
                } else {
                    // The frame ended inside the gap; what followed it is gone.
                    *remaining = 0;
                    self.finish_skip(ts_ns, f);
                    self.lose(false, f);
                }
            }
        }
    }

    fn lose(&mut self, parse_error: bool, f: &mut dyn FnMut(Event<'_>)) {
        self.state = State::Unaligned;
        self.keep = Vec::new();
        f(Event::Unaligned { parse_error });
    }

    fn begin(&mut self, head: FrameHeader, ts_ns: u64, f: &mut dyn FnMut(Event<'_>)) {
        if !head.well_formed(self.max_len) {
            if head.len > super::frame::MAX_FRAME_LEN.min(self.max_len.saturating_mul(4)) {
                // Far beyond anything negotiated: this is not a frame boundary after all.
                self.lose(true, f);
                return;
            }
            f(Event::Malformed { head });
            self.skip(head, ts_ns, f);
            return;
        }
        let keep = matches!(
            head.kind,
            HEADERS | CONTINUATION | PUSH_PROMISE | RST_STREAM | SETTINGS | GOAWAY
        );
        if keep && head.len as usize > KEEP_MAX {
            f(Event::Lost { head });
            self.skip(head, ts_ns, f);
        } else if keep {
            self.keep.clear();
            self.state = State::Keep { head };
            if head.len == 0 {
                self.state = State::Header { have: 0 };
                f(Event::Frame {
                    head,
                    payload: &[],
                    ts_ns,
                });
            }
        } else {
            self.skip(head, ts_ns, f);
        }
    }

    fn skip(&mut self, head: FrameHeader, ts_ns: u64, f: &mut dyn FnMut(Event<'_>)) {
        self.state = State::Skip {
            head,
            remaining: head.len,
            pad: None,
            lost: false,
        };
        if head.len == 0 {
            self.finish_skip(ts_ns, f);
        }
    }

    fn finish_skip(&mut self, ts_ns: u64, f: &mut dyn FnMut(Event<'_>)) {
        if let State::Skip {
            head, pad, lost, ..
        } = self.state
        {
            self.state = State::Header { have: 0 };
            if head.kind == DATA && head.well_formed(self.max_len) {
                let padding = if head.has(FLAG_PADDED) {
                    1 + u32::from(pad.unwrap_or(0))
                } else {
                    0
                };
                f(Event::Data {
                    head,
                    body: head.len.saturating_sub(padding),
                    ts_ns,
                    lost,
                });
            }
        }
    }
}

/// Walks frame headers from `start`: where the chain ends and how many headers it has, or
/// `None` when a header on the way is not plausible.
fn chain(seg: &[u8], start: usize, max_len: u32) -> Option<(usize, usize)> {
    let max_len = max_len.max(DEFAULT_MAX_FRAME_LEN);
    let (mut pos, mut seen) = (start, 0);
    while pos + HEADER_LEN <= seg.len() {
        let mut b = [0u8; HEADER_LEN];
        b.copy_from_slice(&seg[pos..pos + HEADER_LEN]);
        let head = FrameHeader::parse(&b);
        if !head.plausible(max_len) {
            return None;
        }
        seen += 1;
        pos += HEADER_LEN + head.len as usize;
    }
    Some((pos, seen))
}

/// Whether a segment starts at a frame boundary: its frame headers chain to exactly its
/// end, or at least two of them chain and all are plausible. One header alone could be
/// chance in a payload; a chain of them rarely is.
fn starts_with_frames(seg: &[u8], max_len: u32) -> bool {
    chain(seg, 0, max_len).is_some_and(|(end, seen)| seen > 0 && (end == seg.len() || seen >= 2))
}

/// The first offset from which plausible frame headers chain to exactly the end of the
/// segment. Only tried on segments of at most a few KiB while lost, so the quadratic
/// worst case stays small.
fn frames_ending_at_end(seg: &[u8], max_len: u32) -> Option<usize> {
    const MAX_SCAN: usize = 8 * 1024;
    if seg.len() > MAX_SCAN {
        return None;
    }
    (1..seg.len().saturating_sub(HEADER_LEN - 1))
        .find(|&start| chain(seg, start, max_len).is_some_and(|(end, _)| end == seg.len()))
}
