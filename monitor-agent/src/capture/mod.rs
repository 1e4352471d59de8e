//! Loading the eBPF programs, attaching them, and reading what they capture.

pub(crate) mod btf;
pub(crate) mod counters;
pub(crate) mod event;
pub(crate) mod inflight;
mod links;
pub(crate) mod preflight;
pub(crate) mod reader;
mod tracefs;

pub(crate) mod elf;
pub(crate) mod gotls;
pub(crate) mod probe_site;
pub(crate) mod ssl_sites;
pub(crate) mod tls;

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{Program, TracePoint, UProbe},
    Ebpf, EbpfLoader,
};
use monitor_common::{
    names::{global, map, program},
    KernelOffsets,
};

/// Every tracepoint program and the `syscalls:` tracepoints it serves. The data exit handler
/// is shared: the stashed arguments tell it what shape the buffer has. The write family
/// has no exit handler: it is captured at entry.
const ATTACHMENTS: &[(&str, &[&str])] = &[
    (program::SYS_ENTER_READ, &["sys_enter_read"]),
    (program::SYS_ENTER_READV, &["sys_enter_readv"]),
    (program::SYS_ENTER_RECVFROM, &["sys_enter_recvfrom"]),
    (program::SYS_ENTER_RECVMSG, &["sys_enter_recvmsg"]),
    (program::SYS_ENTER_WRITE, &["sys_enter_write"]),
    (program::SYS_ENTER_WRITEV, &["sys_enter_writev"]),
    (program::SYS_ENTER_SENDTO, &["sys_enter_sendto"]),
    (program::SYS_ENTER_SENDMSG, &["sys_enter_sendmsg"]),
    (program::SYS_ENTER_SENDFILE64, &["sys_enter_sendfile64"]),
    (
        program::SYS_EXIT_DATA,
        &[
            "sys_exit_read",
            "sys_exit_readv",
            "sys_exit_recvfrom",
            "sys_exit_recvmsg",
            "sys_exit_sendfile64",
        ],
    ),
    (program::SYS_ENTER_CONNECT, &["sys_enter_connect"]),
    (program::SYS_EXIT_CONNECT, &["sys_exit_connect"]),
    (
        program::SYS_EXIT_ACCEPT,
        &["sys_exit_accept", "sys_exit_accept4"],
    ),
    (program::SYS_ENTER_CLOSE, &["sys_enter_close"]),
    (
        program::SYS_ENTER_DUP2,
        &["sys_enter_dup2", "sys_enter_dup3"],
    ),
    (program::SYS_ENTER_CLOSE_RANGE, &["sys_enter_close_range"]),
];

/// Tracepoints of syscalls a kernel may not have (close_range came in 5.9): without the
/// syscall there is nothing to follow, so a failure to attach is only logged.
const OPTIONAL: &[&str] = &["sys_enter_close_range"];

/// Tracepoints outside `syscalls:`.
const OTHER_TRACEPOINTS: &[(&str, &str, &str)] = &[
    (program::SCHED_PROCESS_EXEC, "sched", "sched_process_exec"),
    (program::SCHED_PROCESS_FORK, "sched", "sched_process_fork"),
];

/// The eBPF object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// The loaded programs. Dropping it detaches everything, links first and all at once.
pub(crate) struct Capture {
    /// Shared with the TLS attacher, which adds uprobes while the agent runs.
    ebpf: Arc<Mutex<Ebpf>>,
    /// Every attachment, the TLS attacher's too.
    links: Arc<links::Links>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub attached: usize,
    /// Kernel ids of the loaded programs, with their names, for run-time statistics.
    pub programs: Vec<(u32, String)>,
    /// Holding this keeps the kernel's per-program run-time accounting on.
    _stats: Option<std::os::fd::OwnedFd>,
    /// The floor programs stand in for the real ones (`CaptureConfig::hooks_only`).
    hooks_only: bool,
    /// Threads blocked in a read at start that `BLOCKED_READS` had no room for.
    pub blocked_reads_refused: u64,
}

impl Capture {
    /// Detaches every program on a thread of its own, so that the agent's threads finish
    /// meanwhile; joining it logs what it took.
    pub(crate) fn start_detaching(&self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let links = self.links.clone();
        std::thread::Builder::new()
            .name("detach-all".into())
            .spawn(move || log_detached(&links))
    }
}

fn log_detached(links: &links::Links) {
    let (n, took) = links.detach_all();
    if n > 0 {
        log::info!("detached {n} attachments in {} ms", took.as_millis());
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Whatever `start_detaching` did not get (or all, when it was not called).
        log_detached(&self.links);
    }
}

pub(crate) struct CaptureConfig {
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Entries of the kernel's connection table (`CONNS`, LRU).
    pub connections: u32,
    /// Entries of the table of reads already blocked at start (`BLOCKED_READS`).
    pub blocked_reads: u32,
    /// Have the kernel account the time spent in each program (costs a little per run).
    pub kernel_stats: bool,
    /// Attach programs that return at once instead of the real ones (the benchmark's
    /// floor: what the hooks alone cost). Nothing is captured.
    pub hooks_only: bool,
}

/// Loads the programs the data syscalls' exit and the TLS probes hand their copying to,
/// and puts each where its tail calls look; before anything is attached, so no call finds
/// a slot empty.
fn load_copy_programs(ebpf: &mut Ebpf) -> Result<[(u32, String); 2]> {
    let call = {
        let prog: &mut TracePoint = copy_program(ebpf, program::COPY_CALL)?.try_into()?;
        prog.load()
            .with_context(|| format!("verifier rejected {}", program::COPY_CALL))?;
        (prog.info()?.id(), prog.fd()?.try_clone()?)
    };
    let plaintext = {
        let prog: &mut UProbe = copy_program(ebpf, program::COPY_PLAINTEXT)?.try_into()?;
        prog.load()
            .with_context(|| format!("verifier rejected {}", program::COPY_PLAINTEXT))?;
        (prog.info()?.id(), prog.fd()?.try_clone()?)
    };
    for (table, fd) in [(map::COPY, &call.1), (map::COPY_PLAINTEXT, &plaintext.1)] {
        let mut table = ProgramArray::try_from(
            ebpf.map_mut(table)
                .with_context(|| format!("map {table} missing from the eBPF object"))?,
        )?;
        table
            .set(0, fd, 0)
            .context("installing a copy program for tail calls")?;
    }
    Ok([
        (call.0, program::COPY_CALL.to_string()),
        (plaintext.0, program::COPY_PLAINTEXT.to_string()),
    ])
}

/// Loads and attaches every tracepoint program (or, with `hooks_only`, the floor program
/// in each place), adding the loaded programs' kernel ids to `programs`.
fn attach_tracepoints(
    ebpf: &mut Ebpf,
    links: &links::Links,
    hooks_only: bool,
    programs: &mut Vec<(u32, String)>,
) -> Result<()> {
    let tracepoints = ATTACHMENTS
        .iter()
        .flat_map(|(prog, points)| points.iter().map(move |p| (*prog, "syscalls", *p)))
        .chain(OTHER_TRACEPOINTS.iter().copied());
    for (prog, category, point) in tracepoints {
        let prog = if hooks_only {
            program::floor_of(prog)
        } else {
            prog
        };
        let program: &mut TracePoint = ebpf
            .program_mut(prog)
            .with_context(|| format!("program {prog} missing from the eBPF object"))?
            .try_into()?;
        if program.info().is_err() {
            program
                .load()
                .with_context(|| format!("verifier rejected {prog}"))?;
            if let Ok(info) = program.info() {
                programs.push((info.id(), prog.to_string()));
            }
        }
        let id = match program.attach(category, point) {
            Ok(id) => id,
            Err(e) if OPTIONAL.contains(&point) => {
                log::info!("not following {category}:{point}: {e}");
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("attaching {prog} to {category}:{point}"))
            }
        };
        links.keep(program.take_link(id)?);
    }
    Ok(())
}

fn copy_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Program> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))
}

impl Capture {
    pub(crate) fn load(cfg: &CaptureConfig) -> Result<Self> {
        let offsets: KernelOffsets = btf::running_kernel_offsets()?;
        let tgid = std::process::id();
        let mut ebpf = EbpfLoader::new()
            .override_global(global::OFFSETS, &offsets, true)
            .override_global(global::AGENT_TGID, &tgid, true)
            .override_global(
                global::FORK_CHILD_PID_AT,
                &tracefs::fork_child_pid_at(),
                true,
            )
            .map_max_entries(map::EVENTS, cfg.ring_buffer_bytes)
            .map_max_entries(map::CONNS, cfg.connections)
            .map_max_entries(map::BLOCKED_READS, cfg.blocked_reads)
            // The kernel side's task-local storage (`IN_FLIGHT`), which aya has no type
            // for: created like any map, never opened from userspace.
            .allow_unsupported_maps()
            .load(OBJECT)
            .context("loading the eBPF programs into the kernel")?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("kernel-side log records unavailable: {e}");
                None
            }
        };
        let mut programs = Vec::new();
        programs.extend(load_copy_programs(&mut ebpf)?);
        let links = Arc::new(links::Links::default());
        attach_tracepoints(&mut ebpf, &links, cfg.hooks_only, &mut programs)?;
        let attached = links.len();
        let floor: &[&str] = if cfg.hooks_only {
            &[program::FLOOR_PROBE, program::FLOOR_RETURN]
        } else {
            &[]
        };
        for prog in tls::PROGRAMS.iter().chain(tls::GO_PROGRAMS).chain(floor) {
            let program: &mut UProbe = ebpf
                .program_mut(prog)
                .with_context(|| format!("program {prog} missing from the eBPF object"))?
                .try_into()?;
            program
                .load()
                .with_context(|| format!("verifier rejected {prog}"))?;
            if let Ok(info) = program.info() {
                programs.push((info.id(), prog.to_string()));
            }
        }
        let stats = if cfg.kernel_stats {
            Some(
                aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .context("enabling the kernel's BPF run-time statistics")?,
            )
        } else {
            None
        };
        let mut cap = Capture {
            ebpf: Arc::new(Mutex::new(ebpf)),
            links,
            logger,
            attached,
            programs,
            hooks_only: cfg.hooks_only,
            _stats: stats,
            blocked_reads_refused: 0,
        };
        let blocked = cap.stash_blocked_reads()?;
        log::info!(
            "picked up {} threads already blocked in a read",
            blocked.stashed
        );
        if blocked.refused > 0 {
            log::warn!(
                "{} threads blocked in a read are beyond --kernel-blocked-reads: their \
                 next requests are not captured",
                blocked.refused
            );
        }
        cap.blocked_reads_refused = blocked.refused;
        Ok(cap)
    }

    fn ebpf(&self) -> Result<std::sync::MutexGuard<'_, Ebpf>> {
        self.ebpf
            .lock()
            .map_err(|_| anyhow!("eBPF object lock poisoned"))
    }

    fn stash_blocked_reads(&mut self) -> Result<inflight::Stashed> {
        let mut ebpf = self.ebpf()?;
        let map = ebpf
            .map_mut(map::BLOCKED_READS)
            .context("BLOCKED_READS map missing")?;
        let mut args = aya::maps::HashMap::try_from(map)?;
        let stashed = inflight::stash_blocked_reads(&mut args);
        if stashed.stashed > 0 {
            let map = ebpf
                .map_mut(map::BLOCKED_READS_LEFT)
                .context("BLOCKED_READS_LEFT map missing")?;
            aya::maps::Array::<_, u32>::try_from(map)?.set(0, 1, 0)?;
        }
        Ok(stashed)
    }

    fn take_map(&self, name: &str) -> Result<aya::maps::Map> {
        self.ebpf()?
            .take_map(name)
            .with_context(|| format!("{name} map missing"))
    }

    /// The ring buffer of captured events (can be taken once).
    pub(crate) fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        Ok(RingBuf::try_from(self.take_map(map::EVENTS)?)?)
    }

    /// Attaches the OpenSSL probes to libraries as processes load them.
    pub(crate) fn tls_attacher(
        &self,
        registry: &mut prometheus_client::registry::Registry,
    ) -> tls::TlsAttacher {
        tls::TlsAttacher::new(
            self.ebpf.clone(),
            self.links.clone(),
            self.hooks_only,
            registry,
        )
    }

    /// Forwards the kernel side's log records (aya-log) to this process's logger until
    /// `stop` is set. The logger's map must stay open while programs run, so the thread
    /// owns it rather than dropping it.
    pub(crate) fn spawn_kernel_log(
        &mut self,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        use std::os::fd::AsRawFd;
        let Some(mut logger) = self.logger.take() else {
            return Ok(None);
        };
        let handle = std::thread::Builder::new()
            .name("ebpf-log".into())
            .spawn(move || {
                let fd = logger.as_raw_fd();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&raw mut pfd, 1, 500) };
                    logger.flush();
                }
            })?;
        Ok(Some(handle))
    }

    /// Clears, every few seconds until `stop` is set, the blocked reads stashed at start and
    /// pending TLS writes of threads that died in the middle (see
    /// `inflight::sweep_dead_threads`), and tells the kernel once no blocked read is left.
    pub(crate) fn spawn_sweeper(
        &mut self,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<std::thread::JoinHandle<()>> {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
        const TICK: std::time::Duration = std::time::Duration::from_millis(250);
        let mut args: aya::maps::HashMap<MapData, u64, monitor_common::SyscallArgs> =
            aya::maps::HashMap::try_from(self.take_map(map::BLOCKED_READS)?)?;
        let mut args_left: aya::maps::Array<MapData, u32> =
            aya::maps::Array::try_from(self.take_map(map::BLOCKED_READS_LEFT)?)?;
        let mut writes: aya::maps::HashMap<MapData, u64, monitor_common::PendingWrite> =
            aya::maps::HashMap::try_from(self.take_map(map::PENDING_WRITES)?)?;
        let handle = std::thread::Builder::new()
            .name("inflight-sweep".into())
            .spawn(move || {
                let mut waited = std::time::Duration::ZERO;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    waited += TICK;
                    if waited >= EVERY {
                        waited = std::time::Duration::ZERO;
                        let n = inflight::sweep_dead_threads(&mut args)
                            + inflight::sweep_dead_threads(&mut writes);
                        if n > 0 {
                            log::debug!("cleared the in-flight calls of {n} exited threads");
                        }
                        inflight::note_when_drained(&args, &mut args_left);
                    }
                }
            })?;
        Ok(handle)
    }

    /// The per-CPU health counters (can be taken once).
    /// The table through which userspace switches off the capture of a connection.
    pub(crate) fn take_switch_off(&mut self) -> Result<aya::maps::Array<MapData, u64>> {
        Ok(aya::maps::Array::try_from(
            self.take_map(map::SWITCHED_OFF)?,
        )?)
    }

    pub(crate) fn take_counters(&mut self) -> Result<PerCpuArray<MapData, u64>> {
        let map = self
            .ebpf()?
            .take_map(map::COUNTERS)
            .context("COUNTERS map missing")?;
        Ok(PerCpuArray::try_from(map)?)
    }
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSymbol};

    use super::*;

    /// The kernel side defines every map, global and program the loader looks up.
    #[test]
    fn the_object_defines_every_name_the_agent_uses() {
        let elf = object::File::parse(OBJECT).unwrap();
        let symbols: Vec<&str> = elf.symbols().filter_map(|s| s.name().ok()).collect();
        let names = [
            global::OFFSETS,
            global::AGENT_TGID,
            global::FORK_CHILD_PID_AT,
        ]
        .into_iter()
        .chain([
            map::EVENTS,
            map::BLOCKED_READS,
            map::BLOCKED_READS_LEFT,
            map::CONNS,
            map::COUNTERS,
            map::COPY,
            map::COPY_PLAINTEXT,
            map::SWITCHED_OFF,
        ])
        .chain(program::ALL.iter().copied());
        for name in names {
            assert!(symbols.contains(&name), "{name} is not in the eBPF object");
        }
        let used: Vec<&str> = ATTACHMENTS
            .iter()
            .map(|(p, _)| *p)
            .chain(OTHER_TRACEPOINTS.iter().map(|(p, _, _)| *p))
            .chain(tls::PROGRAMS.iter().copied())
            .chain(tls::GO_PROGRAMS.iter().copied())
            .chain([program::COPY_CALL, program::COPY_PLAINTEXT])
            // Loaded by `run --hooks-only` in place of the others.
            .chain([
                program::FLOOR_TRACEPOINT,
                program::FLOOR_PROBE,
                program::FLOOR_RETURN,
            ])
            .collect();
        for p in program::ALL {
            assert!(used.contains(p), "{p} is defined but never loaded");
        }
    }
}
