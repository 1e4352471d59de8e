//! Kernel structure member offsets, read from BTF by the agent at load time and handed to the
//! programs as a global. Rust eBPF has no CO-RE relocations, so this is how the programs stay
//! correct across kernel versions without hard-coded layouts.

/// Byte offsets of the members the fd → socket walk reads. Zero in `valid` means the agent
/// did not fill them in and the programs must not walk anything.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    pub file_private_data: u32,
    pub inode_mode: u32,
    pub socket_sk: u32,
    pub sk_family: u32,
    pub sk_num: u32,
    pub sk_dport: u32,
    pub sk_rcv_saddr: u32,
    pub sk_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub sk_v6_daddr: u32,
    pub sk_type: u32,
    pub sk_protocol: u32,
    /// `tcp_sock.write_seq`: where the send queue ends (stream offsets of written bytes).
    pub tcp_write_seq: u32,
}

impl KernelOffsets {
    /// The load-time placeholder: `valid == 0` keeps the programs from walking anything.
    pub const UNSET: KernelOffsets = KernelOffsets {
        valid: 0,
        task_files: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        file_inode: 0,
        file_private_data: 0,
        inode_mode: 0,
        socket_sk: 0,
        sk_family: 0,
        sk_num: 0,
        sk_dport: 0,
        sk_rcv_saddr: 0,
        sk_daddr: 0,
        sk_v6_rcv_saddr: 0,
        sk_v6_daddr: 0,
        sk_type: 0,
        sk_protocol: 0,
        tcp_write_seq: 0,
    };
}
