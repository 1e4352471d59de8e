//! The test cluster's pod network: one Linux bridge on a private range, which the CNI
//! `bridge` plugin plugs every pod into and which carries the node's own address (the API
//! server and the kubelet listen there). Nothing on it is routed off the machine: pods get
//! routes to the pod range and the Service range only, no default route and no
//! masquerading, and the host forwards nothing that leaves the bridge for another link.

use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use super::cluster::SERVICE_RANGE;
use crate::util;

/// The bridge, named so that it is recognisably the tests' own.
pub(crate) const BRIDGE: &str = "monkube0";

/// The node's pod range; the bridge holds its first address.
pub(crate) const POD_RANGE: &str = "10.244.0.0/24";

/// The node's address on the bridge: the API server's, the kubelet's and the pods' gateway.
pub(crate) const NODE_IP: &str = "10.244.0.1";

/// Where Debian's `containernetworking-plugins` puts the plugins.
pub(crate) const CNI_BIN: &str = "/usr/lib/cni";

/// Kernel settings the pod network needs, restored to what they were when it goes: routing
/// between pods through the node (Service DNAT), and bridged replies through iptables so
/// that the DNAT is undone for a backend on the same bridge.
const SYSCTLS: &[&str] = &[
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
];

/// Forwarding rules: between pods on the bridge, yes; from the bridge anywhere else, never.
const FORWARD_RULES: &[&[&str]] = &[
    &["-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],
    &["-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
    &["!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"],
];

/// The bridge and the settings made for it; all undone on drop.
pub(crate) struct PodNetwork {
    saved: Vec<(&'static str, String)>,
    rules: usize,
    tracefs_mounted: bool,
}

impl PodNetwork {
    /// Makes the bridge with the node's address, the route to Services through it, and the
    /// forwarding rules, refusing a range the machine already routes.
    pub(crate) fn create() -> Result<PodNetwork> {
        let routes = util::output(Command::new("ip").args(["-4", "route", "show"]))?;
        if let Some(taken) = routes.lines().find(|l| l.starts_with("10.244.")) {
            bail!("the test cluster's pod range {POD_RANGE} is already routed here ({taken}); remove that route or the interface behind it first");
        }
        if kube_rules_present() {
            bail!("this machine already has Kubernetes iptables chains (KUBE-*): another cluster's networking runs here, or an earlier test run left them; the test cluster would fight it");
        }
        let mut net = PodNetwork {
            saved: Vec::new(),
            rules: 0,
            tracefs_mounted: false,
        };
        let ip = |args: &[&str]| util::output(Command::new("ip").args(args)).map(drop);
        ip(&["link", "add", BRIDGE, "type", "bridge"]).context("creating the pod bridge")?;
        ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        ip(&["route", "add", SERVICE_RANGE, "dev", BRIDGE, "src", NODE_IP])?;
        for path in SYSCTLS {
            let old = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            net.saved.push((path, old.trim().to_string()));
            fs::write(path, "1").with_context(|| format!("setting {path}"))?;
        }
        for rule in FORWARD_RULES {
            iptables("-A", rule)?;
            net.rules += 1;
        }
        net.tracefs_mounted = mount_tracefs()?;
        Ok(net)
    }
}

impl Drop for PodNetwork {
    /// Also removes every `KUBE-*` chain and the rules that jump to them: kube-proxy's
    /// `--cleanup` leaves its canaries, and none were here before (`create` checks).
    fn drop(&mut self) {
        remove_kube_rules();
        for rule in FORWARD_RULES.iter().take(self.rules) {
            let _ = iptables("-D", rule);
        }
        for (path, old) in &self.saved {
            let _ = fs::write(path, old);
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
        if self.tracefs_mounted {
            let _ = Command::new("umount").arg(TRACEFS).status();
        }
    }
}

fn iptables(op: &str, rule: &[&str]) -> Result<()> {
    util::output(
        Command::new("iptables")
            .args(["-w", op, "FORWARD"])
            .args(rule),
    )
    .map(drop)
    .context("changing the FORWARD rules for the pod bridge")
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// A node has tracefs mounted (systemd does it); the agent's pod gets it as a host path and
/// cannot mount it itself without CAP_SYS_ADMIN. True when it was mounted here.
fn mount_tracefs() -> Result<bool> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(TRACEFS))
    {
        return Ok(false);
    }
    util::output(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))
        .context("mounting tracefs for the agent's pod")?;
    Ok(true)
}

/// The kubelet's CNI configuration: the bridge above, host-local addresses from the pod
/// range, routes to pods and Services only.
pub(crate) fn write_cni_config(conf_dir: &Path, ipam_dir: &Path) -> Result<()> {
    fs::create_dir_all(conf_dir)?;
    let conf = format!(
        r#"{{
  "cniVersion": "0.4.0",
  "name": "monitor-test",
  "plugins": [{{
    "type": "bridge",
    "bridge": "{BRIDGE}",
    "isGateway": true,
    "isDefaultGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {{
      "type": "host-local",
      "ranges": [[{{"subnet": "{POD_RANGE}", "gateway": "{NODE_IP}"}}]],
      "routes": [{{"dst": "{SERVICE_RANGE}"}}],
      "dataDir": "{}"
    }}
  }}]
}}
"#,
        ipam_dir.display()
    );
    fs::write(conf_dir.join("10-monitor-test.conflist"), conf)
        .context("writing the CNI configuration")
}

/// Named network namespaces (`ip netns`), where containerd's CNI puts the pods'.
pub(crate) fn netns_names() -> Vec<String> {
    fs::read_dir("/var/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the pods' network namespaces that their sandboxes, killed, left behind.
pub(crate) fn remove_netns_except(keep: &[String]) {
    for name in netns_names() {
        if name.starts_with("cni-") && !keep.contains(&name) {
            let _ = Command::new("ip").args(["netns", "delete", &name]).status();
        }
    }
}

const IPTABLES: &[&str] = &["iptables", "ip6tables"];

fn kube_rules_present() -> bool {
    IPTABLES.iter().any(|t| {
        util::output(&mut Command::new(format!("{t}-save"))).is_ok_and(|r| r.contains("KUBE-"))
    })
}

/// Restores each table without the lines that name a `KUBE-` chain.
fn remove_kube_rules() {
    for t in IPTABLES {
        let Ok(rules) = util::output(&mut Command::new(format!("{t}-save"))) else {
            continue;
        };
        let mut kept = String::new();
        for line in rules.lines().filter(|l| !l.contains("KUBE-")) {
            kept.push_str(line);
            kept.push('\n');
        }
        let restore = Command::new(format!("{t}-restore"))
            .stdin(std::process::Stdio::piped())
            .spawn();
        if let Ok(mut child) = restore {
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(kept.as_bytes());
            }
            let _ = child.wait();
        }
    }
}
