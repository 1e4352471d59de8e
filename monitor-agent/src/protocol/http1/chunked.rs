//! Chunked transfer-coding walker. It only tracks positions (never stores
//! body, extension or trailer bytes), so memory is constant per message.

/// Chunk-size lines are tiny in practice; a long one is an attack or garbage.
const MAX_SIZE_LINE: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum ChunkError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("chunk size line too long")]
    LineTooLong,
    #[error("chunk data not followed by CRLF")]
    BadDataEnd,
    #[error("trailer section too large")]
    TrailerTooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` counts them to reject empty/overlong sizes.
    Size {
        digits: u8,
    },
    /// Extensions or whitespace after the size, skipped until end of line.
    Ext,
    SizeLf,
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerLineStart,
    TrailerLine,
    TrailerEndLf,
    Done,
}

#[derive(Debug)]
pub(super) struct Chunked {
    state: State,
    size: u64,
    line_len: usize,
    trailer_bytes: usize,
    max_trailer: usize,
}

impl Chunked {
    pub(super) fn new(max_trailer: usize) -> Self {
        Chunked {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_bytes: 0,
            max_trailer,
        }
    }

    /// Consumes bytes of the coded body. Returns how many were consumed and,
    /// on success, whether the body ended (no byte past the end is taken);
    /// on error, the consumed count stops before the offending byte.
    pub(super) fn feed(&mut self, data: &[u8]) -> (usize, Result<bool, ChunkError>) {
        let mut i = 0;
        while i < data.len() {
            if let State::Data { remaining } = self.state {
                let avail = (data.len() - i) as u64;
                let n = remaining.min(avail);
                i += n as usize;
                let left = remaining - n;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                continue;
            }
            if let Err(e) = self.byte(data[i]) {
                return (i, Err(e));
            }
            i += 1;
            if self.state == State::Done {
                return (i, Ok(true));
            }
        }
        (i, Ok(self.state == State::Done))
    }

    /// Absorbs a capture gap if it lies entirely inside chunk data, the only
    /// place where we know exactly what the missing bytes were.
    pub(super) fn skip(&mut self, len: u64) -> bool {
        match self.state {
            State::Data { remaining } if len <= remaining => {
                let left = remaining - len;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                true
            }
            _ => false,
        }
    }

    fn byte(&mut self, b: u8) -> Result<(), ChunkError> {
        match self.state {
            State::Size { digits } => {
                self.line_len += 1;
                if let Some(d) = (b as char).to_digit(16) {
                    if digits >= 16 {
                        return Err(ChunkError::BadSize);
                    }
                    self.size = (self.size << 4) | u64::from(d);
                    self.state = State::Size { digits: digits + 1 };
                } else if digits == 0 {
                    return Err(ChunkError::BadSize);
                } else {
                    self.end_of_size(b)?;
                }
            }
            State::Ext => {
                self.line_len += 1;
                if self.line_len > MAX_SIZE_LINE {
                    return Err(ChunkError::LineTooLong);
                }
                self.end_of_size(b)?;
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadSize);
                }
                self.start_data();
            }
            State::Data { .. } => {}
            State::DataCr => match b {
                b'\r' => self.state = State::DataLf,
                b'\n' => self.state = State::Size { digits: 0 },
                _ => return Err(ChunkError::BadDataEnd),
            },
            State::DataLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadDataEnd);
                }
                self.state = State::Size { digits: 0 };
            }
            State::TrailerLineStart => {
                self.count_trailer()?;
                match b {
                    b'\r' => self.state = State::TrailerEndLf,
                    b'\n' => self.state = State::Done,
                    _ => self.state = State::TrailerLine,
                }
            }
            State::TrailerLine => {
                self.count_trailer()?;
                if b == b'\n' {
                    self.state = State::TrailerLineStart;
                }
            }
            State::TrailerEndLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadSize);
                }
                self.state = State::Done;
            }
            State::Done => {}
        }
        Ok(())
    }

    /// Handles a non-hex byte on the size line (after at least one digit).
    fn end_of_size(&mut self, b: u8) -> Result<(), ChunkError> {
        match b {
            b'\r' => self.state = State::SizeLf,
            b'\n' => self.start_data(),
            b';' | b' ' | b'\t' => self.state = State::Ext,
            _ if self.state == State::Ext && b >= 0x20 && b != 0x7f => {}
            _ => return Err(ChunkError::BadSize),
        }
        Ok(())
    }

    fn start_data(&mut self) {
        self.line_len = 0;
        self.state = if self.size == 0 {
            State::TrailerLineStart
        } else {
            State::Data {
                remaining: self.size,
            }
        };
        self.size = 0;
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer {
            return Err(ChunkError::TrailerTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &[u8]) -> (usize, Result<bool, ChunkError>) {
        Chunked::new(1024).feed(body)
    }

    #[test]
    fn decodes_extensions_trailers_and_mixed_case_hex() {
        let body = b"5;name=val\r\nhello\r\nA\r\n0123456789\r\nb \r\n0123456789a\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (n, r) = run(body);
        assert_eq!(r, Ok(true));
        assert_eq!(&body[n..], b"NEXT");
    }

    #[test]
    fn byte_by_byte_matches_whole() {
        let body = b"1f\r\n0123456789012345678901234567890\r\n0\r\n\r\n";
        let mut c = Chunked::new(1024);
        for (i, b) in body.iter().enumerate() {
            let (n, r) = c.feed(std::slice::from_ref(b));
            assert_eq!(n, 1);
            assert_eq!(r, Ok(i == body.len() - 1));
        }
    }

    #[test]
    fn rejects_bad_size_lines() {
        assert_eq!(run(b"zz\r\n").1, Err(ChunkError::BadSize));
        assert_eq!(run(b"5x\r\n").1, Err(ChunkError::BadSize));
        assert_eq!(run(b"11111111111111111\r\n").1, Err(ChunkError::BadSize));
        assert_eq!(run(b"2\r\nabX").1, Err(ChunkError::BadDataEnd));
        let (n, r) = run(b"1\r\na\r\nHTTP/1.1 200 OK");
        assert_eq!((n, r), (6, Err(ChunkError::BadSize)));
    }

    #[test]
    fn gap_inside_chunk_data_is_absorbed_but_not_elsewhere() {
        let mut c = Chunked::new(1024);
        assert_eq!(c.feed(b"a\r\n01").1, Ok(false));
        assert!(c.skip(8));
        assert!(!c.skip(1));
        assert_eq!(c.feed(b"\r\n0\r\n\r\n").1, Ok(true));
    }
}
