//! Walks a whole segment the way the kernel does and checks what the walk promises, for
//! unit tests and the fuzz target.

extern crate alloc;
use alloc::{format, string::String, vec, vec::Vec};

use super::{Frames, Walk, FRAMES_WALKED, FRAME_HEADER, SHORT_DATA, WALK_STEPS};
use crate::{
    event::{MAX_DATA, TAIL_DATA},
    head::{HEAD_MAX, HEAD_RECORDS},
};

/// What a walk of one segment did.
#[derive(Debug, Default)]
pub struct Audit {
    /// Copies, as (offset, length), in order.
    pub copies: Vec<(u64, u64)>,
    pub skipped: u64,
    pub steps: usize,
    /// Head bytes the next segment carries.
    pub head_left: u64,
}

/// Walks `data`, a segment that starts with a frame, of which the first `first` bytes are
/// copied already (as the kernel's first record), and checks that no byte is copied twice
/// or left unaccounted for, that the loop bound holds, and that, within the budgets, every
/// frame header and every frame but a long DATA payload is copied.
pub fn audit(data: &[u8], first: u64) -> Result<Audit, String> {
    audit_resumed(data, first, 0, 0)
}

/// [`audit`] for a segment whose first frame header is `frame` bytes in, the first `keep`
/// bytes ending a frame copied whole.
pub fn audit_resumed(data: &[u8], first: u64, frame: u64, keep: u64) -> Result<Audit, String> {
    let len = data.len() as u64;
    let first = first.min(len);
    let mut walk = Walk::resume(first, frame, keep, len);
    let mut record = [0u8; MAX_DATA];
    record[..first as usize].copy_from_slice(&data[..first as usize]);
    walk.pass_copied(&record);
    let mut out = Audit::default();
    let mut copies = Vec::new();
    let bound = HEAD_RECORDS + WALK_STEPS;
    loop {
        out.steps += 1;
        if out.steps > bound {
            return Err(format!("more than {bound} steps: {walk:?}"));
        }
        let mut io = Segment {
            data,
            copies: &mut copies,
        };
        if !walk.step(len, &mut io, &mut out.skipped) {
            break;
        }
    }
    out.copies = copies;
    out.head_left = walk.head_left();
    check_copies(&out, len, first)?;
    check_frames(data, (first, frame, keep), &out)?;
    Ok(out)
}

/// A segment's bytes read by a walk whose copies are not kept.
pub struct Replay<'a>(pub &'a [u8]);

impl Frames for Replay<'_> {
    fn header(&mut self, at: u64) -> Option<[u8; 9]> {
        header_at(self.0, at)
    }

    fn copy(&mut self, _at: u64, _len: u64) {}
}

fn header_at(data: &[u8], at: u64) -> Option<[u8; 9]> {
    let at = usize::try_from(at).ok()?;
    data.get(at..at.checked_add(9)?)?.try_into().ok()
}

struct Segment<'a> {
    data: &'a [u8],
    copies: &'a mut Vec<(u64, u64)>,
}

impl Frames for Segment<'_> {
    fn header(&mut self, at: u64) -> Option<[u8; 9]> {
        header_at(self.data, at)
    }

    fn copy(&mut self, at: u64, len: u64) {
        self.copies.push((at, len));
    }
}

fn check_copies(out: &Audit, len: u64, first: u64) -> Result<(), String> {
    let mut at = first;
    let mut copied = 0;
    for &(from, n) in &out.copies {
        if from < at || n == 0 || n > MAX_DATA as u64 || from + n > len {
            return Err(format!("copy {from}+{n} after {at} of {len}"));
        }
        at = from + n;
        copied += n;
    }
    if first + copied + out.skipped != len.max(first) {
        return Err(format!(
            "{first} + {copied} copied + {} skipped != {len}",
            out.skipped
        ));
    }
    if out.head_left > HEAD_MAX {
        return Err(format!("head_left {}", out.head_left));
    }
    Ok(())
}

/// Within the first `FRAMES_WALKED` frames and the copy budget (less the tail), every
/// frame header is copied, and every frame but a long DATA payload is copied whole; so is
/// the end of a frame begun in the segment before.
fn check_frames(
    data: &[u8],
    (first, frame, keep): (u64, u64, u64),
    out: &Audit,
) -> Result<(), String> {
    let len = data.len() as u64;
    let mut copied = vec![false; data.len()];
    copied[..first as usize].fill(true);
    for &(at, n) in &out.copies {
        copied[at as usize..(at + n) as usize].fill(true);
    }
    let keep = keep.min(len).min(HEAD_MAX - TAIL_DATA as u64);
    if let Some(i) = (0..keep).find(|&i| !copied[i as usize]) {
        return Err(format!("byte {i} of a frame begun before not copied"));
    }
    let budget_end = HEAD_MAX.saturating_sub(TAIL_DATA as u64);
    let mut spent = first.max(keep);
    let mut at = frame;
    for _ in 0..FRAMES_WALKED {
        if at + FRAME_HEADER > len {
            break;
        }
        let h = &data[at as usize..at as usize + 9];
        let payload = u64::from(h[0]) << 16 | u64::from(h[1]) << 8 | u64::from(h[2]);
        let whole = h[3] != 0 || payload <= SHORT_DATA;
        let must = if whole {
            at + FRAME_HEADER + payload
        } else {
            at + FRAME_HEADER
        }
        .min(len);
        spent += must.saturating_sub(at.max(first).max(keep));
        if spent > budget_end {
            break;
        }
        if let Some(i) = (at..must).find(|&i| !copied[i as usize]) {
            return Err(format!("frame at {at} ({h:?}): byte {i} not copied"));
        }
        at += FRAME_HEADER + payload;
    }
    Ok(())
}
