//! Finding OpenSSL in the node's processes and attaching the TLS probes to it.
//!
//! Uprobes attach to a file (its inode), not a process, so each distinct `libssl.so*` is
//! attached once and covers every process that maps it, now and later. Libraries are found
//! in `/proc/PID/maps` and opened inside `/proc/PID/root` (see `elf`), so a container's own
//! copy of OpenSSL is attached too, and nothing outside that container's root. Exec events
//! make a new process's libraries show up within a second; a periodic rescan catches
//! libraries loaded later with `dlopen`.

use std::{
    collections::{BTreeMap, HashSet},
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    programs::{
        uprobe::{UProbeAttachLocation::AbsoluteOffset, UProbeScope},
        UProbe,
    },
    Ebpf,
};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use monitor_common::names::program;

use super::{
    elf::{dynamic_symbol_offsets, open_in_root, with_elf, Elf, MAX_ELF_BYTES},
    gotls::{go_tls_functions, GoFunction, WRITE},
    ssl_sites::ssl_probes,
};
use crate::{limits::Limit, metrics::register};

/// The Go crypto/tls probes of `monitor-ebpf/src/gotls.rs`.
pub(crate) const GO_PROGRAMS: &[&str] = &[
    program::GO_TLS_WRITE,
    program::GO_TLS_READ,
    program::GO_TLS_RET,
];

/// The uprobe programs of `monitor-ebpf/src/tls.rs`.
pub(crate) const PROGRAMS: &[&str] = &[
    program::SSL_WRITE,
    program::SSL_WRITE_EX,
    program::SSL_READ,
    program::SSL_READ_EX,
    program::SSL_RETURN,
    program::SSL_FREE,
];

/// After an exec, the dynamic loader needs a moment to map the libraries: look early (a
/// short-lived client may be done within tens of milliseconds) and again later (`dlopen`).
const EXEC_RECHECKS: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];

/// Where the host's own OpenSSL lives. Attached at start even when no process maps it yet,
/// so short-lived clients started later (curl) are covered from their first call.
const SYSTEM_LIB_DIRS: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/local/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
];
const RESCAN_EVERY: Duration = Duration::from_secs(30);
/// Files remembered as inspected; beyond it those not attached are forgotten (and looked
/// at again when met): a workload can make as many executables as it likes.
const MAX_INSPECTED: usize = 65_536;
/// Files the TLS probes are attached to; each costs uprobes in the kernel, so a workload
/// that maps many copies of libssl cannot make the agent attach without end.
const MAX_ATTACHED: usize = 256;
/// Executions waiting to be looked at; more wait for the periodic rescan.
pub(crate) const EXEC_QUEUE: usize = 4096;

/// Whether a mapped file is OpenSSL's libssl (NSS's `libssl3.so` is not).
pub(crate) fn is_openssl_lib(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libssl.so")
}

/// Whether an ELF file exports OpenSSL's `SSL_read` and `SSL_write` itself (OpenSSL linked
/// statically and its symbols exported, as Node.js does). Only the dynamic symbol table is
/// read, so large executables cost little. The attacher asks the same question through
/// `inspect`, which also looks for Go.
#[cfg(test)]
fn exports_openssl(path: &Path) -> bool {
    File::open(path)
        .ok()
        .and_then(|f| with_elf(f, |elf, _| elf_exports_openssl(elf)))
        .unwrap_or(false)
}

fn elf_exports_openssl(elf: &Elf<'_>) -> bool {
    dynamic_symbol_offsets(elf, &["SSL_read", "SSL_write"]).len() == 2
}

/// What an executable carries that the TLS probes can use.
enum Executable {
    OpenSsl,
    GoTls([GoFunction; 2]),
    Neither,
}

fn inspect(file: File) -> Executable {
    with_elf(file, |elf, data| {
        if elf_exports_openssl(elf) {
            Executable::OpenSsl
        } else if let Some(f) = go_tls_functions(elf, data) {
            Executable::GoTls(f)
        } else {
            Executable::Neither
        }
    })
    .unwrap_or(Executable::Neither)
}

/// The probes `file` would get, one line each: program, function, file offset, and
/// whether the kernel emulates the instruction there.
pub(crate) fn probe_sites(file: File) -> Result<Vec<String>> {
    let line = |prog: &str, what: &str, offset: u64, emulated: bool| {
        let how = if emulated {
            "emulated"
        } else {
            "single-stepped"
        };
        format!("{prog}\t{what}\t{offset:#x}\t{how}")
    };
    let lines = with_elf(file, |elf, data| {
        let ssl = ssl_probes(elf, data);
        if !ssl.is_empty() {
            return ssl
                .iter()
                .map(|p| line(p.program, &p.function, p.offset, p.emulated))
                .collect();
        }
        let Some(go) = go_tls_functions(elf, data) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for f in &go {
            out.push(line("entry", f.symbol, f.entry, f.entry_emulated));
            out.extend(f.returns.iter().map(|r| line("ret", f.symbol, *r, false)));
        }
        out
    })
    .ok_or_else(|| anyhow!("not an ELF file of at most {MAX_ELF_BYTES} bytes"))?;
    if lines.is_empty() {
        bail!("neither OpenSSL nor Go's crypto/tls found");
    }
    Ok(lines)
}

/// The path uprobes are attached through for an open file: the kernel resolves it to the
/// very file opened, wherever it came from.
fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Distinct libssl paths mapped by one process, from its `/proc/PID/maps` text.
pub(crate) fn libssl_paths(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/') && is_openssl_lib(p))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Probes attached to one file, and how many of them the kernel single-steps.
#[derive(Default)]
struct Placed {
    probes: usize,
    single_stepped: usize,
}

impl Placed {
    fn count(&mut self, emulated: bool, metric: &Counter) {
        self.probes += 1;
        if !emulated {
            self.single_stepped += 1;
            metric.inc();
        }
    }
}

pub(crate) struct TlsAttacher {
    ebpf: Arc<Mutex<Ebpf>>,
    links: Arc<super::links::Links>,
    /// (device, inode) of every file already handled, attached or failed.
    seen: HashSet<(u64, u64)>,
    /// The files of `seen` probes were attached to (or tried), never forgotten.
    probed: HashSet<(u64, u64)>,
    attached: Gauge,
    failures: Counter,
    /// Probes on instructions the kernel single-steps (`probe_site`).
    single_stepped: Counter,
    /// Attach the floor programs at the same sites (`CaptureConfig::hooks_only`).
    hooks_only: bool,
}

impl TlsAttacher {
    pub(crate) fn new(
        ebpf: Arc<Mutex<Ebpf>>,
        links: Arc<super::links::Links>,
        hooks_only: bool,
        registry: &mut Registry,
    ) -> Self {
        TlsAttacher {
            ebpf,
            links,
            hooks_only,
            seen: HashSet::new(),
            probed: HashSet::new(),
            attached: register(
                registry,
                "monitor_tls_objects_attached",
                "Distinct OpenSSL libraries the TLS probes are attached to",
            ),
            failures: register(
                registry,
                "monitor_tls_attach_failures",
                "OpenSSL libraries the TLS probes could not be attached to (reasons in the log)",
            ),
            single_stepped: register(
                registry,
                "monitor_tls_probes_single_stepped",
                "TLS probes placed on an instruction the kernel single-steps (several microseconds \
                 per hit under a hypervisor), because the function had no emulated site where \
                 the values the probe reads are intact; Go's RET probes are among them",
            ),
        }
    }

    /// Attaches to the host's OpenSSL libraries in the standard directories.
    pub(crate) fn scan_system(&mut self) {
        for dir in SYSTEM_LIB_DIRS {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if is_openssl_lib(&e.file_name().to_string_lossy()) {
                    // The host's own directories: its symlinks are the host's to make.
                    if let Ok(file) = File::open(e.path()) {
                        let shown = e.path().display().to_string();
                        self.consider(&file, &shown, "host library");
                    }
                }
            }
        }
    }

    /// Looks at every process on the node.
    pub(crate) fn scan_all(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                self.scan_pid(pid);
            }
        }
    }

    /// Attaches to the OpenSSL libraries `pid` maps that are not attached yet. A process
    /// that is gone or unreadable is skipped silently: there is nothing to attach to.
    pub(crate) fn scan_pid(&mut self, pid: u32) {
        if pid == std::process::id() {
            return;
        }
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return;
        };
        for lib in libssl_paths(&maps) {
            // The path is the process's: resolved in its root, never out of it.
            match open_in_root(pid, &lib) {
                Ok(file) => self.consider(&file, &lib, &format!("pid {pid}")),
                Err(e) => log::debug!("cannot open {lib} in the root of pid {pid}: {e}"),
            }
        }
        // OpenSSL linked into the executable itself (Node.js, static builds), or Go. The
        // kernel's link to the executable names the file itself, not a path to resolve.
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let Ok(file) = File::open(&exe) else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let key = (meta.dev(), meta.ino());
        if self.seen.contains(&key) {
            return;
        }
        // Named for the log only when something is attached (most executables are neither).
        let shown = || {
            std::fs::read_link(&exe)
                .map_or_else(|_| exe.display().to_string(), |p| p.display().to_string())
        };
        let Ok(copy) = file.try_clone() else {
            return;
        };
        match inspect(copy) {
            Executable::OpenSsl => {
                self.consider(&file, &shown(), &format!("executable of pid {pid}"));
            }
            Executable::GoTls(functions) => {
                if self.first_look(key) && self.may_probe(key) {
                    let result = self.attach_go(&file, &functions);
                    self.report("Go TLS", result, &shown(), &format!("pid {pid}"));
                }
            }
            Executable::Neither => {
                self.first_look(key);
            }
        }
    }

    /// The program to attach where `prog` belongs: itself, or its floor stand-in.
    fn stand_in(&self, prog: &'static str) -> &'static str {
        if self.hooks_only {
            program::floor_of(prog)
        } else {
            prog
        }
    }

    /// Entry probes on both functions and a probe on each RET of `Read` (writes are
    /// reported at entry).
    fn attach_go(&self, file: &File, functions: &[GoFunction; 2]) -> Result<Placed> {
        let path = fd_path(file);
        let mut ebpf = self
            .ebpf
            .lock()
            .map_err(|_| anyhow!("eBPF object lock poisoned"))?;
        let mut done = Placed::default();
        for f in functions {
            let entry_prog = if f.symbol == WRITE {
                program::GO_TLS_WRITE
            } else {
                program::GO_TLS_READ
            };
            // RETs are always single-stepped: Go has no uretprobe alternative.
            let points = std::iter::once((entry_prog, f.entry, f.entry_emulated))
                .chain(f.returns.iter().map(|r| (program::GO_TLS_RET, *r, false)));
            for (prog, offset, emulated) in points {
                self.attach_at(&mut ebpf, prog, offset, &path)?;
                done.count(emulated, &self.single_stepped);
            }
        }
        Ok(done)
    }

    /// Attaches to `file` unless that file (device, inode) was handled before: opening
    /// followed the symlinks, so libssl.so -> libssl.so.3 is one file.
    fn consider(&mut self, file: &File, shown: &str, found_in: &str) {
        let Ok(meta) = file.metadata() else {
            return;
        };
        let key = (meta.dev(), meta.ino());
        if !meta.is_file() || !self.first_look(key) || !self.may_probe(key) {
            return;
        }
        let result = self.attach_object(file);
        self.report("TLS", result, shown, found_in);
    }

    /// Remembers a file as handled; false when it was already.
    fn first_look(&mut self, key: (u64, u64)) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.seen.len() >= MAX_INSPECTED {
            Limit::InspectedFiles.reached();
            let probed = &self.probed;
            self.seen.retain(|k| probed.contains(k));
        }
        self.seen.insert(key);
        true
    }

    /// Whether probes may be attached to one more file.
    fn may_probe(&mut self, key: (u64, u64)) -> bool {
        if self.probed.len() >= MAX_ATTACHED {
            Limit::TlsObjects.reached();
            return false;
        }
        self.probed.insert(key);
        true
    }

    /// Counts and logs the outcome of attaching to one file.
    fn report(&mut self, kind: &str, result: Result<Placed>, shown: &str, found_in: &str) {
        match result {
            Ok(n) => {
                self.attached.inc();
                log::info!(
                    "{kind} probes attached to {shown} ({found_in}, {} probes, {} single-stepped)",
                    n.probes,
                    n.single_stepped
                );
            }
            Err(e) => {
                self.failures.inc();
                log::warn!("cannot attach {kind} probes to {shown} ({found_in}): {e:#}");
            }
        }
    }

    fn attach_object(&self, file: &File) -> Result<Placed> {
        let probes = with_elf(file.try_clone()?, |elf, data| ssl_probes(elf, data))
            .ok_or_else(|| anyhow!("not an ELF file of at most {MAX_ELF_BYTES} bytes"))?;
        if probes.is_empty() {
            bail!("SSL_read/SSL_write not found");
        }
        let path = fd_path(file);
        let mut ebpf = self
            .ebpf
            .lock()
            .map_err(|_| anyhow!("eBPF object lock poisoned"))?;
        let mut done = Placed::default();
        for p in &probes {
            self.attach_at(&mut ebpf, p.program, p.offset, &path)
                .with_context(|| p.function.clone())?;
            done.count(p.emulated, &self.single_stepped);
        }
        Ok(done)
    }

    /// Attaches `prog` (or its floor stand-in) at file offset `offset` of `path`, for every
    /// process, and keeps the link.
    fn attach_at(
        &self,
        ebpf: &mut Ebpf,
        prog: &'static str,
        offset: u64,
        path: &Path,
    ) -> Result<()> {
        let program: &mut UProbe = ebpf
            .program_mut(self.stand_in(prog))
            .ok_or_else(|| anyhow!("program {prog} missing"))?
            .try_into()?;
        let id = program
            .attach(AbsoluteOffset(offset), path, UProbeScope::AllProcesses)
            .with_context(|| format!("{prog} at {offset:#x}"))?;
        self.links.keep(program.take_link(id)?);
        Ok(())
    }

    /// Follows exec events (pids on `execs`) and rescans periodically. Call `scan_system`
    /// and `scan_all` first, before reporting ready.
    pub(crate) fn spawn(
        mut self,
        execs: Receiver<u32>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("tls-attach".into())
            .spawn(move || {
                // When to look at which pid again, and whether it is that pid's last look.
                let mut due: BTreeMap<Instant, Vec<(u32, bool)>> = BTreeMap::new();
                let mut waiting = 0usize;
                let mut last_full = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    match execs.recv_timeout(Duration::from_millis(50)) {
                        // The periodic rescan finds what is not looked at now.
                        Ok(_) if waiting >= EXEC_QUEUE => Limit::ExecQueue.reached(),
                        Ok(pid) => {
                            let now = Instant::now();
                            waiting += 1;
                            for (i, d) in EXEC_RECHECKS.iter().enumerate() {
                                let last = i + 1 == EXEC_RECHECKS.len();
                                due.entry(now + *d).or_default().push((pid, last));
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let now = Instant::now();
                    while let Some(entry) = due.first_entry() {
                        if *entry.key() > now {
                            break;
                        }
                        for (pid, last) in entry.remove() {
                            waiting -= usize::from(last);
                            self.scan_pid(pid);
                        }
                    }
                    if now.duration_since(last_full) >= RESCAN_EVERY {
                        self.scan_all();
                        last_full = now;
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn finds_openssl_not_nss() {
        let maps = "\
7f00-7f01 r--p 00000000 fe:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f01-7f02 r-xp 00001000 fe:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f02-7f03 r--p 00000000 fe:01 124 /usr/lib/x86_64-linux-gnu/libssl3.so
7f03-7f04 r--p 00000000 fe:01 125 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f04-7f05 rw-p 00000000 00:00 0 [heap]
7f05-7f06 r--p 00000000 fe:01 126 /opt/app/lib/libssl.so.1.1
";
        assert_eq!(
            libssl_paths(maps),
            [
                "/opt/app/lib/libssl.so.1.1",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3"
            ]
        );
        assert!(!is_openssl_lib("/usr/lib/libssl3.so"));
        assert!(libssl_paths("garbage\n\n1 2 3").is_empty());
    }

    #[test]
    fn recognises_executables_that_export_openssl() {
        // This test binary does not export OpenSSL; the system's libssl does.
        assert!(!exports_openssl(Path::new("/proc/self/exe")));
        assert!(!exports_openssl(Path::new("/nonexistent")));
        let lib = [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libssl.so.3",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists());
        if let Some(lib) = lib {
            assert!(exports_openssl(Path::new(lib)));
        }
    }
}
