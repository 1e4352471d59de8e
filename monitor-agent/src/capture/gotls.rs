//! Finding Go's crypto/tls in an executable: where to probe `crypto/tls.(*Conn).Write`
//! and `.Read`, as file offsets for uprobes.
//!
//! Go programs must not get uretprobes (the runtime relocates goroutine stacks, so a
//! hijacked return address crashes them); `Read` gets a probe on each RET instead, which
//! needs the function's instructions decoded, since a 0xC3 byte may also sit inside a
//! longer instruction. The entry probe goes past the stack check, on the first instruction
//! there the kernel emulates (`probe_site`): unlike the entry, it runs once per call even
//! when the stack grows. `Write` is reported at entry and needs no RET probes.

use object::{Object, ObjectSection, ObjectSymbol, ReadRef};

use super::probe_site::{Function, Needs, GO_ARGS, MAX_FUNCTION_BYTES};

pub(crate) const WRITE: &str = "crypto/tls.(*Conn).Write";
pub(crate) const READ: &str = "crypto/tls.(*Conn).Read";

/// Where to put the probes of one function, as offsets in the executable file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoFunction {
    pub symbol: &'static str,
    pub entry: u64,
    /// Whether the kernel emulates the instruction at `entry`.
    pub entry_emulated: bool,
    /// RETs to probe (`Read` only).
    pub returns: Vec<u64>,
}

const GO_ENTRY: Needs<'static> = Needs {
    registers: GO_ARGS,
    return_address: false,
};

/// The probe locations of both functions, when `elf` is a Go program (with a symbol
/// table) that links crypto/tls on x86-64.
pub(crate) fn go_tls_functions<'d, R: ReadRef<'d>>(
    elf: &object::File<'d, R>,
    data: R,
) -> Option<[GoFunction; 2]> {
    if elf.architecture() != object::Architecture::X86_64
        || elf.section_by_name(".gopclntab").is_none()
    {
        return None;
    }
    let find = |name: &'static str| -> Option<GoFunction> {
        let (addr, size) = match elf.symbols().find(|s| s.name() == Ok(name)) {
            Some(sym) => (sym.address(), sym.size()),
            // Stripped (`-ldflags=-s -w`): the runtime's own function table still names
            // every function.
            None => pclntab_lookup(elf, name)?,
        };
        let section = elf.sections().find(|s| {
            addr.checked_sub(s.address())
                .is_some_and(|off| off < s.size())
        })?;
        let (file_off, file_len) = section.file_range()?;
        let start = addr.checked_sub(section.address())?;
        // The function must lie inside the file and the address space, so that the
        // decoder's addresses map back to file offsets without wrapping.
        if start.checked_add(size)? > file_len || addr.checked_add(size).is_none() {
            return None;
        }
        // Only the function's own bytes are read, not the whole text section.
        // Every RET must be found: a function too long to decode whole is not probed.
        if size > MAX_FUNCTION_BYTES as u64 {
            return None;
        }
        let code = data
            .read_bytes_at(file_off.checked_add(start)?, size)
            .ok()?;
        let start_in_file = file_off + start;
        let function = Function::decode(code, true);
        let returns = function.returns();
        if returns.is_empty() {
            return None;
        }
        let probe_at = function.entry_site(GO_ENTRY);
        Some(GoFunction {
            symbol: name,
            entry: start_in_file + probe_at.offset,
            entry_emulated: probe_at.emulated,
            returns: if name == READ {
                returns.iter().map(|r| start_in_file + r).collect()
            } else {
                Vec::new()
            },
        })
    };
    Some([find(WRITE)?, find(READ)?])
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Address and size of function `name` from `.gopclntab` (Go 1.18 and later, 64-bit):
/// a header, then a table of (entry offset, func offset) pairs sorted by address, each
/// func record starting with its entry offset and the offset of its name.
pub(crate) fn pclntab_lookup<'d, R: ReadRef<'d>>(
    elf: &object::File<'d, R>,
    name: &str,
) -> Option<(u64, u64)> {
    let tab = elf.section_by_name(".gopclntab")?.data().ok()?;
    let magic = u32_at(tab, 0)?;
    if magic != 0xffff_fff0 && magic != 0xffff_fff1 {
        return None;
    }
    if *tab.get(7)? != 8 {
        return None;
    }
    let nfunc = usize::try_from(u64_at(tab, 8)?).ok()?;
    let text_start = u64_at(tab, 24)?;
    let funcname = usize::try_from(u64_at(tab, 32)?).ok()?;
    let functab = usize::try_from(u64_at(tab, 64)?).ok()?;
    let names = tab.get(funcname..)?;
    // Offsets come from the file: every sum is checked, a wrap ends the search.
    let at = |base: usize, plus: usize| base.checked_add(plus);
    for i in 0..nfunc {
        let pair = at(functab, i.checked_mul(8)?)?;
        let entry = u32_at(tab, pair)?;
        let func = usize::try_from(u32_at(tab, at(pair, 4)?)?).ok()?;
        let name_off = usize::try_from(u32_at(tab, at(at(functab, func)?, 4)?)?).ok()?;
        let n = names.get(name_off..)?;
        let end = n.iter().position(|&c| c == 0)?;
        if &n[..end] == name.as_bytes() {
            let next = u32_at(tab, at(pair, 8)?)?;
            return Some((
                text_start.checked_add(u64::from(entry))?,
                u64::from(next.checked_sub(entry)?),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `go_pclntab` fuzz target: a section placed at the top of the address
    /// space made `address + size` overflow.
    #[test]
    fn sections_at_the_top_of_the_address_space_do_not_overflow() {
        let data: &[u8] = include_bytes!("../../fuzz/corpus/go_pclntab/regression-0b16d30af986");
        let elf = object::File::parse(data).expect("ELF");
        assert!(go_tls_functions(&elf, data).is_none());
    }

    /// The seed the fuzz target starts from: a stripped Go-like ELF whose functions are
    /// found through `.gopclntab`, each RET found by decoding (not by a 0xC3 byte).
    #[test]
    fn stripped_functions_are_found_through_the_pclntab() {
        let data: &[u8] = include_bytes!("../../fuzz/corpus/go_pclntab/seed-stripped-go");
        let elf = object::File::parse(data).expect("ELF");
        let [write, read] = go_tls_functions(&elf, data).expect("found");
        // Writes are reported at entry: no RET probes.
        assert_eq!((write.entry, write.returns.len()), (0x100, 0));
        assert_eq!(read.returns, vec![0x10b + 5, 0x10b + 8]);
    }

    #[test]
    fn non_go_files_have_no_go_tls() {
        let data = std::fs::read("/proc/self/exe").expect("own executable");
        let elf = object::File::parse(&*data).expect("ELF");
        assert!(go_tls_functions(&elf, &*data).is_none());
    }
}
