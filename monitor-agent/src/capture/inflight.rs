//! Reads that were already blocked when the agent attached.
//!
//! A thread waiting in `recv` on an idle keep-alive connection entered the syscall before
//! the entry tracepoint existed, so its exit would find no stashed arguments and the next
//! request on that connection would be lost. `/proc/PID/task/TID/syscall` shows the number
//! and arguments of the syscall a blocked thread is in; the agent stashes them on the
//! thread's behalf. The exit handler checks the syscall number, so a thread that moved on in
//! the meantime is not confused with it.

use aya::maps::{HashMap, MapData};
use monitor_common::{Direction, SyscallArgs, SHAPE_FLAT, SHAPE_IOVEC, SHAPE_MSGHDR};

const MSG_PEEK: u64 = 2;

/// Parses one `/proc/.../syscall` line into stashable arguments when it is a read-family
/// syscall (numbers from libc for the architecture the agent was built for).
pub(crate) fn parse_syscall_line(line: &str) -> Option<SyscallArgs> {
    let mut parts = line.split_whitespace();
    let nr: i64 = parts.next()?.parse().ok()?;
    let mut arg =
        || -> Option<u64> { u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok() };
    let (fd, a1, a2, a3) = (arg()?, arg()?, arg()?, arg()?);
    let shape = match nr {
        libc::SYS_read => SHAPE_FLAT,
        libc::SYS_recvfrom if a3 & MSG_PEEK == 0 => SHAPE_FLAT,
        libc::SYS_readv => SHAPE_IOVEC,
        libc::SYS_recvmsg if a2 & MSG_PEEK == 0 => SHAPE_MSGHDR,
        _ => return None,
    };
    Some(SyscallArgs {
        sock: 0,
        buf: a1,
        count: if shape == SHAPE_MSGHDR { 0 } else { a2 },
        fd: i32::try_from(fd).ok()?,
        syscall_nr: nr as u32,
        shape,
        direction: Direction::Ingress as u8,
        _pad: [0; 6],
    })
}

/// How many blocked reads were picked up at start, and how many the table had no room for.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stashed {
    pub stashed: u64,
    pub refused: u64,
}

/// Stashes the arguments of every thread blocked in a read on a socket.
pub(crate) fn stash_blocked_reads(args: &mut HashMap<&mut MapData, u64, SyscallArgs>) -> Stashed {
    let me = std::process::id();
    let mut counts = Stashed::default();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return counts;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // Unreadable (process gone, or no permission): nothing to do for it.
            let Ok(line) = std::fs::read_to_string(t.path().join("syscall")) else {
                continue;
            };
            let is_socket = |fd: i32| {
                std::fs::read_link(t.path().join("fd").join(fd.to_string()))
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            };
            if let Some(a) = parse_syscall_line(&line).filter(|a| is_socket(a.fd)) {
                let key = (u64::from(pid) << 32) | u64::from(tid);
                if args.insert(key, a, 0).is_ok() {
                    counts.stashed += 1;
                } else {
                    counts.refused += 1;
                }
            }
        }
    }
    counts
}

/// Clears the kernel's sign that blocked reads are left once the table is empty, so that
/// syscall exits stop looking in it. Only the kernel removes entries (as those reads end)
/// and nothing adds any after start, so an empty table stays empty.
pub(crate) fn note_when_drained(
    args: &HashMap<MapData, u64, SyscallArgs>,
    left: &mut aya::maps::Array<MapData, u32>,
) {
    if args.keys().next().is_none() && left.get(&0, 0).is_ok_and(|v| v != 0) {
        if let Err(e) = left.set(0, 0, 0) {
            log::warn!("could not clear BLOCKED_READS_LEFT: {e}");
        }
    }
}

/// Removes the entries of threads that no longer exist from a table keyed by thread
/// (stashed syscall arguments, pending TLS writes); returns how many. The tables are not LRU
/// (an eviction would lose a live call's bytes unseen), so an entry left by a thread that
/// died in the middle would otherwise hold its slot for good.
pub(crate) fn sweep_dead_threads<T: std::borrow::BorrowMut<MapData>, V: aya::Pod>(
    args: &mut HashMap<T, u64, V>,
) -> usize {
    let dead: Vec<u64> = args
        .keys()
        .filter_map(Result::ok)
        .filter(|&key| !thread_exists(key))
        .collect();
    dead.iter().filter(|key| args.remove(key).is_ok()).count()
}

/// Whether the thread of a `pid_tgid` key is alive (`/proc` shows every thread of the host
/// to an agent in the host's PID namespace, which the kernel's ids refer to).
fn thread_exists(pid_tgid: u64) -> bool {
    let (process, thread) = (pid_tgid >> 32, pid_tgid & 0xffff_ffff);
    std::path::Path::new(&format!("/proc/{process}/task/{thread}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocked_reads_only() {
        let recv = format!(
            "{} 0x5 0x7f00deadbeef 0x2000 0x0 0x0 0x0 0x7ffd 0x7f01",
            libc::SYS_recvfrom
        );
        let a = parse_syscall_line(&recv).expect("recvfrom");
        assert_eq!(
            (a.fd, a.buf, a.count, a.shape),
            (5, 0x7f00_dead_beef, 0x2000, SHAPE_FLAT)
        );
        assert_eq!(i64::from(a.syscall_nr), libc::SYS_recvfrom);
        let peek = format!("{} 0x5 0x7f00 0x10 0x2 0x0 0x0 0x1 0x2", libc::SYS_recvfrom);
        assert!(parse_syscall_line(&peek).is_none());
        let poll = format!("{} 0x5 0x1 0x2 0x0 0x0 0x0 0x1 0x2", libc::SYS_epoll_wait);
        assert!(parse_syscall_line(&poll).is_none());
        assert!(parse_syscall_line("running").is_none());
        assert!(parse_syscall_line("-1 0x7ffd 0x7f01").is_none());
        assert!(parse_syscall_line("").is_none());
    }
}
