//! Container images for the test cluster, made without pulling anything: a Debian root
//! filesystem from `debootstrap` (cached outside the clone, keyed by what it holds), with the
//! release binary added where `deploy/container/Containerfile` puts it, written as an OCI
//! image (one layer, a config with that file's entrypoint, command and ports) and imported
//! into the cluster's containerd. The package list is the file the Containerfile installs
//! from, so the test image and the user image hold the same things.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use super::cluster::Cluster;
use crate::{setup, util};

/// The agent image the test deploys, named by the kustomization in place of the user one.
pub(crate) const AGENT_IMAGE: &str = "monitor-test/monitor-agent:test";

/// A tiny image for the workloads the agent watches: busybox (`sh`, `wget`) and
/// `tests/peers/podhttp`, an HTTP server built static from Go's standard library.
pub(crate) const BUSYBOX_IMAGE: &str = "monitor-test/busybox:test";

/// The user image's build file and the package list it shares with the test image.
const CONTAINERFILE: &str = "deploy/container/Containerfile";
const PACKAGES: &str = "deploy/container/packages";

/// The suite both images are made from (the user image's `debian:bookworm-slim`).
const SUITE: &str = "bookworm";

const CACHE: &str = "/var/cache/monitor-agent/rootfs";

/// What the Containerfile's final stage says about the image, beyond its packages.
struct Recipe {
    packages: Vec<String>,
    /// Where the binary goes, from the stage's `COPY --from=build`.
    binary_at: String,
    /// `ENTRYPOINT`, `CMD`, `EXPOSE`, `ENV`, `WORKDIR`, `USER` lines.
    changes: Vec<String>,
}

fn recipe(root: &Path) -> Result<Recipe> {
    let list = fs::read_to_string(root.join(PACKAGES)).context("reading the package list")?;
    let packages = list
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let file = fs::read_to_string(root.join(CONTAINERFILE)).context("reading the Containerfile")?;
    let final_stage = file
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .context("the Containerfile has no final stage")?;
    let mut binary_at = None;
    let mut changes = Vec::new();
    for line in final_stage.lines() {
        let word = line.split_whitespace().next().unwrap_or_default();
        match word {
            "ENTRYPOINT" | "CMD" | "EXPOSE" | "ENV" | "WORKDIR" | "USER" => {
                changes.push(line.trim().to_string());
            }
            "COPY" if line.contains("--from=build") => {
                binary_at = line.split_whitespace().last().map(str::to_string);
            }
            _ => {}
        }
    }
    let binary_at = binary_at.context("the Containerfile's final stage copies no binary")?;
    Ok(Recipe {
        packages,
        binary_at,
        changes,
    })
}

/// A tarball of the base root filesystem, made once per package list.
fn base_rootfs(recipe: &Recipe) -> Result<PathBuf> {
    let key = fnv1a(format!("{SUITE} {}", recipe.packages.join(" ")).as_bytes());
    let tar = Path::new(CACHE).join(format!("{SUITE}-{key:016x}.tar"));
    if tar.exists() {
        return Ok(tar);
    }
    let mirror = setup::debian_mirror().context("no Debian mirror is configured for apt")?;
    fs::create_dir_all(CACHE)?;
    let root = Path::new(CACHE).join(format!("build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    eprintln!(
        "xtask: debootstrap {SUITE} with {}",
        recipe.packages.join(" ")
    );
    let made = util::run(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--components=main"])
            .arg(format!("--include={}", recipe.packages.join(",")))
            .arg(SUITE)
            .arg(&root)
            .arg(&mirror)
            .stdout(Stdio::null()),
    )
    .context("debootstrap of the agent's root filesystem failed");
    let packed = made.and_then(|()| {
        for dir in [
            "var/lib/apt/lists",
            "var/cache/apt/archives",
            "usr/share/doc",
        ] {
            let _ = fs::remove_dir_all(root.join(dir));
        }
        let part = tar.with_extension("part");
        util::run(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&part)
                .arg("."),
        )?;
        fs::rename(&part, &tar)?;
        Ok(())
    });
    let _ = fs::remove_dir_all(&root);
    packed.map(|()| tar)
}

/// A hash that stays the same across toolchains, for a cache key.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Cluster {
    /// Imports the agent image: the base root filesystem, the (stripped) binary at its
    /// place, the Containerfile's entrypoint and command.
    pub(crate) fn import_agent_image(&self, binary: &Path) -> Result<()> {
        let root = util::workspace_root();
        let recipe = recipe(&root)?;
        let base = base_rootfs(&recipe)?;
        let tar = self.dir.join("agent-image.tar");
        fs::copy(&base, &tar).context("copying the base root filesystem")?;
        let staged = self.dir.join("agent-image");
        let at = staged.join(recipe.binary_at.trim_start_matches('/'));
        fs::create_dir_all(at.parent().context("binary path")?)?;
        fs::copy(binary, &at).with_context(|| format!("copying {}", binary.display()))?;
        util::run(Command::new("strip").arg(&at))?;
        util::run(
            Command::new("tar")
                .arg("-C")
                .arg(&staged)
                .arg("-rf")
                .arg(&tar)
                .arg(recipe.binary_at.trim_start_matches('/')),
        )?;
        self.import(&tar, AGENT_IMAGE, &recipe.changes)
    }

    /// Imports busybox (from Debian's `busybox-static`) and `podhttp` as an image.
    pub(crate) fn import_busybox_image(&self) -> Result<()> {
        let staged = self.dir.join("busybox-image");
        fs::create_dir_all(staged.join("bin"))?;
        fs::copy("/bin/busybox", staged.join("bin/busybox")).context("copying busybox")?;
        std::os::unix::fs::symlink("busybox", staged.join("bin/sh"))?;
        let source = util::workspace_root().join("tests/peers/podhttp");
        util::run(
            Command::new("go")
                .args(["build", "-o"])
                .arg(staged.join("bin/podhttp"))
                .arg(".")
                .current_dir(&source)
                .env("CGO_ENABLED", "0")
                .env("GOFLAGS", "-mod=mod")
                .env("GOPROXY", "off"),
        )
        .context("building tests/peers/podhttp")?;
        self.import_rootfs(
            &staged,
            BUSYBOX_IMAGE,
            &[r#"ENTRYPOINT ["/bin/busybox"]"#.into()],
        )
    }

    /// Imports the directory `root` as a one-layer image.
    pub(super) fn import_rootfs(&self, root: &Path, name: &str, changes: &[String]) -> Result<()> {
        let tar = self
            .dir
            .join(format!("{}.tar", name.replace(['/', ':'], "_")));
        util::run(
            Command::new("tar")
                .arg("-C")
                .arg(root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        self.import(&tar, name, changes)
    }

    /// Writes `layer` as an OCI image layout and imports it into containerd as `name`.
    fn import(&self, layer: &Path, name: &str, changes: &[String]) -> Result<()> {
        let layout = self
            .dir
            .join(format!("oci-{}", name.replace(['/', ':'], "_")));
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs)?;
        // Written once under a temporary name, hashed there, renamed to its digest.
        let blob = |bytes: &[u8]| -> Result<serde_json::Value> {
            let part = blobs.join("part");
            fs::write(&part, bytes)?;
            let digest = sha256_file(&part)?;
            fs::rename(&part, blobs.join(&digest))?;
            Ok(serde_json::json!({"digest": format!("sha256:{digest}"), "size": bytes.len()}))
        };
        let layer_digest = sha256_file(layer)?;
        let layer_size = fs::metadata(layer)?.len();
        fs::rename(layer, blobs.join(&layer_digest))?;
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": image_config(changes)?,
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        });
        let mut config_ref = blob(config.to_string().as_bytes())?;
        config_ref["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_ref,
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{layer_digest}"),
                "size": layer_size,
            }],
        });
        let mut manifest_ref = blob(manifest.to_string().as_bytes())?;
        manifest_ref["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        manifest_ref["annotations"] =
            serde_json::json!({"io.containerd.image.name": format!("docker.io/{name}")});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest_ref]});
        fs::write(layout.join("index.json"), index.to_string())?;
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let tar = layout.with_extension("tar");
        util::run(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        let _ = fs::remove_dir_all(&layout);
        let out = self.ctr().args(["images", "import"]).arg(&tar).output()?;
        let _ = fs::remove_file(&tar);
        if !out.status.success() {
            bail!(
                "importing the image {name} into containerd failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The image config's `config` object from Containerfile instructions (exec-form JSON
/// arrays for `ENTRYPOINT` and `CMD`).
fn image_config(changes: &[String]) -> Result<serde_json::Value> {
    let mut config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    });
    for change in changes {
        let (word, rest) = change.split_once(' ').unwrap_or((change, ""));
        let rest = rest.trim();
        match word {
            "ENTRYPOINT" | "CMD" => {
                let argv: serde_json::Value = serde_json::from_str(rest)
                    .with_context(|| format!("{word} must be a JSON array: {rest}"))?;
                let key = if word == "CMD" { "Cmd" } else { "Entrypoint" };
                config[key] = argv;
            }
            "EXPOSE" => {
                for port in rest.split_whitespace() {
                    let port = if port.contains('/') {
                        port.to_string()
                    } else {
                        format!("{port}/tcp")
                    };
                    config["ExposedPorts"][port] = serde_json::json!({});
                }
            }
            "ENV" => {
                if let Some(env) = config["Env"].as_array_mut() {
                    env.push(
                        rest.replacen(' ', "=", usize::from(!rest.contains('=')))
                            .into(),
                    );
                }
            }
            "WORKDIR" => config["WorkingDir"] = rest.into(),
            "USER" => config["User"] = rest.into(),
            _ => bail!("an image instruction this importer does not know: {change}"),
        }
    }
    Ok(config)
}

fn sha256_file(path: &Path) -> Result<String> {
    let out = util::output(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .context("sha256sum printed nothing")
}
