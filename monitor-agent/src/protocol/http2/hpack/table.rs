//! The HPACK static table (RFC 7541 Appendix A) and the known part of the
//! dynamic table (§2.3.2, §4).
//!
//! [`DynTable`] holds the entries this decoder has seen inserted, newest
//! first. For an attached decoder they are only a *prefix* of the real table
//! (see the module docs of `hpack` for why that is enough to stay correct).

use std::collections::VecDeque;

use super::HpackError;

/// Appendix A. Index `i` (1-based on the wire) is `STATIC_TABLE[i - 1]`.
pub(super) static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

const STATIC_LEN: usize = STATIC_TABLE.len();

/// Per-entry overhead counted by the RFC (§4.1).
pub(super) const ENTRY_OVERHEAD: usize = 32;

/// Hard caps on the known part, whatever size the peer negotiates: beyond
/// them the oldest known entries are dropped and the table stops being
/// complete. Dropping known entries early is always safe (lookups that would
/// have hit them report "unknown" instead).
pub(super) const MAX_TABLE_OCTETS: usize = 256 * 1024;
pub(super) const MAX_ENTRIES: usize = MAX_TABLE_OCTETS / ENTRY_OVERHEAD;

/// A field as reported to the caller: `None` where this decoder does not know.
pub(super) type FieldRef<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// `name_len` of an entry whose name this decoder never saw.
const NAME_UNKNOWN: u32 = u32::MAX;

/// One dynamic-table entry: name and value in a single allocation.
pub(super) struct Entry {
    data: Box<[u8]>,
    name_len: u32,
}

impl Entry {
    /// `name` is `None` when the field named a table entry we never saw.
    /// Callers keep names and values under `MAX_STRING_LEN`, far below
    /// `u32::MAX`.
    pub(super) fn new(name: Option<&[u8]>, value: &[u8]) -> Self {
        let name_bytes = name.unwrap_or(&[]);
        let mut data = Vec::with_capacity(name_bytes.len() + value.len());
        data.extend_from_slice(name_bytes);
        data.extend_from_slice(value);
        Entry {
            data: data.into_boxed_slice(),
            name_len: match name {
                Some(n) => n.len() as u32,
                None => NAME_UNKNOWN,
            },
        }
    }

    fn name_known(&self) -> bool {
        self.name_len != NAME_UNKNOWN
    }

    fn name(&self) -> Option<&[u8]> {
        self.name_known()
            .then(|| &self.data[..self.name_len as usize])
    }

    fn value(&self) -> &[u8] {
        if self.name_known() {
            &self.data[self.name_len as usize..]
        } else {
            &self.data
        }
    }

    /// RFC size (name + value + 32) when the name is known; otherwise a lower
    /// bound (the name's length is unknown, counted as 0).
    pub(super) fn size(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

/// The known newest-first part of the dynamic table.
#[derive(Default)]
pub(super) struct DynTable {
    /// Front is the newest entry (dynamic index 1, wire index 62).
    entries: VecDeque<Entry>,
    /// Sum of `Entry::size()`: exact when `unknown_names == 0`, otherwise a
    /// lower bound of the true size of these entries.
    size: usize,
    /// Entries whose name (hence true size) is unknown.
    unknown_names: usize,
}

impl DynTable {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) fn unknown_names(&self) -> usize {
        self.unknown_names
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.unknown_names = 0;
    }

    fn pop_oldest(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.size -= e.size();
            self.unknown_names -= usize::from(!e.name_known());
        }
    }

    /// Evicts oldest entries until `size <= max` (§4.3, §4.4).
    pub(super) fn evict_to(&mut self, max: usize) {
        while self.size > max {
            self.pop_oldest();
        }
    }

    /// Inserts as §4.4 does with maximum size `max`: evict until the new
    /// entry fits; an entry larger than `max` empties the table and is not
    /// added.
    pub(super) fn push(&mut self, entry: Entry, max: usize) {
        let s = entry.size();
        if s > max {
            self.clear();
            return;
        }
        self.evict_to(max - s);
        self.size += s;
        self.unknown_names += usize::from(!entry.name_known());
        self.entries.push_front(entry);
    }

    /// Applies [`MAX_ENTRIES`] / [`MAX_TABLE_OCTETS`]; returns whether any
    /// entry had to be dropped.
    pub(super) fn enforce_caps(&mut self) -> bool {
        let mut dropped = false;
        while self.entries.len() > MAX_ENTRIES || self.size > MAX_TABLE_OCTETS {
            self.pop_oldest();
            dropped = true;
        }
        dropped
    }

    /// The field at wire index `index` (static or dynamic) as
    /// `(name, value)`. Beyond the known entries: an error when `complete`
    /// (no real entry exists there), otherwise `(None, None)`.
    #[inline]
    pub(super) fn field(&self, index: usize, complete: bool) -> Result<FieldRef<'_>, HpackError> {
        if index == 0 {
            return Err(HpackError::ZeroIndex);
        }
        if index <= STATIC_LEN {
            let (n, v) = STATIC_TABLE[index - 1];
            return Ok((Some(n), Some(v)));
        }
        match self.entries.get(index - STATIC_LEN - 1) {
            Some(e) => Ok((e.name(), Some(e.value()))),
            None if complete => Err(self.out_of_range(index)),
            None => Ok((None, None)),
        }
    }

    /// The name at wire index `index` (for literals with an indexed name).
    #[inline]
    pub(super) fn name(&self, index: usize, complete: bool) -> Result<Option<&[u8]>, HpackError> {
        self.field(index, complete).map(|(n, _)| n)
    }

    fn out_of_range(&self, index: usize) -> HpackError {
        HpackError::IndexOutOfRange {
            index,
            table_len: self.entries.len(),
        }
    }

    /// `(name, value)` of every known entry, newest first.
    #[cfg(test)]
    pub(super) fn snapshot(&self) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        self.entries
            .iter()
            .map(|e| (e.name().map(<[u8]>::to_vec), e.value().to_vec()))
            .collect()
    }
}
