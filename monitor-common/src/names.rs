//! Names of the eBPF object's maps, globals and programs that the agent looks up. The
//! kernel side names its statics and functions identically (the `aya-ebpf` macros take
//! the item's own name); the agent's `capture` tests check that the built object defines
//! every name here, so a rename on one side fails the tests instead of the load.

/// Globals the loader writes before loading.
pub mod global {
    /// Kernel struct member offsets read from BTF.
    pub const OFFSETS: &str = "OFFSETS";
    /// The agent's own process, whose syscalls are never captured.
    pub const AGENT_TGID: &str = "AGENT_TGID";
    /// Where `child_pid` is in a `sched_process_fork` record.
    pub const FORK_CHILD_PID_AT: &str = "FORK_CHILD_PID_AT";
}

/// Maps the agent reads or writes.
pub mod map {
    /// The ring buffer of captured records.
    pub const EVENTS: &str = "EVENTS";
    /// Reads already blocked when the agent attached, written on their threads' behalf.
    pub const BLOCKED_READS: &str = "BLOCKED_READS";
    /// Slot 0 non-zero while `BLOCKED_READS` may hold entries.
    pub const BLOCKED_READS_LEFT: &str = "BLOCKED_READS_LEFT";
    /// Per-socket state: classification, role, stream offsets.
    pub const CONNS: &str = "CONNS";
    /// `SSL_write`s through memory BIOs waiting for their write syscall, by thread.
    pub const PENDING_WRITES: &str = "PENDING_WRITES";
    /// Connections userspace switched off, by slot (`SWITCH_OFF_SLOTS`).
    pub const SWITCHED_OFF: &str = "SWITCHED_OFF";
    /// Per-CPU drop and truncation counters.
    pub const COUNTERS: &str = "COUNTERS";
    /// The program the data syscalls' exit hands its copying to (index 0).
    pub const COPY: &str = "COPY";
    /// The program the TLS probes hand their copying to (index 0).
    pub const COPY_PLAINTEXT: &str = "COPY_PLAINTEXT";
}

/// Programs, by the hook they serve.
pub mod program {
    pub const SYS_ENTER_READ: &str = "sys_enter_read";
    pub const SYS_ENTER_READV: &str = "sys_enter_readv";
    pub const SYS_ENTER_RECVFROM: &str = "sys_enter_recvfrom";
    pub const SYS_ENTER_RECVMSG: &str = "sys_enter_recvmsg";
    pub const SYS_ENTER_WRITE: &str = "sys_enter_write";
    pub const SYS_ENTER_WRITEV: &str = "sys_enter_writev";
    pub const SYS_ENTER_SENDTO: &str = "sys_enter_sendto";
    pub const SYS_ENTER_SENDMSG: &str = "sys_enter_sendmsg";
    pub const SYS_ENTER_SENDFILE64: &str = "sys_enter_sendfile64";
    /// The exit of every data syscall: the stashed arguments say what shape the buffer has.
    pub const SYS_EXIT_DATA: &str = "sys_exit_data";
    /// Not attached: `sys_exit_data` tail-calls it, through `map::COPY`, to copy the bytes.
    pub const COPY_CALL: &str = "copy_call";
    /// Not attached: the TLS probes tail-call it, through `map::COPY_PLAINTEXT`.
    pub const COPY_PLAINTEXT: &str = "copy_plaintext";
    pub const SYS_ENTER_CONNECT: &str = "sys_enter_connect";
    pub const SYS_EXIT_CONNECT: &str = "sys_exit_connect";
    /// `accept` and `accept4`.
    pub const SYS_EXIT_ACCEPT: &str = "sys_exit_accept";
    pub const SYS_ENTER_CLOSE: &str = "sys_enter_close";
    /// `dup2` and `dup3`.
    pub const SYS_ENTER_DUP2: &str = "sys_enter_dup2";
    pub const SYS_ENTER_CLOSE_RANGE: &str = "sys_enter_close_range";
    pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
    pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    /// OpenSSL uprobes.
    pub const SSL_WRITE: &str = "ssl_write";
    pub const SSL_WRITE_EX: &str = "ssl_write_ex";
    pub const SSL_READ: &str = "ssl_read";
    pub const SSL_READ_EX: &str = "ssl_read_ex";
    /// The return of any of the four above.
    pub const SSL_RETURN: &str = "ssl_return";
    pub const SSL_FREE: &str = "ssl_free";
    /// Go crypto/tls: entries, and one probe per RET instruction.
    pub const GO_TLS_WRITE: &str = "go_tls_write";
    pub const GO_TLS_READ: &str = "go_tls_read";
    pub const GO_TLS_RET: &str = "go_tls_ret";
    /// Programs that return at once, attached instead of the others by `run --hooks-only`
    /// (the benchmark's floor): tracepoints, entry probes, return probes.
    pub const FLOOR_TRACEPOINT: &str = "floor_tracepoint";
    pub const FLOOR_PROBE: &str = "floor_probe";
    pub const FLOOR_RETURN: &str = "floor_return";

    /// What `run --hooks-only` attaches where `prog` would go.
    pub fn floor_of(prog: &str) -> &'static str {
        match prog {
            SSL_RETURN => FLOOR_RETURN,
            SSL_WRITE | SSL_WRITE_EX | SSL_READ | SSL_READ_EX | SSL_FREE | GO_TLS_WRITE
            | GO_TLS_READ | GO_TLS_RET => FLOOR_PROBE,
            _ => FLOOR_TRACEPOINT,
        }
    }

    /// Every program above, for checks.
    pub const ALL: &[&str] = &[
        SYS_ENTER_READ,
        SYS_ENTER_READV,
        SYS_ENTER_RECVFROM,
        SYS_ENTER_RECVMSG,
        SYS_ENTER_WRITE,
        SYS_ENTER_WRITEV,
        SYS_ENTER_SENDTO,
        SYS_ENTER_SENDMSG,
        SYS_ENTER_SENDFILE64,
        SYS_EXIT_DATA,
        COPY_CALL,
        COPY_PLAINTEXT,
        SYS_ENTER_CONNECT,
        SYS_EXIT_CONNECT,
        SYS_EXIT_ACCEPT,
        SYS_ENTER_CLOSE,
        SYS_ENTER_DUP2,
        SYS_ENTER_CLOSE_RANGE,
        SCHED_PROCESS_FORK,
        SCHED_PROCESS_EXEC,
        SSL_WRITE,
        SSL_WRITE_EX,
        SSL_READ,
        SSL_READ_EX,
        SSL_RETURN,
        SSL_FREE,
        GO_TLS_WRITE,
        GO_TLS_READ,
        GO_TLS_RET,
        FLOOR_TRACEPOINT,
        FLOOR_PROBE,
        FLOOR_RETURN,
    ];
}
