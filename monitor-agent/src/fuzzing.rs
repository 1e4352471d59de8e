//! Entry points for the fuzz targets (`monitor-agent/fuzz`) into parsers that are private
//! to the crate: the targets drive exactly the code the agent runs, without widening the
//! library's real API. Not for any other use.

use crate::capture::{btf::Btf, event::Event, gotls, tls};

/// Decodes one ring-buffer record the way the reader does, and everything the pipeline
/// derives from its header (addresses, process name). Returns whether it was accepted.
pub fn kernel_event(raw: &[u8]) -> bool {
    let Ok(event) = Event::decode(raw) else {
        return false;
    };
    let _ = (event.conn_key(), event.local(), event.remote());
    // Process names are kept as the kernel gave them (service rules match on them) and
    // escaped where they are printed; here they must be text of at most 16 characters.
    let comm = event.comm();
    assert!(
        comm.chars().count() <= 16 && !comm.contains('\0'),
        "{comm:?}"
    );
    assert!(event.data.len() == event.header.len as usize);
    true
}

/// Huffman-decodes one HPACK string literal.
pub fn huffman(src: &[u8], dst: &mut Vec<u8>) -> bool {
    crate::protocol::http2::hpack::huffman::decode(src, dst).is_ok()
}

/// The TLS libraries a process maps, from its `/proc/PID/maps` text.
pub fn libssl_paths(maps: &str) -> Vec<String> {
    tls::libssl_paths(maps)
}

/// The cgroup path of a process from its `/proc/PID/cgroup` text.
pub fn cgroup_path(cgroup: &str) -> Option<String> {
    crate::identity::process::cgroup_path(cgroup)
}

/// The read a blocked thread is in, from its `/proc/PID/task/TID/syscall` line.
pub fn blocked_read(line: &str) -> Option<(i32, u64)> {
    crate::capture::inflight::parse_syscall_line(line).map(|a| (a.fd, a.count))
}

/// Parses a BTF blob and looks up what the socket walk needs, plus one arbitrary member.
pub fn btf(data: &[u8], strukt: &str, member: &str) -> bool {
    let Ok(btf) = Btf::parse(data) else {
        return false;
    };
    let _ = btf.member(strukt, member);
    btf.kernel_offsets().is_ok()
}

/// Parses an ELF file and looks for Go's crypto/tls functions through its `.gopclntab`.
pub fn go_tls(data: &[u8], name: &str) -> bool {
    let Ok(elf) = object::File::parse(data) else {
        return false;
    };
    let _ = gotls::pclntab_lookup(&elf, name);
    gotls::go_tls_functions(&elf, data).is_some()
}

/// Decodes `code` as a function and asks every question the probe placement asks of it;
/// also reads it as an ELF file for the OpenSSL sites.
pub fn probe_sites(code: &[u8]) -> u64 {
    use crate::capture::probe_site::{Function, Needs, C_ARGS, GO_ARGS};
    let mut seen = 0;
    for whole in [true, false] {
        let f = Function::decode(code, whole);
        for (registers, return_address) in [(C_ARGS, true), (GO_ARGS, false)] {
            let needs = Needs {
                registers,
                return_address,
            };
            seen ^= f.entry_site(needs).offset;
        }
        seen ^= f.returns().len() as u64;
        seen ^= f.thin_wrapper_of(C_ARGS).unwrap_or(0);
        seen ^= f.first_call(GO_ARGS).map_or(0, |(i, t)| i as u64 ^ t);
    }
    if let Ok(elf) = object::File::parse(code) {
        seen ^= crate::capture::ssl_sites::ssl_probes(&elf, code).len() as u64;
    }
    seen
}
