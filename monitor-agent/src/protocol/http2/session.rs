//! One HTTP/2 connection: two framed directions, one HPACK decoder each, and the table
//! of open streams that become calls.
//!
//! Directions are indexed by who wrote the bytes (the observed process, or its peer), not
//! by client and server: a connection joined mid-life does not say which side is which
//! until a header block with `:method` or `:status` goes by, and HPACK state is per
//! direction either way.

use super::{
    fields::{Fields, Value},
    frame::{
        self, block_fragment, FrameHeader, CONTINUATION, DATA, FLAG_ACK, FLAG_END_HEADERS,
        FLAG_END_STREAM, GOAWAY, HEADERS, HEADER_LEN, PUSH_PROMISE, RST_STREAM, SETTINGS,
    },
    framer::{Event, Framer},
    hpack::Decoder,
    streams::{Held, Streams},
};
use monitor_common::Direction;

use crate::protocol::{
    credentials::Auth,
    exchange::{
        EndingFrame, ErrorCode, Exchange, Field, Grpc, Protocol, Sender, StreamError, Unknown,
    },
    session::{ProtocolSession, SessionStats},
};
use crate::text::Text;

/// Most header block octets collected across CONTINUATION frames.
const MAX_BLOCK: usize = 256 * 1024;

/// How the connection was first seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From its first octet; `client` is the direction that sends the preface.
    Fresh { client: Direction },
    /// After an `Upgrade: h2c` exchange: the client's preface is still to come, and the
    /// upgraded request is stream 1.
    Upgraded { client: Direction },
    /// Mid-life: frame boundaries and header tables are unknown; which direction is the
    /// client's is known when the kernel saw the connection being set up.
    Attached { client: Option<Direction> },
}

#[derive(Debug)]
struct Half {
    framer: Framer,
    decoder: Decoder,
    /// A header block waiting for its CONTINUATION frames.
    block: Option<Block>,
}

#[derive(Debug)]
struct Block {
    stream: u32,
    kind: u8,
    end_stream: bool,
    fragment: Vec<u8>,
    wire_bytes: u64,
    /// When the first frame of the block was seen.
    ts_ns: u64,
    /// When its last frame (END_HEADERS) was seen.
    end_ns: u64,
    /// Part of the block was lost: its remaining CONTINUATION frames are passed over, not
    /// decoded and not counted as errors.
    lost: bool,
}

impl Block {
    /// What is left of a block whose frame was lost before END_HEADERS.
    fn lost(stream: u32, kind: u8) -> Block {
        Block {
            stream,
            kind,
            end_stream: false,
            fragment: Vec::new(),
            wire_bytes: 0,
            ts_ns: 0,
            end_ns: 0,
            lost: true,
        }
    }
}

#[derive(Debug, Default)]
struct Stream {
    method: Value<Text>,
    path: Value<String>,
    authority: Value<Text>,
    auth: Auth,
    request_content_type: Option<Text>,
    request_start_ns: u64,
    request_end_ns: u64,
    request_bytes: u64,
    request_body_bytes: u64,
    /// Part of the request body went by uncaptured.
    request_lossy: bool,
    /// Final (non-1xx) response headers have been seen.
    responded: bool,
    status: Value<u16>,
    response_content_type: Option<Text>,
    response_start_ns: u64,
    response_bytes: u64,
    response_body_bytes: u64,
    grpc_status: Value<u32>,
    grpc_message: Option<String>,
    /// Part of the response may have gone by uncaptured.
    lossy: bool,
}

impl Held for Stream {
    /// The request's text; the response's arrives as the stream ends, and what a
    /// credential leaves (`auth`) is bounded small.
    fn held_bytes(&self) -> usize {
        let shared = |v: &Value<Text>| v.known().map_or(0, |t| t.len());
        shared(&self.method)
            + self.path.known().map_or(0, String::len)
            + shared(&self.authority)
            + self.request_content_type.as_ref().map_or(0, |t| t.len())
    }
}

#[derive(Debug)]
pub struct Session {
    dirs: [Half; 2],
    /// Which direction carries requests, once known.
    client: Option<Direction>,
    streams: Streams<Stream>,
    stats: SessionStats,
}

impl Session {
    pub fn new(start: Start) -> Session {
        let dir = |framer: Framer, exact: bool| Half {
            framer,
            decoder: if exact {
                Decoder::new()
            } else {
                Decoder::attached()
            },
            block: None,
        };
        match start {
            // After an upgrade, too, the client starts with the preface and the server
            // with its SETTINGS.
            Start::Fresh { client } | Start::Upgraded { client } => {
                let dirs = [
                    dir(Framer::at_start(client == Direction::Egress), true),
                    dir(Framer::at_start(client == Direction::Ingress), true),
                ];
                Session {
                    dirs,
                    client: Some(client),
                    streams: Streams::default(),
                    stats: SessionStats::default(),
                }
            }
            Start::Attached { client } => Session {
                dirs: [
                    dir(Framer::unaligned(), false),
                    dir(Framer::unaligned(), false),
                ],
                client,
                streams: Streams::default(),
                stats: SessionStats::default(),
            },
        }
    }

    /// Seeds stream 1 with the HTTP/1.1 request that asked for the upgrade (RFC 7540 3.2).
    pub fn upgraded_request(&mut self, x: Exchange) {
        self.streams.open(
            1,
            Stream {
                method: Value::Known(x.method),
                path: Value::Known(x.target),
                authority: x.host.map_or(Value::Absent, Value::Known),
                auth: x.auth,
                request_content_type: x.request_content_type,
                request_start_ns: x.request_start_ns,
                request_end_ns: x.request_end_ns,
                request_bytes: x.request_bytes,
                request_body_bytes: x.request_body_bytes,
                response_start_ns: x.response_start_ns,
                response_bytes: x.response_bytes,
                ..Stream::default()
            },
        );
    }

    fn buffered(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| d.framer.buffered() + d.block.as_ref().map_or(0, |b| b.fragment.capacity()))
            .sum::<usize>()
            + self.streams.held()
    }

    /// Whether both header tables are fully known (calls are exact).
    #[cfg(test)]
    pub fn exact(&self) -> bool {
        self.dirs.iter().all(|d| d.decoder.is_exact())
    }

    /// Runs one step of direction `dir`'s framer with its events applied to the session.
    fn drive(
        &mut self,
        dir: Direction,
        out: &mut Vec<Exchange>,
        step: impl FnOnce(&mut Framer, &mut dyn FnMut(Event<'_>)),
    ) {
        let Session {
            dirs,
            client,
            streams,
            stats,
        } = self;
        let (mine, other) = split(dirs, dir);
        let mut cx = Cx {
            dir,
            client,
            streams,
            stats,
            out,
            other,
        };
        let Half {
            framer,
            decoder,
            block,
        } = mine;
        step(framer, &mut |ev| cx.event(ev, decoder, block));
    }
}

fn split(dirs: &mut [Half; 2], dir: Direction) -> (&mut Half, &mut Half) {
    let (a, b) = dirs.split_at_mut(1);
    if dir == Direction::Egress {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    }
}

/// Everything a frame of one direction may touch besides that direction's own state.
struct Cx<'a> {
    dir: Direction,
    client: &'a mut Option<Direction>,
    streams: &'a mut Streams<Stream>,
    stats: &'a mut SessionStats,
    out: &'a mut Vec<Exchange>,
    other: &'a mut Half,
}

impl Cx<'_> {
    /// Whether this direction is the client's; `None` until known.
    fn sent_by_client(&self) -> Option<bool> {
        self.client.map(|c| c == self.dir)
    }

    fn by(&self) -> Sender {
        match self.sent_by_client() {
            Some(true) => Sender::Client,
            Some(false) => Sender::Server,
            None => Sender::Unknown,
        }
    }

    fn event(&mut self, ev: Event<'_>, decoder: &mut Decoder, block: &mut Option<Block>) {
        match ev {
            Event::Frame {
                head,
                payload,
                ts_ns,
            } => self.frame(head, payload, ts_ns, decoder, block),
            Event::Data {
                head,
                body,
                ts_ns,
                lost,
            } => self.data(head, body, ts_ns, lost),
            Event::Lost { head } => self.frame_lost(head, decoder, block),
            Event::Malformed { head } => {
                self.stats.parse_errors += 1;
                // A skipped header block frame may have changed the peer's table.
                self.frame_lost(head, decoder, block);
            }
            Event::Unaligned { parse_error } => {
                if parse_error {
                    self.stats.parse_errors += 1;
                }
                // Header blocks may have gone by: the table no longer matches.
                decoder.lose_track();
                *block = None;
                // Whatever the lost bytes carried for open streams is missing from them.
                let from_client = self.sent_by_client();
                for s in self.streams.iter_mut() {
                    if from_client == Some(true) {
                        s.request_lossy = true;
                    } else {
                        s.lossy = true;
                    }
                }
            }
            Event::Realigned => self.stats.resyncs += 1,
        }
    }

    /// A frame went undecoded; if it carried (part of) a header block, that block is lost.
    fn frame_lost(&mut self, head: FrameHeader, decoder: &mut Decoder, block: &mut Option<Block>) {
        let kind = match (head.kind, block.as_ref()) {
            (CONTINUATION, Some(b)) => b.kind,
            (kind, _) => kind,
        };
        if matches!(head.kind, HEADERS | CONTINUATION | PUSH_PROMISE) {
            self.block_lost(head.stream, kind, decoder, block);
            if !head.has(FLAG_END_HEADERS) {
                *block = Some(Block::lost(head.stream, kind));
            }
        }
    }

    /// A header block of type `kind` (HEADERS or PUSH_PROMISE) on `stream` could not be
    /// decoded.
    fn block_lost(
        &mut self,
        stream: u32,
        kind: u8,
        decoder: &mut Decoder,
        block: &mut Option<Block>,
    ) {
        decoder.lose_track();
        *block = None;
        // A lost PUSH_PROMISE says nothing about the response of the stream it rode on.
        if kind != PUSH_PROMISE && self.sent_by_client() == Some(false) {
            // The response head (and perhaps its END_STREAM) is gone.
            if self.streams.remove(stream).is_some() {
                self.stats.dropped_requests += 1;
            }
        }
    }

    fn frame(
        &mut self,
        head: FrameHeader,
        payload: &[u8],
        ts_ns: u64,
        decoder: &mut Decoder,
        block: &mut Option<Block>,
    ) {
        if let Some(b) = block {
            if head.kind != CONTINUATION || head.stream != b.stream {
                // RFC 9113 6.10: nothing may come between a block's frames.
                self.stats.parse_errors += 1;
                let (stream, kind) = (b.stream, b.kind);
                self.block_lost(stream, kind, decoder, block);
            }
        }
        match head.kind {
            HEADERS | PUSH_PROMISE => self.block_start(head, payload, ts_ns, decoder, block),
            CONTINUATION => self.continuation(head, payload, ts_ns, decoder, block),
            RST_STREAM => {
                let code = be32(payload);
                self.stream_error(head.stream, EndingFrame::RstStream, code, ts_ns);
            }
            GOAWAY => self.goaway(payload, ts_ns),
            SETTINGS if !head.has(FLAG_ACK) => self.settings(payload),
            _ => {}
        }
    }

    /// The first frame of a header block: decoded at once when it is also the last.
    fn block_start(
        &mut self,
        head: FrameHeader,
        payload: &[u8],
        ts_ns: u64,
        decoder: &mut Decoder,
        block: &mut Option<Block>,
    ) {
        let Some((fragment, _promised)) = block_fragment(&head, payload) else {
            self.stats.parse_errors += 1;
            self.block_lost(head.stream, head.kind, decoder, block);
            return;
        };
        let mut b = Block {
            stream: head.stream,
            kind: head.kind,
            end_stream: head.kind == HEADERS && head.has(FLAG_END_STREAM),
            fragment: Vec::new(),
            wire_bytes: HEADER_LEN as u64 + u64::from(head.len),
            ts_ns,
            end_ns: ts_ns,
            lost: false,
        };
        if head.has(FLAG_END_HEADERS) {
            self.header_block(b, fragment, decoder);
        } else {
            b.fragment.extend_from_slice(fragment);
            *block = Some(b);
        }
    }

    /// More of the open header block, bounded by `MAX_BLOCK`.
    fn continuation(
        &mut self,
        head: FrameHeader,
        payload: &[u8],
        ts_ns: u64,
        decoder: &mut Decoder,
        block: &mut Option<Block>,
    ) {
        let Some(mut b) = block.take() else {
            // A CONTINUATION with nothing to continue.
            self.stats.parse_errors += 1;
            return;
        };
        if b.lost {
            if !head.has(FLAG_END_HEADERS) {
                *block = Some(b);
            }
            return;
        }
        if b.fragment.len() + payload.len() > MAX_BLOCK {
            self.stats.parse_errors += 1;
            self.block_lost(b.stream, b.kind, decoder, block);
            if !head.has(FLAG_END_HEADERS) {
                *block = Some(Block::lost(b.stream, b.kind));
            }
            return;
        }
        b.fragment.extend_from_slice(payload);
        b.wire_bytes += HEADER_LEN as u64 + u64::from(head.len);
        b.end_ns = ts_ns;
        if head.has(FLAG_END_HEADERS) {
            let fragment = std::mem::take(&mut b.fragment);
            self.header_block(b, &fragment, decoder);
        } else {
            *block = Some(b);
        }
    }

    /// A server's GOAWAY: client streams above the last one it processed end in error.
    fn goaway(&mut self, payload: &[u8], ts_ns: u64) {
        let last = be32(payload) & 0x7fff_ffff;
        let code = be32(&payload[4..]);
        if self.sent_by_client() != Some(false) {
            return;
        }
        let refused: Vec<u32> = self
            .streams
            .ids()
            .filter(|id| *id > last && id % 2 == 1)
            .collect();
        for id in refused {
            self.stream_error(id, EndingFrame::Goaway, code, ts_ns);
        }
    }

    /// What this side accepts bounds what the other side sends.
    fn settings(&mut self, payload: &[u8]) {
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = be32(&s[2..]);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => {
                    self.other.decoder.set_max_allowed(v as usize);
                }
                frame::SETTINGS_MAX_FRAME_SIZE => self.other.framer.set_max_len(v),
                _ => {}
            }
        }
    }

    fn header_block(&mut self, b: Block, fragment: &[u8], decoder: &mut Decoder) {
        let mut fields = Fields::default();
        let outcome = decoder.decode_wanted(fragment, &Fields::wants, &mut |n, v| fields.add(n, v));
        if outcome.is_err() {
            self.stats.parse_errors += 1;
            // The rest of the block could have held any field.
            fields.hidden = true;
        }
        fields.settle();
        if b.kind == PUSH_PROMISE {
            // Decoded only to keep the table in step; pushed streams are not calls.
            return;
        }
        if self.client.is_none() {
            // A connection joined mid-life: the first block that says what it is names
            // the client's direction.
            if fields.method.known().is_some() || fields.path.known().is_some() {
                *self.client = Some(self.dir);
            } else if fields.status.known().is_some() {
                *self.client = Some(self.dir.reverse());
            } else {
                return;
            }
        }
        if self.sent_by_client() == Some(true) {
            self.request_headers(b, fields);
        } else {
            self.response_headers(b, fields);
        }
    }

    fn request_headers(&mut self, b: Block, mut f: Fields) {
        if let Some(s) = self.streams.get_mut(b.stream) {
            // Request trailers.
            s.request_bytes += b.wire_bytes;
            s.request_end_ns = b.end_ns;
            return;
        }
        if b.stream.is_multiple_of(2) || !(f.request_pseudo || f.hidden) {
            // Not a request's first block (a finished stream's trailers, say).
            return;
        }
        let auth = f.take_auth();
        self.stats.dropped_requests += self.streams.open(
            b.stream,
            Stream {
                method: f.method,
                path: f.path,
                authority: f.authority,
                auth,
                request_content_type: f.content_type,
                request_start_ns: b.ts_ns,
                request_end_ns: b.end_ns,
                request_bytes: b.wire_bytes,
                ..Stream::default()
            },
        );
    }

    fn response_headers(&mut self, b: Block, f: Fields) {
        if b.stream.is_multiple_of(2) {
            // A pushed stream's response: ignored, like the push itself.
            return;
        }
        let Some(s) = self.streams.get_mut(b.stream) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        if s.response_start_ns == 0 {
            s.response_start_ns = b.ts_ns;
        }
        s.response_bytes += b.wire_bytes;
        let interim = matches!(f.status, Value::Known(100..=199));
        if !s.responded && !interim {
            s.responded = true;
            s.status = match f.status {
                // Known but not a valid status code is as good as unknown, and so is none
                // at all: the real response head went by uncaptured (or was malformed).
                Value::Known(0) | Value::Absent => Value::Unknown,
                v => v,
            };
            s.response_content_type = f.content_type;
        }
        if !matches!(f.grpc_status, Value::Absent) {
            s.grpc_status = f.grpc_status;
        }
        if f.grpc_message.is_some() {
            s.grpc_message = f.grpc_message;
        }
        if b.end_stream {
            self.complete(b.stream, b.end_ns, None);
        }
    }

    fn data(&mut self, head: FrameHeader, body: u32, ts_ns: u64, lost: bool) {
        debug_assert_eq!(head.kind, DATA);
        let Some(from_client) = self.sent_by_client() else {
            return;
        };
        let Some(s) = self.streams.get_mut(head.stream) else {
            return;
        };
        let wire = HEADER_LEN as u64 + u64::from(head.len);
        if from_client {
            s.request_lossy |= lost;
            s.request_bytes += wire;
            s.request_body_bytes += u64::from(body);
            s.request_end_ns = ts_ns;
        } else {
            if s.response_start_ns == 0 {
                s.response_start_ns = ts_ns;
            }
            s.lossy |= lost;
            s.response_bytes += wire;
            s.response_body_bytes += u64::from(body);
            if head.has(FLAG_END_STREAM) {
                self.complete(head.stream, ts_ns, None);
            }
        }
    }

    fn stream_error(&mut self, stream: u32, frame: EndingFrame, code: u32, ts_ns: u64) {
        if !self.streams.contains(stream) {
            return;
        }
        let by = self.by();
        self.complete(
            stream,
            ts_ns,
            Some(StreamError {
                frame,
                code: ErrorCode(code),
                by,
            }),
        );
    }

    fn complete(&mut self, stream: u32, ts_ns: u64, error: Option<StreamError>) {
        let Some(s) = self.streams.remove(stream) else {
            return;
        };
        self.out.push(exchange(s, ts_ns, error));
    }
}

fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn is_grpc(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| t.starts_with("application/grpc"))
}

/// `/package.Service/Method` split into its service and method.
pub fn grpc_names(path: &str) -> Option<(&str, &str)> {
    let rest = crate::route::path_of(path).strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

fn exchange(s: Stream, end_ns: u64, error: Option<StreamError>) -> Exchange {
    let grpc =
        is_grpc(s.request_content_type.as_deref()) || is_grpc(s.response_content_type.as_deref());
    let unknown = Unknown::default()
        .with(Field::Method, s.method == Value::Unknown)
        .with(Field::Path, s.path == Value::Unknown)
        .with(Field::Host, s.authority == Value::Unknown)
        .with(
            Field::Status,
            s.status == Value::Unknown || (!s.responded && error.is_none()),
        )
        .with(Field::GrpcStatus, grpc && s.grpc_status == Value::Unknown);
    let path = s.path.into_known().unwrap_or_default();
    let grpc = grpc.then(|| {
        let (service, method) = grpc_names(&path).unwrap_or(("", ""));
        Grpc {
            service: service.to_owned(),
            method: method.to_owned(),
            status: s.grpc_status.known().copied().filter(|c| *c != u32::MAX),
            message: s.grpc_message,
        }
    });
    Exchange {
        protocol: if grpc.is_some() {
            Protocol::Grpc
        } else {
            Protocol::Http2
        },
        method: s.method.into_known().unwrap_or_default(),
        target: path,
        host: s.authority.into_known(),
        status: s.status.known().copied().unwrap_or(0),
        request_start_ns: s.request_start_ns,
        request_end_ns: s.request_end_ns,
        response_start_ns: if s.response_start_ns == 0 {
            end_ns
        } else {
            s.response_start_ns
        },
        response_end_ns: end_ns,
        request_bytes: s.request_bytes,
        response_bytes: s.response_bytes,
        request_body_bytes: s.request_body_bytes,
        response_body_bytes: s.response_body_bytes,
        request_truncated: s.request_lossy,
        response_truncated: s.lossy,
        auth: s.auth,
        request_content_type: s.request_content_type,
        response_content_type: s.response_content_type,
        unknown,
        grpc,
        stream_error: error,
        upgrade_h2c: false,
    }
}

impl ProtocolSession for Session {
    fn protocol(&self) -> Protocol {
        Protocol::Http2
    }

    fn data(&mut self, dir: Direction, bytes: &[u8], ts_ns: u64, out: &mut Vec<Exchange>) {
        self.drive(dir, out, |framer, sink| framer.feed(bytes, ts_ns, sink));
    }

    fn gap(&mut self, dir: Direction, len: u64, ts_ns: u64, out: &mut Vec<Exchange>) {
        self.stats.gaps += 1;
        self.drive(dir, out, |framer, sink| framer.gap(len, ts_ns, sink));
    }

    /// Streams still waiting for their response end are dropped.
    fn close(&mut self, _ts_ns: u64, _out: &mut Vec<Exchange>) {
        self.stats.dropped_requests += self.streams.clear() as u64;
    }

    fn stats(&self) -> &SessionStats {
        &self.stats
    }

    fn buffered_bytes(&self) -> usize {
        self.buffered()
    }

    fn requests_direction(&self) -> Option<Direction> {
        self.client
    }

    fn release_spare(&mut self) {
        for d in &mut self.dirs {
            d.framer.release_spare();
        }
    }
}
