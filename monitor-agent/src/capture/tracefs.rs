//! Layouts of tracepoint records, from their format files, for fields whose place
//! changed across kernel versions.

/// Where tracefs may be mounted.
const ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Offset of `child_pid` in a `sched_process_fork` record; 0 when no format file says
/// (the program then leaves that event alone, and a recycled process id may see a
/// descriptor answer cached for the process that had it before, until it connects).
pub(crate) fn fork_child_pid_at() -> u32 {
    for root in ROOTS {
        let path = format!("{root}/events/sched/sched_process_fork/format");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Some(at) = field_offset(&text, "child_pid") {
                return at;
            }
        }
    }
    log::warn!("no sched_process_fork format file says where child_pid is");
    0
}

/// The `offset:` of field `name` in a tracepoint format file.
fn field_offset(format: &str, name: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        if decl.rsplit([' ', '*']).next()? != name {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::field_offset;

    #[test]
    fn finds_a_field_in_either_layout() {
        let newer = "\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
                     \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
                     \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(newer, "child_pid"), Some(20));
        assert_eq!(field_offset(newer, "parent_pid"), Some(12));
        let older = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:1;\n\
                     \tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(older, "child_pid"), Some(44));
        assert_eq!(field_offset(older, "pid"), None);
        assert_eq!(field_offset("garbage\n;;;\nfield:", "child_pid"), None);
    }

    /// The running kernel's format file has the field (skipped where tracefs is absent).
    #[test]
    fn the_running_kernel_says_where_child_pid_is() {
        if super::ROOTS
            .iter()
            .all(|r| !std::path::Path::new(r).join("events").exists())
        {
            return;
        }
        assert_ne!(super::fork_child_pid_at(), 0);
    }
}
