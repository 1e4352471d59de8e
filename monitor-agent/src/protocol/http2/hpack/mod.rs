//! HPACK (RFC 7541) header-block decoder for a passive observer.
//!
//! # Why our own decoder
//!
//! `h2` keeps its HPACK codec private (not public API), and the standalone
//! crates assume they see a connection from its first octet. We observe
//! traffic passively: the agent may attach to a connection that is already
//! open, and a captured header block can be lost (ring-buffer drop). After
//! either, the dynamic table's older contents are unknown. This decoder keeps
//! going in that state: it decodes everything that does not depend on the
//! unknown part, and reports `None` for anything that does. It never reports
//! a wrong name or value.
//!
//! # Decoding with an unknown table
//!
//! Let `H` be the entries inserted since the decoder lost track, newest first.
//! The real table `R` is a newest-first prefix of `H` followed by an unknown
//! tail of older entries (which may be empty). The known part `O` (what
//! `table::DynTable` holds) is also a prefix of `H`. Then:
//!
//! * **Lookups are exact within `O`.** Dynamic indices count newest-first, so
//!   for any index a correct encoder can send (`<= |R|`) that is also
//!   `<= |O|`, `O` and `R` name the same entry of `H`. That holds whether `O`
//!   is shorter than `R` (we evicted early) or longer (we kept an entry the
//!   peer already evicted). So eviction only has to be *approximately* right
//!   to stay correct.
//! * **Beyond `O`** the index may name the unknown tail: the field is
//!   reported as `None`. Only once the tail is provably gone ("complete") is
//!   such an index a compression error.
//! * **When the tail is provably gone.** After a dynamic table size update
//!   the maximum size `M` is known. Every entry is at least 32 octets, so if
//!   the known entries already total `S` with `S + 32 > M`, the real table
//!   (which fits in `M`) has no room for even one more entry behind them. If
//!   `M < 32` nothing fits at all, and an update to 0 empties the table.
//!   Likewise an insertion larger than `M` empties the table (§4.4).
//! * **Staying complete.** While `M` is known, the peer and we evict
//!   oldest-first until the new entry fits; since the real table is then a
//!   prefix of `O`, we evict no more than the peer does, so "no unknown tail"
//!   remains true. (If we keep an entry the peer evicted, an *invalid*
//!   reference to it decodes instead of failing; we do not validate the
//!   encoder, we only never misreport valid traffic.)
//! * **Unknown names.** A literal with incremental indexing whose name is an
//!   index into the unknown tail inserts an entry with a known value and an
//!   unknown name. Its true size (`name + value + 32`) is unknown; we count
//!   `value + 32`, a lower bound. A lower bound is enough for both arguments
//!   above: `S_lower + 32 > M` still implies `S_true + 32 > M`, and
//!   under-counting only makes us evict later than the peer, which only ever
//!   keeps an entry too long (safe). Such an entry reports `(None, value)`.
//!   [`Decoder::is_exact`] additionally requires that no such entry remains.
//! * **Unknown `M`** (no size update seen since losing track): we evict
//!   against the allowed maximum (`set_max_allowed`, default 4096). Any bound
//!   is safe for lookups per the first point; completeness is never claimed
//!   without a known `M`.
//! * **Memory caps** (`table::MAX_TABLE_OCTETS`, `table::MAX_ENTRIES`):
//!   dropping the oldest known entries is an early eviction, so it is safe,
//!   but the table is then no longer complete.
//!
//! # Performance
//!
//! `decode` allocates only when inserting into the dynamic table (one
//! allocation per entry, name and value together). Huffman strings are
//! decoded into two buffers owned by the decoder and reused across blocks;
//! the Huffman decoder is a table-driven 4-bit state machine (see
//! `huffman`).

pub(crate) mod huffman;
mod table;

#[cfg(test)]
pub(crate) mod tests;

use table::{DynTable, Entry, ENTRY_OVERHEAD};

/// Initial `SETTINGS_HEADER_TABLE_SIZE` and dynamic table size (RFC 7540 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Longest string literal accepted, encoded or decoded.
pub const MAX_STRING_LEN: usize = 64 * 1024;

/// Largest integer accepted on the wire (§5.1 leaves the limit to us).
const MAX_INT: u64 = u32::MAX as u64;

/// A header block could not be decoded. The decoder has already called
/// [`Decoder::lose_track`] when it returns one of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum HpackError {
    #[error("HPACK index 0 is invalid")]
    ZeroIndex,
    #[error("HPACK index {index} is beyond the dynamic table ({table_len} entries)")]
    IndexOutOfRange { index: usize, table_len: usize },
    #[error("HPACK integer exceeds 2^32 - 1 or is over-long")]
    IntegerOverflow,
    #[error("HPACK header block is truncated")]
    Truncated,
    #[error("HPACK Huffman string contains EOS")]
    HuffmanEos,
    #[error("HPACK Huffman padding is longer than 7 bits or not all ones")]
    HuffmanPadding,
    #[error("HPACK string of {len} octets exceeds the {MAX_STRING_LEN}-octet limit")]
    StringTooLong { len: usize },
    #[error("HPACK table size update to {size} exceeds the allowed {allowed}")]
    SizeUpdateTooLarge { size: usize, allowed: usize },
    #[error("HPACK table size update after a header field")]
    SizeUpdateNotAtStart,
}

/// HPACK decoder state for one direction of one connection.
pub struct Decoder {
    table: DynTable,
    /// Current maximum table size, once known (always for `new()`, after the
    /// first size update since losing track otherwise).
    max_size: Option<usize>,
    /// `SETTINGS_HEADER_TABLE_SIZE` bound for size updates.
    max_allowed: usize,
    /// Whether `max_allowed` reflects what the peer really allows (set by
    /// `new()` and `set_max_allowed`, not by `attached()`); size updates
    /// above an unverified default are not errors.
    allowed_known: bool,
    /// No real dynamic-table entry exists beyond the known ones (module docs).
    complete: bool,
    /// Reusable Huffman output buffers.
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The table's entries are headers from traffic: only their count is shown.
#[allow(
    clippy::missing_fields_in_debug,
    reason = "entries may hold credentials"
)]
impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("entries", &self.table.len())
            .field("size", &self.table.size())
            .field("unknown_names", &self.table.unknown_names())
            .field("max_size", &self.max_size)
            .field("max_allowed", &self.max_allowed)
            .field("complete", &self.complete)
            .finish()
    }
}

impl Decoder {
    /// A decoder for a connection seen from its start: empty table, max size 4096.
    pub fn new() -> Self {
        Decoder {
            table: DynTable::default(),
            max_size: Some(DEFAULT_TABLE_SIZE),
            max_allowed: DEFAULT_TABLE_SIZE,
            allowed_known: true,
            complete: true,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// A decoder for a connection first seen mid-life: the table's contents
    /// and max size are unknown (and so is the peer's table-size setting).
    pub fn attached() -> Self {
        let mut d = Self::new();
        d.allowed_known = false;
        d.lose_track();
        d
    }

    /// A header block was lost (not captured): everything known so far is
    /// forgotten, because the lost block may have inserted entries (shifting
    /// indices) or changed the size. Same table state as `attached()`; the
    /// allowed maximum from SETTINGS is kept.
    pub fn lose_track(&mut self) {
        self.table.clear();
        self.max_size = None;
        self.complete = false;
    }

    /// Upper bound from SETTINGS_HEADER_TABLE_SIZE (what the peer allows);
    /// size updates above it are errors only when the decoder is exact.
    /// Default 4096. This does not resize the table: the encoder must
    /// announce the change with a size update (§4.2).
    pub fn set_max_allowed(&mut self, n: usize) {
        self.max_allowed = n;
        self.allowed_known = true;
    }

    /// True when every dynamic-table entry is known (fresh connection, or the
    /// unknown tail is provably gone and no entry has an unknown name).
    pub fn is_exact(&self) -> bool {
        self.complete && self.table.unknown_names() == 0
    }

    /// Number of entries in the known part of the dynamic table.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Size in octets (RFC 7541 §4.1 accounting) of the known part; a lower
    /// bound of its true size while some entry's name is unknown.
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Decodes one complete header block, calling `f(name, value)` for each
    /// field in order; `None` means "refers to a dynamic-table entry this
    /// decoder never saw". On an error the decoder's table may be
    /// inconsistent, so it calls `lose_track()` itself before returning Err
    /// (fields already emitted stay emitted).
    // The callback type is the documented API; an alias would hide it.
    #[allow(clippy::type_complexity)]
    pub fn decode(
        &mut self,
        block: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>, Option<&[u8]>),
    ) -> Result<(), HpackError> {
        self.decode_wanted(block, &|_| true, f)
    }

    /// Like `decode`, but literal fields that are not added to the table and whose (known)
    /// name `wanted` rejects are skipped without decoding their value and without calling
    /// `f`: most of a response's headers (`date`, `server`...) are Huffman-coded literals
    /// nobody asked for. Their Huffman coding is then not checked either.
    #[allow(clippy::type_complexity)]
    pub fn decode_wanted(
        &mut self,
        block: &[u8],
        wanted: &dyn Fn(&[u8]) -> bool,
        f: &mut dyn FnMut(Option<&[u8]>, Option<&[u8]>),
    ) -> Result<(), HpackError> {
        let r = self.decode_block(block, wanted, f);
        if r.is_err() {
            self.lose_track();
        }
        r
    }

    #[allow(clippy::type_complexity)]
    fn decode_block(
        &mut self,
        block: &[u8],
        wanted: &dyn Fn(&[u8]) -> bool,
        f: &mut dyn FnMut(Option<&[u8]>, Option<&[u8]>),
    ) -> Result<(), HpackError> {
        let mut pos = 0;
        let mut fields_seen = false;
        while let Some(&b) = block.get(pos) {
            if b & 0x80 != 0 {
                // §6.1 indexed header field.
                let index = read_int(block, &mut pos, 7)?;
                let (name, value) = self.table.field(index, self.complete)?;
                f(name, value);
                fields_seen = true;
            } else if b & 0xe0 == 0x20 {
                // §6.3 dynamic table size update.
                let size = read_int(block, &mut pos, 5)?;
                if fields_seen {
                    return Err(HpackError::SizeUpdateNotAtStart);
                }
                self.size_update(size)?;
            } else {
                // §6.2: 01 with incremental indexing (6-bit index), 0000
                // without indexing, 0001 never indexed (4-bit index).
                let indexing = b & 0x40 != 0;
                let index = read_int(block, &mut pos, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    Some(read_string(block, &mut pos, &mut self.name_buf)?)
                } else {
                    self.table.name(index, self.complete)?
                };
                fields_seen = true;
                if !indexing && name.is_some_and(|n| !wanted(n)) {
                    skip_string(block, &mut pos)?;
                    continue;
                }
                let value = read_string(block, &mut pos, &mut self.value_buf)?;
                f(name, Some(value));
                if indexing {
                    let entry = Entry::new(name, value);
                    self.insert(entry);
                }
            }
        }
        Ok(())
    }

    fn size_update(&mut self, size: usize) -> Result<(), HpackError> {
        if size > self.max_allowed && self.allowed_known && self.is_exact() {
            return Err(HpackError::SizeUpdateTooLarge {
                size,
                allowed: self.max_allowed,
            });
        }
        self.max_size = Some(size);
        self.table.evict_to(size);
        self.check_complete();
        Ok(())
    }

    fn insert(&mut self, entry: Entry) {
        let max = self.max_size.unwrap_or(self.max_allowed);
        // Even a lower bound above a known max means the peer's entry is too
        // big too: both tables are now empty (§4.4).
        let empties = entry.size() > max && self.max_size.is_some();
        self.table.push(entry, max);
        if self.table.enforce_caps() {
            self.complete = false;
        }
        if empties {
            self.complete = true;
        }
        self.check_complete();
    }

    /// Declares the tail gone when the max size is known and not even one
    /// more minimal entry fits behind the known ones (see module docs).
    fn check_complete(&mut self) {
        if let Some(max) = self.max_size {
            if self.table.size() + ENTRY_OVERHEAD > max {
                self.complete = true;
            }
        }
    }
}

/// Reads a §5.1 integer with an `n`-bit prefix starting at `block[*pos]`
/// (which the caller has checked exists).
#[inline]
fn read_int(block: &[u8], pos: &mut usize, n: u8) -> Result<usize, HpackError> {
    let mask = (1u8 << n) - 1;
    let first = block[*pos] & mask;
    *pos += 1;
    if first < mask {
        return Ok(usize::from(first));
    }
    let mut value = u64::from(mask);
    let mut shift = 0u32;
    loop {
        let Some(&b) = block.get(*pos) else {
            return Err(HpackError::Truncated);
        };
        *pos += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > MAX_INT {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value as usize);
        }
        shift += 7;
        if shift > 28 {
            // A sixth continuation octet: over-long even if its bits are zero.
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Reads a §5.2 string literal: borrowed from `block` when raw, decoded into
/// `buf` when Huffman-coded.
#[inline]
/// Steps over a string literal without decoding it.
fn skip_string(block: &[u8], pos: &mut usize) -> Result<(), HpackError> {
    if block.get(*pos).is_none() {
        return Err(HpackError::Truncated);
    }
    let len = read_int(block, pos, 7)?;
    if len > MAX_STRING_LEN {
        return Err(HpackError::StringTooLong { len });
    }
    if block.len() < *pos + len {
        return Err(HpackError::Truncated);
    }
    *pos += len;
    Ok(())
}

fn read_string<'a>(
    block: &'a [u8],
    pos: &mut usize,
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], HpackError> {
    let Some(&first) = block.get(*pos) else {
        return Err(HpackError::Truncated);
    };
    let len = read_int(block, pos, 7)?;
    if len > MAX_STRING_LEN {
        return Err(HpackError::StringTooLong { len });
    }
    let raw = block.get(*pos..*pos + len).ok_or(HpackError::Truncated)?;
    *pos += len;
    if first & 0x80 == 0 {
        return Ok(raw);
    }
    huffman::decode(raw, buf)?;
    if buf.len() > MAX_STRING_LEN {
        return Err(HpackError::StringTooLong { len: buf.len() });
    }
    Ok(buf)
}
