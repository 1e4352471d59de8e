//! Decodes a sequence of header blocks on one connection's decoder, fresh or joined
//! mid-life, with the peer's allowed table size from the input: it must never panic, the
//! known table must stay within the allowed size, every emitted string within the
//! literal limit, and the work per block linear in the block (no field is emitted more
//! often than the block has bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_agent::protocol::http2::hpack::{Decoder, DEFAULT_TABLE_SIZE, MAX_STRING_LEN};

fuzz_target!(|input: &[u8]| {
    let Some((&[mode, allowed_hi, allowed_lo], mut rest)) = input.split_first_chunk::<3>() else {
        return;
    };
    let mut d = if mode & 1 == 0 { Decoder::new() } else { Decoder::attached() };
    let allowed = if mode & 2 == 0 {
        DEFAULT_TABLE_SIZE
    } else {
        d.set_max_allowed(usize::from(u16::from_be_bytes([allowed_hi, allowed_lo])));
        usize::from(u16::from_be_bytes([allowed_hi, allowed_lo]))
    };
    // Blocks follow as [length (15 bits) with the top bit choosing decode_wanted, bytes].
    while let [hi, lo, tail @ ..] = rest {
        let len = u16::from_be_bytes([*hi, *lo]);
        let n = usize::from(len & 0x7fff).min(tail.len());
        let block = &tail[..n];
        let mut fields = 0usize;
        let mut check = |name: Option<&[u8]>, value: Option<&[u8]>| {
            fields += 1;
            assert!(name.map_or(0, <[u8]>::len) <= MAX_STRING_LEN);
            assert!(value.map_or(0, <[u8]>::len) <= MAX_STRING_LEN);
        };
        let _ = if len & 0x8000 == 0 {
            d.decode(block, &mut check)
        } else {
            d.decode_wanted(block, &|name: &[u8]| name.starts_with(b":"), &mut check)
        };
        assert!(fields <= block.len(), "{fields} fields from {} bytes", block.len());
        // A decoder joined mid-life takes size updates above an unverified default.
        let allowed_known = mode & 1 == 0 || mode & 2 != 0;
        if allowed_known && d.is_exact() {
            assert!(d.table_size() <= allowed.max(DEFAULT_TABLE_SIZE), "{}", d.table_size());
        }
        rest = &tail[n..];
    }
});
