//! Where the OpenSSL probes go in one library (or executable exporting OpenSSL).
//!
//! Each data function gets an entry probe and a uretprobe at the same site, so the site
//! must come before the stack moves (see `probe_site`). When the function itself starts
//! with a single-stepped instruction (Debian's OpenSSL 3: `sub $0x18,%rsp`), its internal
//! function may not: OpenSSL's `SSL_read_ex` only passes its four arguments to
//! `ssl_read_internal(ssl, buf, num, &bytes)` and returns its result, and `SSL_read` calls
//! the same function with a count on its stack. The decoder proves both shapes (a thin
//! wrapper that keeps `rdi, rsi, rdx, rcx`, and a plain function whose first call, with
//! `rdi, rsi` untouched, goes to the same place) before it probes the internal function
//! instead of the two public ones; one pair of probes there then covers both, read through
//! the `_ex` program (the count behind the fourth argument). Anything else falls back to
//! the public functions' own entries.

use std::collections::HashMap;

use iced_x86::Register;
use object::ReadRef;

use monitor_common::names::program;

use super::{
    elf::{dynamic_symbols, file_offset},
    probe_site::{Function, Needs, Site, C_ARGS, MAX_FUNCTION_BYTES},
};

/// One probe to attach: the program, where (file offset), and whether the kernel emulates
/// the instruction there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SslProbe {
    pub program: &'static str,
    /// What it stands for, for the log and `probe-sites`.
    pub function: String,
    pub offset: u64,
    pub emulated: bool,
}

/// Bytes read of an internal function whose size is unknown (it has no dynamic symbol):
/// enough for its first instruction, the only site provable without its extent.
const CALLEE_BYTES: u64 = 16;

const C_ENTRY: Needs<'static> = Needs {
    registers: C_ARGS,
    return_address: true,
};
const THIN: &[Register] = &[Register::RDI, Register::RSI, Register::RDX, Register::RCX];

/// The (plain, `_ex`) function pairs and their entry programs.
const PAIRS: [(&str, &str, &str, &str); 2] = [
    (
        "SSL_read",
        program::SSL_READ,
        "SSL_read_ex",
        program::SSL_READ_EX,
    ),
    (
        "SSL_write",
        program::SSL_WRITE,
        "SSL_write_ex",
        program::SSL_WRITE_EX,
    ),
];

/// A dynamic symbol's code: its loaded address, file offset and decoded instructions.
struct Code {
    address: u64,
    offset: u64,
    function: Function,
}

fn code_at<'d, R: ReadRef<'d>>(
    elf: &object::File<'d, R>,
    data: R,
    address: u64,
    size: Option<u64>,
) -> Option<Code> {
    let offset = file_offset(elf, address)?;
    // The size comes from the file: never read more than is decoded.
    let len = size.unwrap_or(CALLEE_BYTES).min(MAX_FUNCTION_BYTES as u64);
    let bytes = data
        .read_bytes_at(offset, len)
        .or_else(|()| data.read_bytes_at(offset, 1))
        .ok()?;
    Some(Code {
        address,
        offset,
        function: Function::decode(bytes, size.is_some()),
    })
}

/// The code of the named dynamic symbols that are defined here.
fn functions<'d, R: ReadRef<'d>>(
    elf: &object::File<'d, R>,
    data: R,
    names: &[&str],
) -> HashMap<String, Code> {
    dynamic_symbols(elf, names)
        .into_iter()
        .filter_map(|(name, (address, size))| {
            let size = (size > 0).then_some(size);
            Some((name, code_at(elf, data, address, size)?))
        })
        .collect()
}

/// Every probe for the file: the data functions' entries and returns, and `SSL_free`.
/// Empty when it does not define `SSL_read` and `SSL_write`.
pub(crate) fn ssl_probes<'d, R: ReadRef<'d>>(elf: &object::File<'d, R>, data: R) -> Vec<SslProbe> {
    let names = [
        "SSL_read",
        "SSL_read_ex",
        "SSL_write",
        "SSL_write_ex",
        "SSL_free",
    ];
    let found = functions(elf, data, &names);
    if !(found.contains_key("SSL_read") && found.contains_key("SSL_write")) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (plain, plain_prog, ex, ex_prog) in PAIRS {
        if let Some(inner) = through_internal(elf, data, &found, plain, ex, ex_prog) {
            out.extend(inner);
            continue;
        }
        for (name, prog) in [(plain, plain_prog), (ex, ex_prog)] {
            if let Some(code) = found.get(name) {
                let site = code.function.entry_site(C_ENTRY);
                out.extend(pair(prog, name.to_string(), code.offset, site));
            }
        }
    }
    if let Some(code) = found.get("SSL_free") {
        let needs = Needs {
            registers: &[Register::RDI],
            return_address: false,
        };
        let site = code.function.entry_site(needs);
        out.push(probe(
            program::SSL_FREE,
            "SSL_free".into(),
            code.offset,
            site,
        ));
    }
    out
}

/// The probes on the internal function `plain` and `ex` share, when the code proves they
/// share one and its first instruction is emulated.
fn through_internal<'d, R: ReadRef<'d>>(
    elf: &object::File<'d, R>,
    data: R,
    found: &HashMap<String, Code>,
    plain: &str,
    ex: &str,
    ex_prog: &'static str,
) -> Option<[SslProbe; 2]> {
    let (p, e) = (found.get(plain)?, found.get(ex)?);
    // Offsets are relative to each function's start; a callee may lie below it.
    let from_ex = e.address.wrapping_add(e.function.thin_wrapper_of(THIN)?);
    let (_, rel) = p.function.first_call(&[Register::RDI, Register::RSI])?;
    if p.address.wrapping_add(rel) != from_ex {
        return None;
    }
    let callee = code_at(elf, data, from_ex, None)?;
    let site = callee.function.entry_site(C_ENTRY);
    if !site.emulated {
        return None;
    }
    let name = format!("{plain}+{ex} internal {from_ex:#x}");
    Some(pair(ex_prog, name, callee.offset, site))
}

fn probe(program: &'static str, function: String, base: u64, site: Site) -> SslProbe {
    SslProbe {
        program,
        function,
        offset: base + site.offset,
        emulated: site.emulated,
    }
}

/// The entry probe and the uretprobe of one function, at one site.
fn pair(entry: &'static str, function: String, base: u64, site: Site) -> [SslProbe; 2] {
    [
        probe(entry, function.clone(), base, site),
        probe(program::SSL_RETURN, function, base, site),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system_libssl() -> Option<Vec<u8>> {
        [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libssl.so.3",
        ]
        .into_iter()
        .find_map(|p| std::fs::read(p).ok())
    }

    /// Debian's OpenSSL 3.0 (what the tests install): `SSL_read`/`SSL_write` start with
    /// `sub`, their `_ex` forms are thin wrappers, and the internal functions start with
    /// `push`: one emulated pair of probes per direction.
    #[test]
    fn debian_openssl_is_probed_inside() {
        let data = system_libssl().expect("libssl.so.3 installed by the tests' setup");
        let elf = object::File::parse(&*data).unwrap();
        let probes = ssl_probes(&elf, &*data);
        let data_probes: Vec<_> = probes
            .iter()
            .filter(|p| p.program != program::SSL_FREE)
            .collect();
        assert_eq!(data_probes.len(), 4, "{probes:#?}");
        assert!(data_probes.iter().all(|p| p.emulated), "{probes:#?}");
        assert!(data_probes.iter().all(|p| p.function.contains("internal")));
        let entries: Vec<_> = data_probes
            .iter()
            .filter(|p| p.program != program::SSL_RETURN)
            .map(|p| p.program)
            .collect();
        assert_eq!(entries, [program::SSL_READ_EX, program::SSL_WRITE_EX]);
        // Each probed instruction is a push (the kernel emulates it).
        for p in data_probes {
            let b = &data[p.offset as usize..];
            assert!(
                matches!(b, [0x50..=0x57, ..] | [0x41, 0x50..=0x57, ..]),
                "{p:?}"
            );
        }
    }

    /// A library whose `SSL_read` starts with `sub` and calls nothing (no site, no internal
    /// function: the entry, single-stepped) and whose `SSL_write` starts with `push`.
    #[test]
    fn without_a_provable_site_the_entry_is_kept() {
        let dir = std::env::temp_dir().join(format!("monitor-ssl-sites-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("fake_ssl.c");
        std::fs::write(
            &src,
            ".text\n.globl SSL_read\n.type SSL_read,@function\nSSL_read:\n sub $8,%rsp\n \
             add $8,%rsp\n mov %edx,%eax\n ret\n.size SSL_read,.-SSL_read\n\
             .globl SSL_write\n.type SSL_write,@function\nSSL_write:\n push %rbp\n \
             pop %rbp\n mov %edx,%eax\n ret\n.size SSL_write,.-SSL_write\n",
        )
        .unwrap();
        let lib = dir.join("libssl.so.3");
        let built = std::process::Command::new("cc")
            .args(["-shared", "-nostdlib", "-x", "assembler", "-o"])
            .arg(&lib)
            .arg(&src)
            .status()
            .expect("cc");
        assert!(built.success());
        let data = std::fs::read(&lib).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        let probes = ssl_probes(&elf, &*data);
        std::fs::remove_dir_all(&dir).unwrap();
        let by =
            |f: &str| -> Vec<&SslProbe> { probes.iter().filter(|p| p.function == f).collect() };
        let read = by("SSL_read");
        let write = by("SSL_write");
        assert_eq!(read.len(), 2, "{probes:#?}");
        assert!(read.iter().all(|p| !p.emulated), "{probes:#?}");
        assert_eq!(write.len(), 2, "{probes:#?}");
        assert!(write.iter().all(|p| p.emulated), "{probes:#?}");
        assert_eq!(read[0].offset, read[1].offset);
    }

    #[test]
    fn files_without_openssl_get_no_probes() {
        let data = std::fs::read("/proc/self/exe").unwrap();
        let elf = object::File::parse(&*data).unwrap();
        assert!(ssl_probes(&elf, &*data).is_empty());
    }
}
