//! Kernel side of the monitor: syscall tracepoints that capture the bytes of HTTP
//! connections into a ring buffer. Only capture and cheap classification live here;
//! everything userspace can do, userspace does.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(
    clippy::inline_always,
    reason = "BPF-to-BPF calls cost verifier budget and stack: helpers are inlined on purpose"
)]

#[cfg(target_arch = "bpf")]
mod conn;
#[cfg(target_arch = "bpf")]
mod copy;
#[cfg(target_arch = "bpf")]
mod data;
#[cfg(target_arch = "bpf")]
mod egress;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod fds;
#[cfg(target_arch = "bpf")]
mod floor;
#[cfg(target_arch = "bpf")]
mod gotls;
#[cfg(target_arch = "bpf")]
mod inflight;
#[cfg(target_arch = "bpf")]
mod lifecycle;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod sock;
#[cfg(target_arch = "bpf")]
mod tls;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program; the verifier rejects any path that could get here.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
