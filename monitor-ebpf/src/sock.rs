//! fd → `struct sock` walk, with member offsets from BTF.
//!
//! `current->files->fdt->fd[fd]` gives the `struct file`; a socket file has an inode of
//! type S_IFSOCK and `private_data` pointing at the `struct socket`, whose `sk` is the
//! `struct sock`. Works for sockets opened before the agent started.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use monitor_common::{KernelOffsets, AF_INET, AF_INET6};

use crate::maps::{ConnState, OFFSETS};

const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;
const SOCK_STREAM: u16 = 1;
const IPPROTO_TCP: u16 = 6;

#[inline(always)]
fn read<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel tolerates bad addresses and reports an error.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T).ok() }
}

/// What a descriptor of the current process is, as far as capture cares.
#[derive(Clone, Copy)]
pub(crate) enum Descriptor {
    /// An IPv4/IPv6 TCP socket, by its `struct sock` address.
    Tcp(u64),
    /// Open, and something else: a file, a pipe, another kind of socket.
    Other,
    /// Not open, or not readable now.
    Unknown,
}

/// Walks the current process's descriptor table to `fd` (about a dozen kernel reads:
/// `fds::tcp_sock` caches the answer).
#[inline(always)]
pub(crate) fn describe(fd: i32) -> Descriptor {
    let o: KernelOffsets = OFFSETS.load();
    if o.valid == 0 || fd < 0 {
        return Descriptor::Unknown;
    }
    let Some(file) = open_file(&o, fd) else {
        return Descriptor::Unknown;
    };
    match socket_of(&o, file) {
        Some(sk) => Descriptor::Tcp(sk),
        None => Descriptor::Other,
    }
}

/// The `struct file` open at `fd`.
#[inline(always)]
fn open_file(o: &KernelOffsets, fd: i32) -> Option<u64> {
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, o.task_files)?;
    let fdt: u64 = read(files, o.files_fdt)?;
    let max_fds: u32 = read(fdt, o.fdt_max_fds)?;
    if fd as u32 >= max_fds {
        return None;
    }
    let fd_array: u64 = read(fdt, o.fdt_fd)?;
    let file: u64 = read(fd_array, (fd as u32) * 8)?;
    (file != 0).then_some(file)
}

/// The `struct sock` of an open `file` that is an IPv4/IPv6 TCP socket.
#[inline(always)]
fn socket_of(o: &KernelOffsets, file: u64) -> Option<u64> {
    let inode: u64 = read(file, o.file_inode)?;
    let mode: u16 = read(inode, o.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read(file, o.file_private_data)?;
    let sk: u64 = read(socket, o.socket_sk)?;
    if sk == 0 {
        return None;
    }
    let family: u16 = read(sk, o.sk_family)?;
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let ty: u16 = read(sk, o.sk_type)?;
    let proto: u16 = read(sk, o.sk_protocol)?;
    if ty != SOCK_STREAM || proto != IPPROTO_TCP {
        return None;
    }
    Some(sk)
}

/// Fills family, ports and addresses of `sk` into the connection state.
#[inline(always)]
pub(crate) fn fill_addresses(sk: u64, h: &mut ConnState) {
    let o: KernelOffsets = OFFSETS.load();
    let family: u16 = read(sk, o.sk_family).unwrap_or(0);
    h.family = family;
    h.local_port = read::<u16>(sk, o.sk_num).unwrap_or(0);
    h.remote_port = u16::from_be(read::<u16>(sk, o.sk_dport).unwrap_or(0));
    if family == AF_INET6 {
        h.local_addr = read(sk, o.sk_v6_rcv_saddr).unwrap_or([0; 16]);
        h.remote_addr = read(sk, o.sk_v6_daddr).unwrap_or([0; 16]);
    } else {
        let l: [u8; 4] = read(sk, o.sk_rcv_saddr).unwrap_or([0; 4]);
        let r: [u8; 4] = read(sk, o.sk_daddr).unwrap_or([0; 4]);
        h.local_addr = [0; 16];
        h.remote_addr = [0; 16];
        h.local_addr[..4].copy_from_slice(&l);
        h.remote_addr[..4].copy_from_slice(&r);
    }
}

/// Sequence number just past the last byte queued to send on TCP socket `sk`.
#[inline(always)]
pub(crate) fn write_seq(sk: u64) -> u32 {
    let o: KernelOffsets = OFFSETS.load();
    read::<u32>(sk, o.tcp_write_seq).unwrap_or(0)
}
