//! What /proc says about a process that service rules can match on.

use std::path::Path;

/// Facts about one process; `None` where /proc could not tell (the process exited, or
/// /proc is not the host's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub exe: Option<String>,
    /// The cgroup v2 path, or for v1 the first controller's path.
    pub cgroup: Option<String>,
    /// Short (12-hex-digit) id of the container the process runs in.
    pub container: Option<String>,
}

impl ProcessFacts {
    pub fn read(proc_root: &Path, pid: u32) -> ProcessFacts {
        let dir = proc_root.join(pid.to_string());
        let exe = std::fs::read_link(dir.join("exe")).ok().map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        });
        let cgroup = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|s| cgroup_path(&s));
        let container = cgroup.as_deref().and_then(container_id);
        ProcessFacts {
            exe,
            cgroup,
            container,
        }
    }
}

/// Picks the unified (v2) entry `0::/path`, else the first v1 entry.
pub(crate) fn cgroup_path(content: &str) -> Option<String> {
    let mut first = None;
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" {
            return Some(path.to_string());
        }
        first.get_or_insert_with(|| path.to_string());
    }
    first
}

/// Container runtimes put the 64-hex-digit container id in the cgroup path's last
/// component, with runtime-specific decoration: `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`, or a bare `<id>`
/// under `/docker/` or `/kubepods/.../`.
pub fn container_id(cgroup: &str) -> Option<String> {
    for component in cgroup.rsplit('/') {
        let stem = component.strip_suffix(".scope").unwrap_or(component);
        let candidate = stem.rsplit(['-', ':']).next().unwrap_or(stem);
        if candidate.len() == 64 && candidate.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(candidate[..12].to_ascii_lowercase());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1b2c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

    #[test]
    fn container_ids_from_common_runtimes() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods/besteffort/pod5f2c/{ID}"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods.slice/crio-{ID}.scope"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some("3f4e1b2c9d8a"), "{path}");
        }
    }

    #[test]
    fn no_container_on_plain_hosts() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/nginx.service",
            "/kubepods/pod5f2c",
        ] {
            assert_eq!(container_id(path), None, "{path}");
        }
    }

    #[test]
    fn cgroup_v2_preferred() {
        assert_eq!(
            cgroup_path("12:cpu:/a\n0::/system.slice/x.service\n").as_deref(),
            Some("/system.slice/x.service")
        );
        assert_eq!(cgroup_path("12:cpu:/a\n3:mem:/b\n").as_deref(), Some("/a"));
        assert_eq!(cgroup_path("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = ProcessFacts::read(Path::new("/proc"), std::process::id());
        assert!(me.exe.is_some());
        assert!(me.cgroup.is_some());
        let gone = ProcessFacts::read(Path::new("/proc"), u32::MAX - 1);
        assert_eq!(gone, ProcessFacts::default());
    }
}
