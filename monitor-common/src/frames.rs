//! Which bytes of an HTTP/2 segment the kernel copies, frame by frame.
//!
//! One write of an HTTP/2 connection often carries many streams: a client's batch of
//! requests, each a HEADERS frame and a DATA frame, or a server's batch of responses.
//! Copying such a write as a head and a tail would lose every header block in between,
//! and with them the calls. So when a segment starts at a frame boundary, the kernel
//! follows the frame headers from there: every frame header and every frame but DATA is
//! copied, DATA payloads are skipped unless short. A skip then always lies inside a DATA
//! payload, which userspace passes over by its length, so it never loses its place and
//! the bodies' sizes stay exact. What this costs is bounded: at most [`FRAMES_WALKED`]
//! frame headers read and `HEAD_MAX` bytes copied per segment, after which the rest is
//! copied as a tail, like any other long segment.
#![allow(
    clippy::inline_always,
    reason = "the eBPF side must inline these: a BPF-to-BPF call costs verifier budget"
)]

use crate::{
    event::{MAX_DATA, TAIL_DATA},
    head::HEAD_MAX,
};

/// Length of an HTTP/2 frame header.
pub const FRAME_HEADER: u64 = 9;

/// Frame headers read in one segment: enough for a batch of dozens of requests with
/// bodies; each costs the kernel one small read of the writer's memory.
pub const FRAMES_WALKED: u64 = 64;

/// DATA payloads up to this long are copied with their frame instead of skipped: a skip
/// costs a record for what follows it, and a record costs more than this many bytes.
pub const SHORT_DATA: u64 = 256;

/// Steps of the kernel's copy loop a walk may take beyond those a head and tail need:
/// one for each frame header read (a step reads at most one and copies at most once).
pub const WALK_STEPS: usize = FRAMES_WALKED as usize + 2;

const DATA: u8 = 0;

/// What a walk reads from and copies to.
pub trait Frames {
    /// The frame header at offset `at` of the segment; `None` when it cannot be read.
    fn header(&mut self, at: u64) -> Option<[u8; 9]>;
    /// Sends `len` bytes (at most `MAX_DATA`) at offset `at`.
    fn copy(&mut self, at: u64, len: u64);
    /// Passes a decision through memory the verifier does not track, so that it sees one
    /// state after it whatever branches led there; nothing elsewhere.
    fn settle(&mut self, action: Action) -> Action {
        action
    }
    /// The same for the walk itself.
    fn settle_walk(&mut self, walk: Walk) -> Walk {
        walk
    }
}

/// Progress through one segment. Offsets are from the segment's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Walk {
    /// Bytes handled, copied or skipped.
    pub done: u64,
    /// The copy in view: bytes `done..from` are skipped, `from..keep_to` copied.
    pub from: u64,
    pub keep_to: u64,
    /// Where the next frame header not yet read starts.
    pub frame: u64,
    pub frames_left: u64,
    /// Bytes that may still be copied before the rest goes as a tail.
    pub copy_left: u64,
    /// Head bytes the next segment carries: the rest of a frame that is copied whole and
    /// runs past this segment's end.
    pub carry: u64,
}

/// What the kernel does next with a segment being walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the frame header at this offset and hand it to [`Walk::read`].
    Read(u64),
    /// Skip to `at` (bytes from `done` on are not copied), then copy `len` bytes there,
    /// at most `MAX_DATA`, and call [`Walk::copied`].
    Copy { at: u64, len: u64 },
    /// The segment is done; bytes from `done` to its end are skipped.
    Finish,
}

impl Walk {
    /// A segment of `len` bytes whose first frame header is `frame` bytes in (perhaps
    /// beyond its end), as the walk of the segment before found; the first `keep` bytes
    /// end a frame that is copied whole, and the first `first` are copied already.
    #[inline(always)]
    pub const fn resume(first: u64, frame: u64, keep: u64, len: u64) -> Walk {
        let keep = if keep < HEAD_MAX { keep } else { HEAD_MAX };
        Walk {
            done: first,
            from: first,
            keep_to: if keep > first { keep } else { first },
            frame,
            frames_left: FRAMES_WALKED,
            copy_left: HEAD_MAX.saturating_sub(first),
            carry: keep.saturating_sub(len),
        }
    }

    /// Passes over the frames that lie wholly in the first `done` bytes, already copied,
    /// reading their headers from `record`, the copy of those bytes: they need nothing
    /// more, and reading them here costs far less than a step each.
    #[inline(always)]
    pub fn pass_copied(&mut self, record: &[u8; MAX_DATA]) {
        let copied = self.done;
        let mut frame = self.frame;
        let mut left = self.frames_left;
        for _ in 0..FRAMES_WALKED {
            if left == 0 || frame + FRAME_HEADER > copied {
                break;
            }
            // `frame` is below `copied`, at most MAX_DATA: the mask only shows the verifier.
            let i = (frame as usize) & (MAX_DATA - 1);
            if i > MAX_DATA - FRAME_HEADER as usize {
                break;
            }
            let payload = (u64::from(record[i]) << 16)
                | (u64::from(record[i + 1]) << 8)
                | u64::from(record[i + 2]);
            let end = frame + FRAME_HEADER + payload;
            if end > copied {
                break;
            }
            frame = end;
            left -= 1;
        }
        self.frame = frame;
        self.frames_left = left;
    }

    /// Where the next segment's first frame header is, counted from this segment's start,
    /// once the walk is done; `None` when the walk did not get that far.
    #[inline(always)]
    pub const fn next_frame(&self, len: u64) -> Option<u64> {
        if self.frame >= len {
            Some(self.frame)
        } else {
            None
        }
    }

    /// Whether the next frame header can be read now: one is left to read, the budget
    /// allows it, it lies whole in the segment, and it adjoins the copy in view (or
    /// there is none), so one copy can still cover both.
    #[inline(always)]
    const fn can_read(&self, len: u64) -> bool {
        self.frames_left > 0
            && self.copy_left > 0
            && self.frame + FRAME_HEADER <= len
            && (self.frame <= self.keep_to || self.done >= self.keep_to)
    }

    /// The next thing to do with a segment of `len` bytes.
    #[inline(always)]
    pub fn next(&self, len: u64) -> Action {
        let keep_to = if self.keep_to < len {
            self.keep_to
        } else {
            len
        };
        if self.done < keep_to && self.copy_left > 0 {
            let pending = keep_to - self.from;
            if pending < MAX_DATA as u64 && self.can_read(len) {
                return Action::Read(self.frame);
            }
            let n = min3(pending, MAX_DATA as u64, self.copy_left);
            return Action::Copy {
                at: self.from,
                len: n,
            };
        }
        if self.can_read(len) {
            return Action::Read(self.frame);
        }
        if self.done >= len || (self.frame >= len && self.copy_left > 0) {
            // Nothing more to copy: what is left is the last DATA payload.
            return Action::Finish;
        }
        let at = if self.frames_left > 0 && self.copy_left > 0 {
            // A frame header cut by the segment's end: its first bytes.
            self.frame
        } else {
            // Out of budget: the end, as for any long segment.
            let tail = len.saturating_sub(TAIL_DATA as u64);
            if tail > self.done {
                tail
            } else {
                self.done
            }
        };
        let at = if at > self.done { at } else { self.done };
        Action::Copy { at, len: len - at }
    }

    /// The frame header read at `self.frame`, in a segment of `len` bytes.
    #[inline(always)]
    pub fn read(&mut self, header: [u8; 9], len: u64) {
        self.frames_left -= 1;
        let payload =
            (u64::from(header[0]) << 16) | (u64::from(header[1]) << 8) | u64::from(header[2]);
        let at = self.frame;
        let end = at + FRAME_HEADER + payload;
        let whole = header[3] != DATA || payload <= SHORT_DATA;
        let keep_end = if whole { end } else { at + FRAME_HEADER };
        if self.done >= self.keep_to {
            self.from = if at > self.done { at } else { self.done };
            self.keep_to = self.done;
        }
        if keep_end > self.keep_to {
            self.keep_to = keep_end;
        }
        self.frame = end;
        self.carry = if whole && end > len { end - len } else { 0 };
    }

    /// `len` bytes were copied at `at`.
    #[inline(always)]
    pub fn copied(&mut self, at: u64, len: u64) {
        self.done = at + len;
        self.from = self.done;
        self.copy_left = self.copy_left.saturating_sub(len);
    }

    /// One step of the kernel's copy loop: at most one frame header read and at most one
    /// copy. Bytes passed over are counted in `skipped`; false once the segment is done.
    #[inline(always)]
    pub fn step(&mut self, len: u64, io: &mut impl Frames, skipped: &mut u64) -> bool {
        let mut action = io.settle(self.next(len));
        if let Action::Read(at) = action {
            match io.header(at) {
                Some(header) => self.read(header, len),
                // Unreadable: what is left goes as a tail.
                None => self.frames_left = 0,
            }
            *self = io.settle_walk(*self);
            action = io.settle(self.next(len));
        }
        match action {
            Action::Read(_) => true,
            Action::Copy { at, len: n } => {
                *skipped += at - self.done;
                io.copy(at, n);
                self.copied(at, n);
                self.done < len
            }
            Action::Finish => {
                *skipped += len.saturating_sub(self.done);
                self.done = len;
                false
            }
        }
    }

    /// The head bytes the next segment may copy in full.
    #[inline(always)]
    pub const fn head_left(&self) -> u64 {
        if self.carry < HEAD_MAX {
            self.carry
        } else {
            HEAD_MAX
        }
    }
}

#[inline(always)]
const fn min3(a: u64, b: u64, c: u64) -> u64 {
    let ab = if a < b { a } else { b };
    if ab < c {
        ab
    } else {
        c
    }
}

#[cfg(any(test, feature = "user"))]
pub mod audit;

#[cfg(test)]
mod tests;
