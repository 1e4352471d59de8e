//! Unit and property tests for the HPACK decoder: RFC 7541 Appendix C,
//! Huffman round trips, malformed input, and mid-connection decoding.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::huffman::{self, CODES};
use super::table::STATIC_TABLE;
use super::{Decoder, HpackError, MAX_STRING_LEN};

type Field = (Option<Vec<u8>>, Option<Vec<u8>>);

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Decodes `block`, returning the emitted fields and the result.
fn run(d: &mut Decoder, block: &[u8]) -> (Vec<Field>, Result<(), HpackError>) {
    let mut out = Vec::new();
    let r = d.decode(block, &mut |n, v| {
        out.push((n.map(<[u8]>::to_vec), v.map(<[u8]>::to_vec)));
    });
    (out, r)
}

/// Decodes `block`, expecting success and every field known.
fn known(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
    let (fields, r) = run(d, block);
    r.unwrap();
    fields
        .into_iter()
        .map(|(n, v)| {
            (
                String::from_utf8(n.expect("name known")).unwrap(),
                String::from_utf8(v.expect("value known")).unwrap(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The known table as `name: value` strings, newest first.
fn table(d: &Decoder) -> Vec<String> {
    d.table
        .snapshot()
        .into_iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                n.map_or("?".into(), |n| String::from_utf8(n).unwrap()),
                String::from_utf8(v).unwrap()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// A tiny encoder, written from the RFC, to produce test input.
// ---------------------------------------------------------------------------

pub(crate) fn huff_encode(s: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in s {
        let (code, len) = CODES[b as usize];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
}

pub(crate) fn enc_int(out: &mut Vec<u8>, prefix_bits: u32, flags: u8, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

pub(crate) fn enc_str(out: &mut Vec<u8>, s: &[u8], huffman: bool) {
    if huffman {
        let mut h = Vec::new();
        huff_encode(s, &mut h);
        enc_int(out, 7, 0x80, h.len());
        out.extend_from_slice(&h);
    } else {
        enc_int(out, 7, 0, s.len());
        out.extend_from_slice(s);
    }
}

/// How the test encoder represents a field.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Indexed if the whole field is in a table, else a literal with indexing.
    Best,
    WithIndexing,
    WithoutIndexing,
    NeverIndexed,
}

/// An HPACK encoder with a dynamic table (RFC 7541 sections 2.3, 4 and 6), for tests here
/// and in the HTTP/2 session's tests.
#[derive(Default)]
pub(crate) struct Encoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max: usize,
}

impl Encoder {
    pub(crate) fn new() -> Self {
        Encoder {
            max: 4096,
            ..Default::default()
        }
    }

    fn evict(&mut self, limit: usize) {
        while self.size > limit {
            let (n, v) = self.table.pop_back().unwrap();
            self.size -= n.len() + v.len() + 32;
        }
    }

    pub(crate) fn size_update(&mut self, out: &mut Vec<u8>, max: usize) {
        enc_int(out, 5, 0x20, max);
        self.max = max;
        self.evict(max);
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let s = name.len() + value.len() + 32;
        if s > self.max {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(self.max - s);
        self.table.push_front((name.to_vec(), value.to_vec()));
        self.size += s;
    }

    /// (index of the whole field, index of the name), 1-based wire indices.
    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let all = STATIC_TABLE
            .iter()
            .map(|&(n, v)| (n, v))
            .chain(self.table.iter().map(|(n, v)| (&n[..], &v[..])));
        let (mut full, mut by_name) = (None, None);
        for (i, (n, v)) in all.enumerate() {
            if n == name {
                by_name.get_or_insert(i + 1);
                if v == value {
                    full = Some(i + 1);
                    break;
                }
            }
        }
        (full, by_name)
    }

    pub(crate) fn field(
        &mut self,
        out: &mut Vec<u8>,
        name: &[u8],
        value: &[u8],
        mode: Mode,
        huff: bool,
    ) {
        let (full, by_name) = self.find(name, value);
        let (flags, prefix) = match mode {
            Mode::Best => {
                if let Some(i) = full {
                    enc_int(out, 7, 0x80, i);
                    return;
                }
                (0x40, 6)
            }
            Mode::WithIndexing => (0x40, 6),
            Mode::WithoutIndexing => (0x00, 4),
            Mode::NeverIndexed => (0x10, 4),
        };
        if let Some(i) = by_name {
            enc_int(out, prefix, flags, i);
        } else {
            enc_int(out, prefix, flags, 0);
            enc_str(out, name, huff);
        }
        enc_str(out, value, huff);
        if flags == 0x40 {
            self.insert(name, value);
        }
    }
}

// ---------------------------------------------------------------------------
// RFC 7541 Appendix C
// ---------------------------------------------------------------------------

#[test]
fn c2_field_representations() {
    let mut d = Decoder::new();
    let wire = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    assert_eq!(
        known(&mut d, &wire),
        pairs(&[("custom-key", "custom-header")])
    );
    assert_eq!(table(&d), ["custom-key: custom-header"]);
    assert_eq!(d.table_size(), 55);

    let mut d = Decoder::new();
    let wire = hex("040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(known(&mut d, &wire), pairs(&[(":path", "/sample/path")]));
    assert_eq!(d.table_len(), 0);

    let mut d = Decoder::new();
    let wire = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    assert_eq!(known(&mut d, &wire), pairs(&[("password", "secret")]));
    assert_eq!(d.table_len(), 0);

    let mut d = Decoder::new();
    assert_eq!(known(&mut d, &[0x82]), pairs(&[(":method", "GET")]));
    assert_eq!(d.table_len(), 0);
    assert!(d.is_exact());
}

fn requests(wires: [&str; 3]) {
    let mut d = Decoder::new();
    let mut expect = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    assert_eq!(known(&mut d, &hex(wires[0])), pairs(&expect));
    assert_eq!(table(&d), [":authority: www.example.com"]);
    assert_eq!(d.table_size(), 57);

    expect.push(("cache-control", "no-cache"));
    assert_eq!(known(&mut d, &hex(wires[1])), pairs(&expect));
    assert_eq!(
        table(&d),
        ["cache-control: no-cache", ":authority: www.example.com"]
    );
    assert_eq!(d.table_size(), 110);

    let expect = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    assert_eq!(known(&mut d, &hex(wires[2])), pairs(&expect));
    assert_eq!(
        table(&d),
        [
            "custom-key: custom-value",
            "cache-control: no-cache",
            ":authority: www.example.com"
        ]
    );
    assert_eq!(d.table_size(), 164);
    assert!(d.is_exact());
}

#[test]
fn c3_requests_without_huffman() {
    requests([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

#[test]
fn c4_requests_with_huffman() {
    requests([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

/// C.5/C.6 assume SETTINGS_HEADER_TABLE_SIZE = 256 from the start; a real
/// encoder announces that with a size update (`3fe101` = 256), prepended here.
fn responses(wires: [&str; 3]) {
    let mut d = Decoder::new();
    d.set_max_allowed(256);
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let mut first = hex("3fe101");
    first.extend(hex(wires[0]));
    assert_eq!(
        known(&mut d, &first),
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(
        table(&d),
        [
            "location: https://www.example.com".to_string(),
            format!("date: {date1}"),
            "cache-control: private".into(),
            ":status: 302".into(),
        ]
    );
    assert_eq!(d.table_size(), 222);

    assert_eq!(
        known(&mut d, &hex(wires[1])),
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(
        table(&d),
        [
            ":status: 307".to_string(),
            "location: https://www.example.com".into(),
            format!("date: {date1}"),
            "cache-control: private".into(),
        ]
    );
    assert_eq!(d.table_size(), 222);

    let date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
    let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    assert_eq!(
        known(&mut d, &hex(wires[2])),
        pairs(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", date2),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            ("set-cookie", cookie),
        ])
    );
    assert_eq!(
        table(&d),
        [
            format!("set-cookie: {cookie}"),
            "content-encoding: gzip".into(),
            format!("date: {date2}"),
        ]
    );
    assert_eq!(d.table_size(), 215);
    assert!(d.is_exact());
}

#[test]
fn c5_responses_without_huffman() {
    responses([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ]);
}

#[test]
fn c6_responses_with_huffman() {
    responses([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]);
}

// ---------------------------------------------------------------------------
// Huffman
// ---------------------------------------------------------------------------

/// Guards the typed-in Appendix B data: the code is complete (Kraft sum 1) and
/// canonical (codes follow from the lengths in symbol order), as the RFC's is.
#[test]
fn huffman_table_is_complete_and_canonical() {
    let kraft: u64 = CODES.iter().map(|&(_, len)| 1u64 << (30 - len)).sum();
    assert_eq!(kraft, 1 << 30);
    let mut order: Vec<usize> = (0..CODES.len()).collect();
    order.sort_by_key(|&s| (CODES[s].1, s));
    let mut code = 0u32;
    let mut len = CODES[order[0]].1;
    for (i, &s) in order.iter().enumerate() {
        if i > 0 {
            code += 1;
            code <<= CODES[s].1 - len;
            len = CODES[s].1;
        }
        assert_eq!(CODES[s], (code, len), "symbol {s}");
    }
    assert_eq!(CODES[256], (0x3fff_ffff, 30));
}

#[test]
fn huffman_round_trips_every_octet() {
    let mut buf = Vec::new();
    let all: Vec<u8> = (0..=255).collect();
    for s in std::iter::once(&all[..])
        .chain(all.chunks(1))
        .chain(all.chunks(7))
    {
        let mut enc = Vec::new();
        huff_encode(s, &mut enc);
        huffman::decode(&enc, &mut buf).unwrap();
        assert_eq!(buf, s);
    }
    let mut enc = Vec::new();
    huff_encode(b"www.example.com", &mut enc);
    assert_eq!(enc, hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"));
    huffman::decode(&[], &mut buf).unwrap();
    assert!(buf.is_empty());
}

#[test]
fn huffman_rejects_eos_and_bad_padding() {
    let mut buf = Vec::new();
    // 'a' (00011) + EOS (30 ones) + 5 padding ones.
    assert_eq!(
        huffman::decode(&[0x1f, 0xff, 0xff, 0xff, 0xff], &mut buf),
        Err(HpackError::HuffmanEos)
    );
    // EOS alone (30 ones + 2 padding ones).
    assert_eq!(
        huffman::decode(&[0xff; 4], &mut buf),
        Err(HpackError::HuffmanEos)
    );
    // 'a' then padding 000: not a prefix of EOS.
    assert_eq!(
        huffman::decode(&[0x18], &mut buf),
        Err(HpackError::HuffmanPadding)
    );
    // '0' (00000) then 11 ones: padding longer than 7 bits.
    assert_eq!(
        huffman::decode(&[0x07, 0xff], &mut buf),
        Err(HpackError::HuffmanPadding)
    );
    // A lone all-ones octet is 8 bits of padding.
    assert_eq!(
        huffman::decode(&[0xff], &mut buf),
        Err(HpackError::HuffmanPadding)
    );
    // '0' + 3 padding ones is fine.
    huffman::decode(&[0x07], &mut buf).unwrap();
    assert_eq!(buf, b"0");
}

// ---------------------------------------------------------------------------
// Malformed blocks
// ---------------------------------------------------------------------------

fn expect_err(block: &[u8], err: HpackError) {
    for mut d in [Decoder::new(), Decoder::attached()] {
        let (_, r) = run(&mut d, block);
        assert_eq!(r, Err(err.clone()), "block {block:02x?}");
        assert!(!d.is_exact());
        assert_eq!(d.table_len(), 0);
    }
}

#[test]
fn malformed_blocks_are_errors() {
    expect_err(&[0x80], HpackError::ZeroIndex);
    expect_err(&[0x82, 0x80], HpackError::ZeroIndex);
    // Truncated integers and strings.
    expect_err(&[0xff], HpackError::Truncated);
    expect_err(&[0xff, 0x80], HpackError::Truncated);
    expect_err(&[0x40], HpackError::Truncated);
    expect_err(&[0x40, 0x05, b'a'], HpackError::Truncated);
    expect_err(&[0x41], HpackError::Truncated);
    expect_err(&[0x41, 0x82, 0x07], HpackError::Truncated);
    // Oversized and over-long integers.
    expect_err(
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        HpackError::IntegerOverflow,
    );
    expect_err(
        &[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        HpackError::IntegerOverflow,
    );
    // 127 + 1 + (4 << 14) = 65664 octets.
    expect_err(
        &[0x40, 0x7f, 0x81, 0x80, 0x04],
        HpackError::StringTooLong { len: 65664 },
    );
    // Huffman errors inside a block.
    expect_err(&[0x41, 0x81, 0x18], HpackError::HuffmanPadding);
    expect_err(
        &[0x41, 0x84, 0xff, 0xff, 0xff, 0xff],
        HpackError::HuffmanEos,
    );
    // Size update after a field.
    expect_err(&[0x82, 0x20], HpackError::SizeUpdateNotAtStart);
}

#[test]
fn errors_only_for_exact_decoders() {
    // Index 62 on an empty, fully known table.
    let mut d = Decoder::new();
    assert_eq!(
        run(&mut d, &[0xbe]).1,
        Err(HpackError::IndexOutOfRange {
            index: 62,
            table_len: 0
        })
    );
    // The same index is merely unknown for an attached decoder.
    let mut d = Decoder::attached();
    assert_eq!(run(&mut d, &[0xbe]), (vec![(None, None)], Ok(())));

    // Size update to 4097 (> allowed 4096).
    let upd = [0x3f, 0xe2, 0x1f];
    let mut d = Decoder::new();
    assert_eq!(
        run(&mut d, &upd).1,
        Err(HpackError::SizeUpdateTooLarge {
            size: 4097,
            allowed: 4096
        })
    );
    assert!(!d.is_exact());
    let mut d = Decoder::new();
    d.set_max_allowed(8192);
    assert_eq!(run(&mut d, &upd).1, Ok(()));
    // Unknown settings: not an error.
    let mut d = Decoder::attached();
    assert_eq!(run(&mut d, &upd).1, Ok(()));
}

#[test]
fn fields_before_an_error_stay_emitted() {
    let mut d = Decoder::new();
    let (fields, r) = run(&mut d, &[0x82, 0x84, 0xbe]);
    assert!(r.is_err());
    assert_eq!(
        fields,
        vec![
            (Some(b":method".to_vec()), Some(b"GET".to_vec())),
            (Some(b":path".to_vec()), Some(b"/".to_vec())),
        ]
    );
    // lose_track() was called: later references are unknown, not errors.
    assert_eq!(run(&mut d, &[0xbe]), (vec![(None, None)], Ok(())));
}

#[test]
fn long_strings_at_the_limit() {
    let value = vec![b'x'; MAX_STRING_LEN];
    let mut block = Vec::new();
    enc_int(&mut block, 4, 0, 1);
    enc_str(&mut block, &value, false);
    let mut d = Decoder::new();
    let (fields, r) = run(&mut d, &block);
    r.unwrap();
    assert_eq!(fields[0].1.as_deref(), Some(&value[..]));
    // Huffman-coded '0' is 5 bits: the encoded string is under the limit,
    // the decoded one is over it.
    let value = vec![b'0'; MAX_STRING_LEN + 1];
    let mut block = Vec::new();
    enc_int(&mut block, 4, 0, 1);
    enc_str(&mut block, &value, true);
    assert_eq!(
        run(&mut d, &block).1,
        Err(HpackError::StringTooLong {
            len: MAX_STRING_LEN + 1
        })
    );
}

// ---------------------------------------------------------------------------
// Mid-connection decoding
// ---------------------------------------------------------------------------

type Headers<'a> = &'a [(&'a str, &'a str)];

fn encode_block(enc: &mut Encoder, update: Option<usize>, headers: Headers, mode: Mode) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(n) = update {
        enc.size_update(&mut out, n);
    }
    for (n, v) in headers {
        enc.field(&mut out, n.as_bytes(), v.as_bytes(), mode, true);
    }
    out
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "compared with decoded optional values"
)]
fn s(v: &str) -> Option<Vec<u8>> {
    Some(v.as_bytes().to_vec())
}

#[test]
fn attached_decoder_reports_unknown_entries() {
    let mut enc = Encoder::new();
    let b1 = encode_block(
        &mut enc,
        None,
        &[(":authority", "api.example"), ("x-trace", "t1")],
        Mode::Best,
    );
    // Block 2 reuses both block-1 entries, adds a literal (new entry) and a
    // field whose name is a block-1 entry ("x-trace") with a new value.
    let b2 = encode_block(
        &mut enc,
        None,
        &[
            (":method", "GET"),
            (":authority", "api.example"),
            ("x-trace", "t1"),
            ("x-new", "fresh"),
            ("x-trace", "t2"),
        ],
        Mode::Best,
    );
    let b3 = encode_block(
        &mut enc,
        None,
        &[("x-new", "fresh"), ("x-trace", "t2"), ("x-trace", "t1")],
        Mode::Best,
    );

    let mut fresh = Decoder::new();
    known(&mut fresh, &b1);
    known(&mut fresh, &b2);
    known(&mut fresh, &b3);

    for lost in [false, true] {
        let mut d = if lost {
            // Saw block 1, lost track (e.g. a dropped block), then block 2.
            let mut d = Decoder::new();
            known(&mut d, &b1);
            d.lose_track();
            d
        } else {
            Decoder::attached()
        };
        assert!(!d.is_exact());
        let (f2, r) = run(&mut d, &b2);
        r.unwrap();
        assert_eq!(
            f2,
            vec![
                (s(":method"), s("GET")),
                (None, None),
                (None, None),
                (s("x-new"), s("fresh")),
                (None, s("t2")),
            ]
        );
        // Block 3: both block-2 insertions are known now (one with an unknown
        // name); the block-1 entry is still unknown.
        let (f3, r) = run(&mut d, &b3);
        r.unwrap();
        assert_eq!(
            f3,
            vec![(s("x-new"), s("fresh")), (None, s("t2")), (None, None)]
        );
        assert_eq!(d.table_len(), 2);
        assert!(!d.is_exact());
    }
}

#[test]
fn attached_decoder_becomes_exact_after_size_update_and_inserts() {
    let mut enc = Encoder::new();
    // Establish unknown history.
    let b0 = encode_block(&mut enc, None, &[("x-old", "old-value")], Mode::Best);
    let _ = b0;
    // Size update to 256 keeps x-old (size 46); then 4 entries of 49 octets.
    let b1 = encode_block(
        &mut enc,
        Some(256),
        &[("x-a", "aaaaaaaaaaaaaa")],
        Mode::Best,
    );
    let b2 = encode_block(
        &mut enc,
        None,
        &[
            ("x-b", "bbbbbbbbbbbbbb"),
            ("x-c", "cccccccccccccc"),
            ("x-old", "old-value"),
        ],
        Mode::Best,
    );
    let b3 = encode_block(&mut enc, None, &[("x-d", "dddddddddddddd")], Mode::Best);
    let b4 = encode_block(&mut enc, None, &[("x-e", "eeeeeeeeeeeeee")], Mode::Best);

    let mut d = Decoder::attached();
    known(&mut d, &b1);
    assert!(!d.is_exact());
    let (f, r) = run(&mut d, &b2);
    r.unwrap();
    assert_eq!(f[2], (None, None), "x-old was inserted before we attached");
    assert_eq!(d.table_size(), 3 * 49);
    assert!(!d.is_exact());
    known(&mut d, &b3);
    // 4 * 49 = 196; 196 + 32 = 228 <= 256: an unknown entry may still fit.
    assert!(!d.is_exact());
    known(&mut d, &b4);
    // 5 * 49 = 245 > 224: exact, and out-of-range indices are errors again.
    assert!(d.is_exact());
    assert_eq!(d.table_len(), 5);
    assert!(matches!(
        run(&mut d, &[0xc4]).1,
        Err(HpackError::IndexOutOfRange { index: 68, .. })
    ));
}

#[test]
fn small_or_zero_size_updates_make_exact() {
    for (update, block) in [(0usize, vec![0x20]), (31, vec![0x3f, 0x00])] {
        let mut d = Decoder::attached();
        let (_, r) = run(&mut d, &block);
        r.unwrap();
        assert!(d.is_exact(), "update to {update}");
        assert_eq!(d.table_len(), 0);
    }
    // An update clears a known table too.
    let mut d = Decoder::new();
    let mut enc = Encoder::new();
    known(
        &mut d,
        &encode_block(&mut enc, None, &[("x-a", "1")], Mode::Best),
    );
    assert_eq!(d.table_len(), 1);
    known(&mut d, &[0x20]);
    assert_eq!(d.table_len(), 0);
    assert!(d.is_exact());
    // Without any size update an attached decoder never becomes exact.
    let mut d = Decoder::attached();
    let mut enc = Encoder::new();
    for i in 0..200 {
        let v = format!("value-{i}");
        run(
            &mut d,
            &encode_block(&mut enc, None, &[("x-a", &v)], Mode::Best),
        )
        .1
        .unwrap();
    }
    assert!(!d.is_exact());
}

#[test]
fn unknown_name_entries_are_sound() {
    let mut d = Decoder::attached();
    // Size update to 100, then a literal with incremental indexing whose name
    // is index 62 (unknown), with a 40-octet value: lower size 72.
    let mut block = Vec::new();
    enc_int(&mut block, 5, 0x20, 100);
    enc_int(&mut block, 6, 0x40, 62);
    enc_str(&mut block, &[b'v'; 40], false);
    let (f, r) = run(&mut d, &block);
    r.unwrap();
    assert_eq!(f, vec![(None, Some(vec![b'v'; 40]))]);
    // 72 + 32 > 100: no other entry can exist, but this one's name is unknown.
    assert!(d.complete);
    assert!(!d.is_exact());
    assert_eq!(d.table_size(), 72);
    assert_eq!(run(&mut d, &[0xbe]).0, vec![(None, Some(vec![b'v'; 40]))]);
    assert!(matches!(
        run(&mut d, &[0xbf]).1,
        Err(HpackError::IndexOutOfRange { .. })
    ));
    // The error made it lose track; start over and evict the unknown-name
    // entry with a known one.
    known(&mut d, &block[..2]);
    run(&mut d, &block[2..]).1.unwrap();
    let mut b = Vec::new();
    enc_int(&mut b, 6, 0x40, 0);
    enc_str(&mut b, b"k", false);
    enc_str(&mut b, &[b'w'; 60], true);
    assert_eq!(known(&mut d, &b).len(), 1);
    assert!(d.is_exact());
    assert_eq!(table(&d), [format!("k: {}", "w".repeat(60))]);
}

#[test]
fn huge_size_updates_stay_within_memory_caps() {
    let mut d = Decoder::new();
    d.set_max_allowed(u32::MAX as usize);
    let mut block = Vec::new();
    enc_int(&mut block, 5, 0x20, u32::MAX as usize);
    known(&mut d, &block);
    let big = vec![b'z'; 60_000];
    for i in 0..10 {
        let mut b = Vec::new();
        enc_int(&mut b, 6, 0x40, 0);
        enc_str(&mut b, format!("n{i}").as_bytes(), false);
        enc_str(&mut b, &big, false);
        known(&mut d, &b);
    }
    assert!(d.table_size() <= super::table::MAX_TABLE_OCTETS);
    // Dropping entries for the cap means the table is no longer complete.
    assert!(!d.is_exact());
    assert_eq!(run(&mut d, &[0xff, 0x10]).0, vec![(None, None)]);
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

const NAMES: &[&str] = &[
    ":method",
    ":path",
    "x-a",
    "x-bb",
    "cookie",
    "user-agent",
    "x-a-rather-long-header-name",
    "accept",
];

const VALUES: &[&str] = &[
    "",
    "GET",
    "/",
    "v1",
    "a-longer-value-with-some-length",
    "0",
    "gzip, deflate",
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
];

const SIZES: &[usize] = &[0, 20, 40, 64, 100, 150, 256, 512, 1024, 4096];

#[derive(Clone, Debug)]
struct StoryBlock {
    update: Option<usize>,
    fields: Vec<(usize, Vec<u8>, u8, bool)>,
}

fn story_block() -> impl Strategy<Value = StoryBlock> {
    let value = prop_oneof![
        3 => prop::sample::select(VALUES).prop_map(|v| v.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ];
    (
        prop::option::weighted(0.2, prop::sample::select(SIZES)),
        prop::collection::vec((0..NAMES.len(), value, 0u8..4, any::<bool>()), 0..10),
    )
        .prop_map(|(update, fields)| StoryBlock { update, fields })
}

type Truth = Vec<(Vec<u8>, Vec<u8>)>;

/// Encodes a story: per block the wire, the header list, and the encoder's
/// table after the block.
fn encode_story(blocks: &[StoryBlock]) -> Vec<(Vec<u8>, Truth, Truth)> {
    let mut enc = Encoder::new();
    blocks
        .iter()
        .map(|b| {
            let mut out = Vec::new();
            if let Some(n) = b.update {
                enc.size_update(&mut out, n);
            }
            let mut truth = Vec::new();
            for (ni, value, mode, huff) in &b.fields {
                let mode = [
                    Mode::Best,
                    Mode::WithIndexing,
                    Mode::WithoutIndexing,
                    Mode::NeverIndexed,
                ][*mode as usize];
                let name = NAMES[*ni].as_bytes();
                enc.field(&mut out, name, value, mode, *huff);
                truth.push((name.to_vec(), value.clone()));
            }
            (out, truth, enc.table.iter().cloned().collect())
        })
        .collect()
}

/// Decodes `blocks` with `d`, checking that every field is the truth or
/// unknown, and the table invariants from the module docs.
fn check_partial(d: &mut Decoder, blocks: &[(Vec<u8>, Truth, Truth)]) -> Result<(), TestCaseError> {
    for (i, (wire, truth, real)) in blocks.iter().enumerate() {
        let exact_before = d.is_exact();
        let (fields, r) = run(d, wire);
        prop_assert_eq!(r, Ok(()), "block {}", i);
        prop_assert_eq!(fields.len(), truth.len());
        for ((n, v), (tn, tv)) in fields.iter().zip(truth) {
            if let Some(n) = n {
                prop_assert_eq!(n, tn, "block {}", i);
            }
            if let Some(v) = v {
                prop_assert_eq!(v, tv, "block {}", i);
            }
            if exact_before {
                prop_assert!(n.is_some() && v.is_some(), "exact but unknown, block {}", i);
            }
        }
        // The known entries and the real table agree on their common prefix;
        // when complete, the known part covers the whole real table.
        let ours = d.table.snapshot();
        for ((n, v), (rn, rv)) in ours.iter().zip(real) {
            prop_assert_eq!(v, rv);
            if let Some(n) = n {
                prop_assert_eq!(n, rn);
            }
        }
        if d.complete {
            prop_assert!(
                ours.len() >= real.len(),
                "complete but shorter, block {}",
                i
            );
        }
        if d.is_exact() {
            prop_assert!(ours.iter().all(|(n, _)| n.is_some()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..6)) {
        for mut d in [Decoder::new(), Decoder::attached()] {
            for b in &blocks {
                let r = d.decode(b, &mut |_, _| {});
                if r.is_err() {
                    prop_assert!(!d.is_exact());
                    prop_assert_eq!(d.table_len(), 0);
                }
                prop_assert!(d.table_size() <= super::table::MAX_TABLE_OCTETS);
            }
        }
    }

    #[test]
    fn stories_decode_exactly_and_partially_never_wrong(
        blocks in prop::collection::vec(story_block(), 1..14),
        start_seed in any::<usize>(),
        skip_seed in any::<usize>(),
    ) {
        let story = encode_story(&blocks);

        // From the start: everything exact.
        let mut d = Decoder::new();
        for (wire, truth, real) in &story {
            let (fields, r) = run(&mut d, wire);
            prop_assert_eq!(r, Ok(()));
            let want: Vec<Field> = truth.iter().map(|(n, v)| (Some(n.clone()), Some(v.clone()))).collect();
            prop_assert_eq!(fields, want);
            prop_assert!(d.is_exact());
            prop_assert_eq!(&d.table.snapshot().into_iter().map(|(n, v)| (n.unwrap(), v)).collect::<Vec<_>>(), real);
        }

        // Attached at the middle, and at an arbitrary block.
        for start in [story.len() / 2, start_seed % story.len()] {
            let mut d = Decoder::attached();
            check_partial(&mut d, &story[start..])?;
        }

        // A lost block in the middle of an otherwise complete capture.
        let skip = skip_seed % story.len();
        let mut d = Decoder::new();
        check_partial(&mut d, &story[..skip])?;
        d.lose_track();
        check_partial(&mut d, &story[skip + 1..])?;
    }
}

/// Unwanted literals that are not indexed are stepped over: not decoded, not reported,
/// and their (here broken) Huffman coding is not checked.
#[test]
fn unwanted_literals_are_skipped_undecoded() {
    // `date: <Huffman with bad padding>` without indexing, then `:status 200` (index 8).
    let block = [0x00, 0x04, b'd', b'a', b't', b'e', 0x81, 0x00, 0x88];
    let mut seen = Vec::new();
    let mut d = Decoder::new();
    d.decode_wanted(&block, &|n| n.starts_with(b":"), &mut |n, v| {
        seen.push((n.map(<[u8]>::to_vec), v.map(<[u8]>::to_vec)));
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![(Some(b":status".to_vec()), Some(b"200".to_vec()))]
    );
    assert!(d.is_exact());
    // Wanted, the same field is decoded and its bad padding is an error.
    let mut d = Decoder::new();
    assert_eq!(
        d.decode_wanted(&block, &|_| true, &mut |_, _| {}),
        Err(HpackError::HuffmanPadding)
    );
    // A field added to the table is always decoded, wanted or not.
    let indexed = [0x40, 0x01, b'x', 0x01, b'y'];
    let mut d = Decoder::new();
    d.decode_wanted(&indexed, &|_| false, &mut |_, _| {})
        .unwrap();
    assert_eq!(d.table_len(), 1);
}
