//! Decoding ring-buffer records into owned events.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use monitor_common::{ConnRole, Direction, EventHeader, EventKind, AF_INET6, HEADER_SIZE};
use thiserror::Error;

/// Smallest payload buffer made: a head or a small body fits, so a buffer handed back for
/// reuse serves the next event without growing.
pub(crate) const MIN_BUFFER: usize = 512;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record of {0} bytes is shorter than the event header")]
    Short(usize),
    #[error("record claims {claimed} payload bytes but carries {actual}")]
    Length { claimed: u32, actual: usize },
    #[error("record of unknown kind {0}")]
    Kind(u8),
    #[error("{kind:?} record of unknown direction {direction}")]
    Direction { kind: EventKind, direction: u8 },
}

/// One captured record with its payload copied out of the ring buffer, and the kernel's
/// `u8` codes decoded once, here.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub header: EventHeader,
    pub kind: EventKind,
    /// Which way the bytes moved; `None` for records of no direction (close, exec).
    pub direction: Option<Direction>,
    pub role: ConnRole,
    pub data: Vec<u8>,
}

impl Event {
    pub(crate) fn decode(raw: &[u8]) -> Result<Event, DecodeError> {
        Event::decode_with(raw, |_| None)
    }

    /// Decodes into a spare buffer when `spare` (asked with the connection's socket) has
    /// one: the shard that handled an earlier event gives its buffer back, so steady traffic
    /// allocates nothing here, and no buffer is freed on another thread than its own.
    pub(crate) fn decode_with(
        raw: &[u8],
        spare: impl FnOnce(u64) -> Option<Vec<u8>>,
    ) -> Result<Event, DecodeError> {
        if raw.len() < HEADER_SIZE {
            return Err(DecodeError::Short(raw.len()));
        }
        // SAFETY: EventHeader is plain old data and `raw` holds at least its size.
        let header: EventHeader =
            unsafe { std::ptr::read_unaligned(raw.as_ptr().cast::<EventHeader>()) };
        let payload = &raw[HEADER_SIZE..];
        if header.len as usize > payload.len() {
            return Err(DecodeError::Length {
                claimed: header.len,
                actual: payload.len(),
            });
        }
        let payload = &payload[..header.len as usize];
        let mut data = spare(header.sock).unwrap_or_default();
        data.clear();
        if !payload.is_empty() {
            data.reserve(payload.len().max(MIN_BUFFER));
            data.extend_from_slice(payload);
        }
        Event::new(header, data)
    }

    /// An event from a header and its payload, the header's codes checked.
    pub(crate) fn new(header: EventHeader, data: Vec<u8>) -> Result<Event, DecodeError> {
        let kind = EventKind::from_u8(header.kind).ok_or(DecodeError::Kind(header.kind))?;
        let direction = match kind {
            EventKind::Data | EventKind::Gap => Some(Direction::from_u8(header.direction).ok_or(
                DecodeError::Direction {
                    kind,
                    direction: header.direction,
                },
            )?),
            EventKind::Close | EventKind::Exec => None,
        };
        Ok(Event {
            header,
            kind,
            direction,
            role: ConnRole::from_u8(header.role),
            data,
        })
    }

    /// Key that stays the same for every event of one connection.
    pub(crate) fn conn_key(&self) -> (u64, u64) {
        (self.header.sock, self.header.conn_id)
    }

    pub(crate) fn local(&self) -> SocketAddr {
        SocketAddr::new(
            addr(self.header.family, &self.header.local_addr),
            self.header.local_port,
        )
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        SocketAddr::new(
            addr(self.header.family, &self.header.remote_addr),
            self.header.remote_port,
        )
    }

    pub(crate) fn comm(&self) -> String {
        let c = &self.header.comm;
        let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
        String::from_utf8_lossy(&c[..end]).into_owned()
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) are shown as the IPv4 address they are.
fn addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_records_are_errors() {
        assert_eq!(
            Event::decode(&[0u8; 10]).unwrap_err(),
            DecodeError::Short(10)
        );
        let mut raw = vec![0u8; HEADER_SIZE + 2];
        // len field claims more than present
        let h = EventHeader {
            ts_ns: 0,
            sock: 0,
            conn_id: 0,
            stream_offset: 0,
            pid: 0,
            tid: 0,
            fd: 0,
            len: 9,
            orig_len: 9,
            kind: 1,
            direction: 1,
            role: 0,
            flags: 0,
            family: 2,
            local_port: 0,
            remote_port: 0,
            lost: 0,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            comm: [0; 16],
        };
        unsafe { std::ptr::write_unaligned(raw.as_mut_ptr().cast::<EventHeader>(), h) };
        assert!(matches!(
            Event::decode(&raw),
            Err(DecodeError::Length { claimed: 9, .. })
        ));
    }
}
