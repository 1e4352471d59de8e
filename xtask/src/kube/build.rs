//! Kubernetes binaries for the real-cluster tests, built once per machine from Debian's
//! source package and cached outside the clone, keyed by the package version.
//!
//! No prebuilt Kubernetes can be downloaded on these machines, and Go modules cannot be
//! fetched: the source package carries the whole upstream tree with `vendor/`, which builds
//! in GOPATH mode with Debian's Go. `../shared/KUBERNETES.md` records how this was found.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{setup, util};

/// The source package built: Kubernetes v1.20.2 as Debian bookworm ships it.
pub(crate) const SOURCE_VERSION: &str = "1.20.5+really1.20.2-1.1+deb12u1";

/// Where the source, the Go cache and the built binaries are kept, one directory per
/// source version.
const CACHE: &str = "/var/cache/monitor-agent/kubernetes";

/// Bumped whenever the way the binaries are built changes, so that a cache made the old
/// way is not taken for the new one.
const RECIPE: u32 = 2;

/// The version the binaries report (to each other, and to the agent through the API),
/// stamped in as upstream's release build does.
const VERSION_FLAGS: &[(&str, &str)] = &[
    ("gitVersion", "v1.20.2"),
    ("gitMajor", "1"),
    ("gitMinor", "20"),
    ("gitTreeState", "clean"),
];

/// The packages holding those variables, as GOPATH mode sees the vendored ones.
const VERSION_PACKAGES: &[&str] = &[
    "k8s.io/kubernetes/vendor/k8s.io/component-base/version",
    "k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version",
];

/// Components built from the tree; `pause` (the pod sandbox) is compiled from C beside them.
pub(crate) const COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    // Built rather than installed: Debian's kubernetes-client conflicts with the `kubectl`
    // package some images carry, and this one matches the server's version.
    "kubectl",
];

/// What building needs, and what running a node needs beside the built components.
const PACKAGES: &[&str] = &[
    "golang-go",
    "rsync",
    "dpkg-dev",
    "gcc",
    "libc6-dev",
    "golang-github-modern-go-reflect2-dev",
    "etcd-server",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "debootstrap",
    "iptables",
    "busybox-static",
    "binutils",
];

/// The vendored reflect2 1.0.1 crashes kube-apiserver under Go 1.19 (`fatal error: fault`
/// in `mapiterinit`); Debian's 1.0.2 replaces it.
const REFLECT2_VENDOR: &str = "vendor/github.com/modern-go/reflect2";
const REFLECT2_DEBIAN: &str = "/usr/share/gocode/src/github.com/modern-go/reflect2";

/// The directory holding every component and `pause`, building them first if need be.
pub(crate) fn binaries() -> Result<PathBuf> {
    let dir = Path::new(CACHE).join(SOURCE_VERSION);
    let bin = dir.join(format!("bin-{RECIPE}"));
    setup::apt_packages(PACKAGES).context("installing what the Kubernetes tests need")?;
    if complete(&bin) {
        return Ok(bin);
    }
    eprintln!(
        "xtask: building Kubernetes {SOURCE_VERSION} into {} (once per machine, about 10 minutes)",
        bin.display()
    );
    let tree = fetch_source(&dir)?;
    let partial = dir.join(format!("bin-{RECIPE}.partial"));
    build(&dir, &tree, &partial)?;
    if bin.exists() {
        fs::remove_dir_all(&bin).with_context(|| format!("removing {}", bin.display()))?;
    }
    fs::rename(&partial, &bin).with_context(|| format!("renaming {}", partial.display()))?;
    Ok(bin)
}

fn complete(bin: &Path) -> bool {
    COMPONENTS
        .iter()
        .chain(&["pause"])
        .all(|c| bin.join(c).is_file())
}

/// Unpacks the source package into `dir/src` (adding a `deb-src` line for the mirror the
/// machine already uses) and returns the tree.
fn fetch_source(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("src");
    if let Some(tree) = unpacked_tree(&src)? {
        return Ok(tree);
    }
    fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    setup::deb_src_bookworm()?;
    util::run(
        Command::new("apt-get")
            .args(setup::APT_LOCK_WAIT)
            .args(["source", "--only-source"])
            .arg(format!("kubernetes={SOURCE_VERSION}"))
            .current_dir(&src),
    )
    .context("Debian's Kubernetes source package could not be had (apt-get source)")?;
    unpacked_tree(&src)?.context("apt-get source unpacked no kubernetes-* tree")
}

fn unpacked_tree(src: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(src) else {
        return Ok(None);
    };
    for entry in entries {
        let path = entry?.path();
        let is_tree = path.is_dir()
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kubernetes-"))
            && path.join("cmd/kube-apiserver").is_dir();
        if is_tree {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Builds every component of `tree` into `out` in GOPATH mode (module mode refuses the
/// vendored tree), with a Go cache under `dir`.
fn build(dir: &Path, tree: &Path, out: &Path) -> Result<()> {
    let gopath = dir.join("gopath");
    let package = gopath.join("src/k8s.io/kubernetes");
    if !package.exists() {
        fs::create_dir_all(gopath.join("src/k8s.io"))?;
        std::os::unix::fs::symlink(tree, &package)
            .with_context(|| format!("linking {}", package.display()))?;
    }
    replace_reflect2(tree)?;
    fs::create_dir_all(out)?;
    let go = |cmd: &mut Command| -> Result<()> {
        util::run(
            // Go takes the import path from $PWD when it names the working directory:
            // through the link, the tree is k8s.io/kubernetes and its vendor/ is used.
            cmd.current_dir(&package)
                .env("PWD", &package)
                .env("GOPATH", &gopath)
                .env("GO111MODULE", "off")
                .env("GOCACHE", dir.join("gocache"))
                .env_remove("GOFLAGS"),
        )
    };
    if !tree
        .join("pkg/generated/openapi/zz_generated.openapi.go")
        .exists()
    {
        go(Command::new("make").arg("gen_openapi")).context("generating the OpenAPI code")?;
    }
    let ldflags: Vec<String> = VERSION_PACKAGES
        .iter()
        .flat_map(|p| {
            VERSION_FLAGS
                .iter()
                .map(move |(k, v)| format!("-X {p}.{k}={v}"))
        })
        .collect();
    for component in COMPONENTS {
        eprintln!("xtask: go build {component}");
        go(Command::new("go")
            .args(["build", "-ldflags", &ldflags.join(" "), "-o"])
            .arg(out.join(component))
            .arg(format!("./cmd/{component}")))
        .with_context(|| format!("building {component}"))?;
    }
    util::run(
        Command::new("gcc")
            .args(["-Os", "-static", "-DVERSION=v3.4.1", "-o"])
            .arg(out.join("pause"))
            .arg(tree.join("build/pause/linux/pause.c")),
    )
    .context("compiling the pause container")
}

fn replace_reflect2(tree: &Path) -> Result<()> {
    let vendored = tree.join(REFLECT2_VENDOR);
    let marker = vendored.join(".from-debian");
    if marker.exists() {
        return Ok(());
    }
    let debian = Path::new(REFLECT2_DEBIAN);
    if !debian.is_dir() {
        bail!("{REFLECT2_DEBIAN} is missing (golang-github-modern-go-reflect2-dev)");
    }
    if vendored.exists() {
        fs::remove_dir_all(&vendored)?;
    }
    fs::create_dir_all(&vendored)?;
    for entry in fs::read_dir(debian)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let source = (name.ends_with(".go") && !name.ends_with("_test.go")) || name.ends_with(".s");
        if source && path.is_file() {
            fs::copy(&path, vendored.join(&*name))?;
        }
    }
    fs::write(
        &marker,
        "reflect2 from golang-github-modern-go-reflect2-dev\n",
    )?;
    Ok(())
}
