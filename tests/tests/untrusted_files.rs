//! End-to-end: the files of other containers are untrusted. A process that mapped a TLS
//! library and then moved into its own root (as a container's processes live) has its
//! library paths resolved inside that root: an absolute symlink there must not lead the
//! agent to a host file, a relative one inside the root is followed. A library truncated
//! while mapped is an unreadable file, not a crash.

use std::{path::Path, process::Command};

use monitor_tests::{
    peers::{peer_script, Proc},
    Agent, TempDir,
};

const SYSTEM_LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";

/// Starts `hold_lib.py LIB [ROOT]` and waits for its `ready`.
fn hold(lib: &Path, root: Option<&Path>) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg(peer_script("hold_lib.py")).arg(lib);
    if let Some(r) = root {
        cmd.arg(r);
    }
    let mut p = Proc::spawn(cmd.stdout(std::process::Stdio::piped()), "hold_lib.py");
    let out = p.child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).expect("read");
    assert_eq!(line.trim(), "ready", "hold_lib.py did not start");
    p
}

fn copy_lib(to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(SYSTEM_LIBSSL, to).expect("copy libssl");
}

/// The agent's log line for probes attached to a library `pid` maps.
fn attached_for(agent: &Agent, pid: u32) -> bool {
    agent
        .stderr()
        .lines()
        .any(|l| l.contains("TLS probes attached to") && l.contains(&format!("(pid {pid},")))
}

#[test]
fn library_symlinks_are_resolved_inside_the_process_root() {
    let tmp = TempDir::new("untrusted-root");
    let base = tmp.0.canonicalize().expect("canonical");
    // What each process maps, on the host, before it moves into its root.
    let mapped = base.join("lib/libssl.so.3");
    copy_lib(&mapped);
    let inside = |root: &Path| root.join(mapped.strip_prefix("/").expect("absolute"));

    // Root A: the path is an absolute link to a host copy that exists only outside A.
    let decoy = base.join("decoy/libssl.so.3");
    copy_lib(&decoy);
    let root_a = base.join("root-a");
    std::fs::create_dir_all(inside(&root_a).parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(&decoy, inside(&root_a)).expect("symlink");

    // Root B: the path is a relative link to a copy inside B.
    let root_b = base.join("root-b");
    copy_lib(&root_b.join("opt/libssl.so.3"));
    std::fs::create_dir_all(inside(&root_b).parent().expect("parent")).expect("mkdir");
    let up = "../".repeat(mapped.components().count() - 2);
    std::os::unix::fs::symlink(format!("{up}opt/libssl.so.3"), inside(&root_b)).expect("symlink");

    let escaping = hold(&mapped, Some(&root_a));
    let contained = hold(&mapped, Some(&root_b));
    // Started after both moved into their roots: its first scan sees them there.
    let agent = Agent::start();
    assert!(
        attached_for(&agent, contained.pid()),
        "the copy inside root B was not probed:\n{}",
        agent.stderr()
    );
    assert!(
        !attached_for(&agent, escaping.pid()),
        "a link out of root A led the agent to a host file:\n{}",
        agent.stderr()
    );
}

#[test]
fn a_library_truncated_while_mapped_does_not_kill_the_agent() {
    let tmp = TempDir::new("untrusted-trunc");
    let base = tmp.0.canonicalize().expect("canonical");
    let lib = base.join("libssl.so.3");
    copy_lib(&lib);
    let holder = hold(&lib, None);
    // Cut to its first pages while mapped: headers that promise what the file no longer has.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&lib)
        .expect("open lib");
    f.set_len(8192).expect("truncate");
    drop(f);
    let agent = Agent::start();
    assert!(!attached_for(&agent, holder.pid()), "{}", agent.stderr());
    let (status, _) = monitor_tests::agent::http_get(agent.api, "/healthz").expect("healthz");
    assert_eq!(status, 200, "{}", agent.stderr());
}
