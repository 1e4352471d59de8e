//! Reading executables and libraries that belong to workloads. They are untrusted files in
//! other containers: a path inside a container is resolved inside that container's root
//! (an absolute symlink there must not lead to the host's files), and a file is read piece by
//! piece, never mapped, because its owner can truncate it while the agent parses it, and a
//! mapped page past the new end is a SIGBUS that would kill the agent (a read past it is an
//! error). Sizes are bounded.

use std::{
    collections::HashMap,
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd},
};

use object::{read::ReadCache, Object, ObjectSegment, ObjectSymbol, ReadRef};

/// Largest file inspected: bigger ones are not probed.
pub(crate) const MAX_ELF_BYTES: u64 = 1 << 30;

/// The parsed file and what it is read from, handed to the inspecting function.
pub(crate) type Elf<'d> = object::File<'d, &'d ReadCache<File>>;

/// Runs `f` on the ELF file `file`, read through a cache of the ranges parsing asks for.
/// `None` when it is too large or not ELF.
pub(crate) fn with_elf<T>(
    file: File,
    f: impl for<'d> FnOnce(&Elf<'d>, &'d ReadCache<File>) -> T,
) -> Option<T> {
    if file.metadata().ok()?.len() > MAX_ELF_BYTES {
        return None;
    }
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    Some(f(&elf, &cache))
}

/// File offsets of the dynamic symbols named in `names` (uprobes attach at file offsets;
/// computing them here spares a second, mapped, read of the file).
pub(crate) fn dynamic_symbol_offsets<'d, R: ReadRef<'d>>(
    elf: &object::File<'d, R>,
    names: &[&str],
) -> HashMap<String, u64> {
    dynamic_symbols(elf, names)
        .into_iter()
        .filter_map(|(name, (addr, _))| Some((name, file_offset(elf, addr)?)))
        .collect()
}

/// (address, size) of the dynamic symbols named in `names` that this file defines; the
/// first of each name wins.
pub(crate) fn dynamic_symbols<'d, R: ReadRef<'d>>(
    elf: &object::File<'d, R>,
    names: &[&str],
) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for sym in elf.dynamic_symbols() {
        let Ok(name) = sym.name() else { continue };
        if sym.is_undefined() || !names.contains(&name) || out.contains_key(name) {
            continue;
        }
        out.insert(name.to_string(), (sym.address(), sym.size()));
    }
    out
}

/// Where the loaded address `addr` lives in the file, from the segment that maps it.
pub(crate) fn file_offset<'d, R: ReadRef<'d>>(elf: &object::File<'d, R>, addr: u64) -> Option<u64> {
    elf.segments().find_map(|seg| {
        let (start, len) = seg.file_range();
        let within = addr.checked_sub(seg.address())?;
        (within < len).then(|| start + within)
    })
}

/// Opens `path` as process `pid` sees it: resolved inside `/proc/PID/root`, with every
/// symlink (absolute ones too) and `..` kept inside that root, and no magic links.
pub(crate) fn open_in_root(pid: u32, path: &str) -> io::Result<File> {
    let root = File::open(format!("/proc/{pid}/root"))?;
    open_beneath(&root, path)
}

/// Opens `path` relative to the directory `root` as if `root` were `/` (openat2 with
/// `RESOLVE_IN_ROOT`, Linux 5.6+; there is no safe fallback, so older kernels get an error).
pub(crate) fn open_beneath(root: &File, path: &str) -> io::Result<File> {
    let c_path = CString::new(path.trim_start_matches('/'))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: open_how is plain data; all-zero is its "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the pointers live for the call; the size is the struct's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_path.as_ptr(),
            &raw const how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("file descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us, and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::{io::Write, os::unix::fs::symlink};

    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("monitor-elf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = temp_dir("root");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/inside"), b"inside").unwrap();
        std::fs::write(d.join("outside"), b"host file").unwrap();
        // An absolute link and a climbing one, both meant to reach the host's file.
        let host_file = d.join("outside");
        symlink(&host_file, root.join("usr/lib/libssl.so.3")).unwrap();
        symlink("../../../outside", root.join("usr/lib/climb")).unwrap();
        symlink("/usr/lib/inside", root.join("usr/lib/good")).unwrap();
        let r = File::open(&root).unwrap();
        let read = |p: &str| {
            open_beneath(&r, p).map(|mut f| {
                let mut s = String::new();
                io::Read::read_to_string(&mut f, &mut s).unwrap();
                s
            })
        };
        // Resolved inside the root: the absolute target does not exist there.
        assert!(read("/usr/lib/libssl.so.3").is_err());
        assert!(read("/usr/lib/climb").is_err());
        assert_eq!(read("/usr/lib/good").unwrap(), "inside");
        assert_eq!(read("usr/lib/inside").unwrap(), "inside");
        assert!(read("/proc/self/exe").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_truncated_or_bogus_file_is_an_error_not_a_signal() {
        let d = temp_dir("trunc");
        let lib = [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libssl.so.3",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
        let whole = std::fs::read(lib.unwrap_or("/proc/self/exe")).unwrap();
        for keep in [0, 16, 64, 4096, whole.len() / 2] {
            let p = d.join(format!("cut-{keep}"));
            File::create(&p).unwrap().write_all(&whole[..keep]).unwrap();
            // Whatever comes back, the agent is still here to look at it.
            let _ = with_elf(File::open(&p).unwrap(), |elf, _| {
                dynamic_symbol_offsets(elf, &["SSL_read", "SSL_write"])
            });
        }
        // The file shrinks while the parse is under way.
        let p = d.join("shrinking");
        File::create(&p).unwrap().write_all(&whole).unwrap();
        let got = with_elf(File::open(&p).unwrap(), |elf, _| {
            File::create(&p).unwrap();
            dynamic_symbol_offsets(elf, &["SSL_read", "SSL_write"])
        });
        assert!(got.is_none_or(|m| m.len() <= 2));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn offsets_of_the_system_libssl_are_inside_the_file() {
        // The tests' setup installs OpenSSL (curl and the TLS peers need it).
        let lib = [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libssl.so.3",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libssl.so.3 installed");
        let len = std::fs::metadata(lib).unwrap().len();
        let offs = with_elf(File::open(lib).unwrap(), |elf, _| {
            dynamic_symbol_offsets(elf, &["SSL_read", "SSL_write", "nonexistent"])
        })
        .unwrap();
        assert_eq!(offs.len(), 2, "{offs:?}");
        assert!(offs.values().all(|o| *o > 0 && *o < len));
    }
}
