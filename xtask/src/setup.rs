//! Makes a fresh machine able to build and load the agent. Every step checks first, so a
//! second run does nothing and takes well under a second.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::{self, have, is_root, output};

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_FEATURE: &str = "llvm-22";

pub(crate) fn all(peers: bool) -> Result<()> {
    build_tools()?;
    kernel()?;
    if peers {
        test_peers()?;
    }
    Ok(())
}

/// What compiling the eBPF programs needs, without looking at the kernel.
pub(crate) fn build_tools() -> Result<()> {
    nightly_rust_src()?;
    bpf_linker()
}

fn nightly_sysroot() -> Result<PathBuf> {
    if !have("rustup") {
        bail!("rustup is not installed: install Rust with rustup (https://rustup.rs), then rerun");
    }
    let has_nightly = output(Command::new("rustup").args(["toolchain", "list"]))?
        .lines()
        .any(|l| l.starts_with("nightly"));
    if !has_nightly {
        eprintln!("xtask: installing the nightly toolchain (the eBPF crate needs it)");
        util::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
            .context("the eBPF programs need a nightly Rust toolchain and `rustup toolchain install nightly` failed")?;
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn nightly_rust_src() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    let core = sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if core.exists() {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the nightly toolchain");
    let added = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", "nightly"])
        .status()
        .is_ok_and(|s| s.success());
    if added && core.exists() {
        return Ok(());
    }
    // Offline fallback kept beside the repository (see ../shared/toolchain/README.md).
    let dir = util::workspace_root().join("../shared/toolchain");
    let tarball = std::fs::read_dir(&dir).ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().contains("rust-src-nightly"))
    });
    let Some(tarball) = tarball else {
        bail!("nightly rust-src is missing and could not be downloaded: run `rustup component add rust-src --toolchain nightly`");
    };
    util::run(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&sysroot),
    )?;
    if !core.exists() {
        bail!("unpacking {} did not provide rust-src", tarball.display());
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let installed = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION));
    if installed {
        return Ok(());
    }
    let sysroot = nightly_sysroot()?;
    let lib = sysroot.join("lib");
    let link = lib.join("libLLVM.so");
    if !link.exists() {
        let target = std::fs::read_dir(&lib)?
            .filter_map(std::result::Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("libLLVM.so.") && n.contains("nightly"))
            .context("the nightly toolchain ships no libLLVM.so.*: bpf-linker cannot be built against it")?;
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {} -> {target}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM (about a minute)"
    );
    util::run(
        Command::new("cargo")
            .env("LLVM_PREFIX", &sysroot)
            .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
            .args(["--no-default-features", "--features", LLVM_FEATURE]),
    )
    .context("installing bpf-linker failed")
}

/// BPF ring buffers arrived in Linux 5.8.
fn ring_buffer_kernel() -> Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < (5, 8) {
        bail!(
            "kernel {} is too old: BPF ring buffers need Linux 5.8 or newer",
            release.trim()
        );
    }
    Ok(())
}

fn kernel() -> Result<()> {
    ring_buffer_kernel()?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux): it needs CONFIG_DEBUG_INFO_BTF=y");
    }
    if !is_root() {
        // Building works without root; loading will say what it needs.
        return Ok(());
    }
    if !Path::new("/sys/kernel/tracing/events").exists() {
        util::run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
            .context("tracefs is not mounted at /sys/kernel/tracing and mounting it failed")?;
    }
    if !Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_read").exists() {
        bail!("this kernel has no syscall tracepoints: it needs CONFIG_FTRACE_SYSCALLS=y");
    }
    if !Path::new("/sys/kernel/tracing/uprobe_events").exists() {
        bail!("this kernel has no uprobes: it needs CONFIG_UPROBE_EVENTS=y");
    }
    Ok(())
}

/// Debian packages the end-to-end tests and the benchmark drive, by the command they provide.
const PEERS: &[(&str, &str)] = &[
    ("nginx", "nginx"),
    ("wrk", "wrk"),
    ("curl", "curl"),
    ("python3", "python3"),
    ("openssl", "openssl"),
    ("node", "nodejs"),
    ("go", "golang-go"),
    ("prometheus", "prometheus"),
    ("h2load", "nghttp2-client"),
];

fn test_peers() -> Result<()> {
    let mut missing: Vec<&str> = PEERS
        .iter()
        .filter(|(cmd, _)| !have(cmd) && !Path::new(&format!("/usr/sbin/{cmd}")).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    let venv_works = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !venv_works {
        missing.push("python3-venv");
    }
    apt_install(&missing)?;
    python_tools()
}

/// Test peers from PyPI, kept in a virtualenv under target/ so the system Python stays
/// untouched: `openapi-spec-validator` checks the exported OpenAPI in the inventory tests,
/// and `h2` (hyper-h2) drives tests/peers/h2c_upgrade.py, an HTTP/2 server that accepts the
/// cleartext `Upgrade: h2c`, which neither nginx nor nghttpd offer.
fn python_tools() -> Result<()> {
    const PACKAGES: &[&str] = &["openapi-spec-validator", "h2"];
    let venv = util::workspace_root().join("target/pyenv");
    let python = venv.join("bin/python");
    let h2_present = || {
        Command::new(&python)
            .args(["-c", "import h2"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if venv.join("bin/openapi-spec-validator").exists() && h2_present() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} into {}",
        PACKAGES.join(" "),
        venv.display()
    );
    util::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    util::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
    )
    .context("pip could not install the Python test peers (openapi-spec-validator, h2)")
}

/// Makes apt wait for another apt or dpkg to finish instead of failing on its lock.
pub(crate) const APT_LOCK_WAIT: [&str; 2] = ["-o", "DPkg::Lock::Timeout=600"];

/// Installs those of `packages` that are not installed.
pub(crate) fn apt_packages(packages: &[&str]) -> Result<()> {
    let installed = |p: &&str| {
        output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
            .is_ok_and(|s| s.contains("install ok installed"))
    };
    let missing: Vec<&str> = packages.iter().filter(|p| !installed(p)).copied().collect();
    apt_install(&missing)
}

/// Adds a `deb-src` entry for bookworm's `main`, on the mirror the machine's own `deb`
/// entries use, and updates the package lists.
pub(crate) fn deb_src_bookworm() -> Result<()> {
    const FILE: &str = "/etc/apt/sources.list.d/monitor-agent-src.sources";
    if !Path::new(FILE).exists() {
        let mirror = debian_mirror().context(
            "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d",
        )?;
        std::fs::write(
            FILE,
            format!(
                "Types: deb-src\nURIs: {mirror}\nSuites: bookworm\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        )
        .with_context(|| format!("writing {FILE}"))?;
    }
    util::run(Command::new("apt-get").args(APT_LOCK_WAIT).arg("update"))
}

/// The first mirror of a `deb` entry for bookworm, in either format of apt's sources.
pub(crate) fn debian_mirror() -> Option<String> {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        texts.extend(
            dir.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok()),
        );
    }
    for text in &texts {
        // One-line format: `deb [options] URI bookworm main ...`.
        for line in text.lines() {
            let words: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('['))
                .collect();
            if words.first() == Some(&"deb") && words.get(2) == Some(&"bookworm") {
                return words.get(1).map(|u| (*u).to_string());
            }
        }
        // deb822 format: stanzas of `Key: value` lines.
        for stanza in text.split("\n\n") {
            let field = |key: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(str::trim))
                    .unwrap_or_default()
            };
            let suites: Vec<&str> = field("Suites:").split_whitespace().collect();
            if field("Types:").split_whitespace().any(|t| t == "deb")
                && suites.contains(&"bookworm")
            {
                return field("URIs:").split_whitespace().next().map(str::to_string);
            }
        }
    }
    None
}

fn apt_install(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !have("apt-get") {
        bail!(
            "the tests need {}: install them (Debian: apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(APT_LOCK_WAIT)
            .args(["install", "-y", "--no-install-recommends"])
            .args(missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        util::run(Command::new("apt-get").args(APT_LOCK_WAIT).arg("update"))?;
        if !install() {
            bail!("apt-get could not install {}", missing.join(" "));
        }
    }
    Ok(())
}

/// oha, the benchmark's fixed-rate load generator: a Rust crate, built once into a cache
/// outside the checkout (keyed by version).
pub(crate) fn oha() -> Result<PathBuf> {
    const VERSION: &str = "1.16.0";
    let root = PathBuf::from(format!("/var/cache/monitor-agent/oha-{VERSION}"));
    let bin = root.join("bin/oha");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("xtask: building oha {VERSION} for the fixed-rate benchmark (a few minutes, once)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    util::run(
        Command::new(cargo)
            .args(["install", "--locked", "--version", VERSION])
            .arg("--root")
            .arg(&root)
            .arg("oha"),
    )
    .context("building oha")?;
    Ok(bin)
}
