//! Checks that this machine can run the agent, fixing what can be fixed (tracefs) and
//! saying in one sentence what cannot.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum Missing {
    #[error("the agent must run as root (it loads eBPF programs: needs CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE); try: sudo monitor-agent run")]
    NotRoot,
    #[error("the agent lacks {0}, which it needs {1}; grant it (in a DaemonSet: securityContext.capabilities.add) or run it as root on the host")]
    NoCapability(&'static str, &'static str),
    #[error(
        "the kernel exposes no BTF at /sys/kernel/btf/vmlinux (needs CONFIG_DEBUG_INFO_BTF=y)"
    )]
    NoBtf,
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    NoTracefs(String),
    #[error(
        "the kernel has no syscall tracepoints (needs CONFIG_FTRACE_SYSCALLS=y): {0} is missing"
    )]
    NoSyscallTracepoints(String),
    #[error("kernel {0} is too old: BPF ring buffers need Linux 5.8 or newer")]
    OldKernel(String),
}

pub(crate) const TRACEFS: &str = "/sys/kernel/tracing";

/// Runs every check; the first failure is returned.
pub(crate) fn check() -> Result<(), Missing> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Missing::NotRoot);
    }
    if let Some(effective) = effective_capabilities() {
        check_capabilities(effective)?;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(Missing::NoBtf);
    }
    let release = kernel_release();
    if !release_at_least(&release, 5, 8) {
        return Err(Missing::OldKernel(release));
    }
    ensure_tracefs()?;
    let probe = format!("{TRACEFS}/events/syscalls/sys_enter_read");
    if !Path::new(&probe).exists() {
        return Err(Missing::NoSyscallTracepoints(probe));
    }
    raise_memlock();
    Ok(())
}

/// Capabilities the programs cannot be loaded or attached without. CAP_SYS_ADMIN stands in
/// for each (kernels before 5.8 know only it).
const REQUIRED: &[(u32, &str, &str)] = &[
    (39, "CAP_BPF", "to load eBPF programs and maps"),
    (
        38,
        "CAP_PERFMON",
        "to attach them to tracepoints and uprobes",
    ),
];
const CAP_SYS_ADMIN: u32 = 21;

/// A container runs as UID 0 with only the capabilities it was granted, so root alone says
/// little: a missing one would otherwise surface as an obscure error from the first load.
fn check_capabilities(effective: u64) -> Result<(), Missing> {
    let has = |bit: u32| effective & (1u64 << bit) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    match REQUIRED.iter().find(|(bit, _, _)| !has(*bit)) {
        Some((_, name, why)) => Err(Missing::NoCapability(name, why)),
        None => Ok(()),
    }
}

/// The effective set from `/proc/self/status`, if it can be read.
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let maj: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let min: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (maj, min) >= (major, minor)
}

fn ensure_tracefs() -> Result<(), Missing> {
    if Path::new(&format!("{TRACEFS}/events")).exists() {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "tracefs", TRACEFS])
        .status();
    match status {
        Ok(s) if s.success() && Path::new(&format!("{TRACEFS}/events")).exists() => Ok(()),
        Ok(s) => Err(Missing::NoTracefs(format!("mount exited with {s}"))),
        Err(e) => Err(Missing::NoTracefs(e.to_string())),
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to a local struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rlim) };
    if rc != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_comparison() {
        assert!(release_at_least("6.18.44-fc-v657", 5, 8));
        assert!(release_at_least("5.8.0", 5, 8));
        assert!(!release_at_least("5.4.0-150-generic", 5, 8));
        assert!(!release_at_least("garbage", 5, 8));
    }

    #[test]
    fn capabilities_needed_are_named() {
        let granted = |bits: &[u32]| bits.iter().fold(0u64, |m, b| m | (1 << b));
        // What the DaemonSet grants: BPF, PERFMON, SYS_RESOURCE, SYS_PTRACE, DAC_READ_SEARCH.
        assert!(check_capabilities(granted(&[39, 38, 24, 19, 2])).is_ok());
        assert!(check_capabilities(granted(&[CAP_SYS_ADMIN])).is_ok());
        let err = check_capabilities(granted(&[38, 24, 19, 2])).unwrap_err();
        assert!(
            err.to_string().starts_with("the agent lacks CAP_BPF"),
            "{err}"
        );
        let err = check_capabilities(granted(&[39])).unwrap_err();
        assert!(err.to_string().contains("CAP_PERFMON"), "{err}");
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000000c001080004\n";
        assert_eq!(parse_cap_eff(status), Some(granted(&[39, 38, 24, 19, 2])));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }
}
