//! HTTP/2 frame headers (RFC 9113 section 4.1) and what a plausible one looks like.

/// Frame header length on the wire.
pub const HEADER_LEN: usize = 9;

/// The client connection preface; a connection that starts with it is HTTP/2 from its
/// first byte, so both HPACK decoders start exact.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const FLAG_END_STREAM: u8 = 0x01;
pub const FLAG_ACK: u8 = 0x01;
pub const FLAG_END_HEADERS: u8 = 0x04;
pub const FLAG_PADDED: u8 = 0x08;
pub const FLAG_PRIORITY: u8 = 0x20;

/// The largest frame any peer may send (2^24 - 1); SETTINGS_MAX_FRAME_SIZE is capped there.
pub const MAX_FRAME_LEN: u32 = (1 << 24) - 1;
/// SETTINGS_MAX_FRAME_SIZE until a peer raises it.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16_384;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 1;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length, excluding these nine octets.
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    /// The reserved bit in front of the stream id; receivers must ignore it, but a set
    /// bit in a header we are trying to realign on means we are not at a frame boundary.
    pub reserved: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        let raw = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: raw & 0x7fff_ffff,
            reserved: raw & 0x8000_0000 != 0,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether a frame of this type on this stream with this length is allowed at all
    /// (RFC 9113 section 6). A frame that breaks these rules is a parse error, but its
    /// length still tells us where the next frame starts.
    pub fn well_formed(&self, max_len: u32) -> bool {
        if self.len > max_len {
            return false;
        }
        let s = self.stream != 0;
        match self.kind {
            DATA | HEADERS | CONTINUATION => s,
            PRIORITY => s && self.len == 5,
            RST_STREAM => s && self.len == 4,
            SETTINGS => !s && self.len.is_multiple_of(6) && !(self.has(FLAG_ACK) && self.len > 0),
            PUSH_PROMISE => s && self.len >= 4,
            PING => !s && self.len == 8,
            GOAWAY => !s && self.len >= 8,
            WINDOW_UPDATE => self.len == 4,
            // Unknown types are extensions and must be skipped, not rejected.
            _ => true,
        }
    }

    /// Stricter than `well_formed`, for finding frame boundaries in a stream we have lost
    /// track of: only known types, only their defined flags, the reserved bit clear.
    pub fn plausible(&self, max_len: u32) -> bool {
        let allowed_flags = match self.kind {
            DATA => FLAG_END_STREAM | FLAG_PADDED,
            HEADERS => FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            PUSH_PROMISE => FLAG_END_HEADERS | FLAG_PADDED,
            CONTINUATION => FLAG_END_HEADERS,
            SETTINGS | PING => FLAG_ACK,
            PRIORITY | RST_STREAM | GOAWAY | WINDOW_UPDATE => 0,
            _ => return false,
        };
        !self.reserved && self.flags & !allowed_flags == 0 && self.well_formed(max_len)
    }
}

/// The header block fragment of a HEADERS or PUSH_PROMISE payload, without padding,
/// priority fields or the promised stream id. `None` when the padding claims more octets
/// than the frame has.
pub fn block_fragment<'a>(head: &FrameHeader, payload: &'a [u8]) -> Option<(&'a [u8], u32)> {
    let mut p = payload;
    let mut pad = 0usize;
    if head.has(FLAG_PADDED) {
        let (&n, rest) = p.split_first()?;
        pad = n as usize;
        p = rest;
    }
    let mut promised = 0;
    if head.kind == HEADERS && head.has(FLAG_PRIORITY) {
        p = p.get(5..)?;
    } else if head.kind == PUSH_PROMISE {
        let id = p.get(..4)?;
        promised = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff;
        p = &p[4..];
    }
    let end = p.len().checked_sub(pad)?;
    Some((&p[..end], promised))
}
