//! The deployment files, checked without a cluster: every Kubernetes document parses and
//! has what the agent needs, the container command is a real invocation of the binary,
//! and the config and specs the manifests ship are ones the agent accepts.

use std::{collections::BTreeSet, path::PathBuf};

use clap::Parser;
use monitor_agent::{
    cli::{Cli, Command},
    config::{ConfigFile, Settings},
    spec::ServiceSpec,
};
use monitor_tests::workspace_root;
use serde::Deserialize;
use serde_yaml_ng::Value;

fn deploy(path: &str) -> PathBuf {
    workspace_root().join("deploy").join(path)
}

/// Every YAML document under deploy/kubernetes, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", f.display()));
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string in {v:?}"))
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(*p)
            .unwrap_or_else(|| panic!("missing {p} (of {path:?})"));
    }
    cur
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a Vec<Value> {
    get(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path:?} is not a list"))
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    &docs
        .iter()
        .find(|(_, d)| s(d, &["kind"]) == kind && s(d, &["metadata", "name"]) == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .1
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn kubernetes_manifests_are_complete_and_consistent() {
    let docs = documents();
    for (file, d) in &docs {
        for field in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            assert!(!s(d, field).is_empty(), "{file}: empty {field:?}");
        }
        if !["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&s(d, &["kind"])) {
            assert_eq!(s(d, &["metadata", "namespace"]), "monitor", "{file}");
        }
    }
    let ds = find(&docs, "DaemonSet", "monitor-agent");
    let pod = get(ds, &["spec", "template", "spec"]);
    assert_eq!(
        get(pod, &["hostPID"]).as_bool(),
        Some(true),
        "the agent must see every process"
    );
    let pod_labels = get(ds, &["spec", "template", "metadata", "labels"]);
    assert_eq!(get(ds, &["spec", "selector", "matchLabels"]), pod_labels);
    let c = &list(pod, &["containers"])[0];

    // Tainted nodes (control-plane ones) only when asked for.
    assert!(
        pod.get("tolerations").is_none(),
        "the DaemonSet must not tolerate every taint"
    );

    // Capabilities instead of privileged, the runtime's seccomp filter, and AppArmor by the
    // annotation that API servers before 1.30 accept.
    let sc = get(c, &["securityContext"]);
    assert_eq!(get(sc, &["privileged"]).as_bool(), Some(false));
    assert_eq!(s(sc, &["seccompProfile", "type"]), "RuntimeDefault");
    assert!(sc.get("appArmorProfile").is_none());
    assert_eq!(
        s(
            ds,
            &[
                "spec",
                "template",
                "metadata",
                "annotations",
                "container.apparmor.security.beta.kubernetes.io/agent"
            ]
        ),
        "unconfined"
    );
    let caps: BTreeSet<&str> = list(sc, &["capabilities", "add"])
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        caps,
        BTreeSet::from([
            "BPF",
            "PERFMON",
            "SYS_RESOURCE",
            "SYS_PTRACE",
            "DAC_READ_SEARCH"
        ])
    );
    assert_eq!(list(sc, &["capabilities", "drop"])[0].as_str(), Some("ALL"));

    // Mounts the agent needs, each backed by a declared volume.
    let volumes: BTreeSet<&str> = list(pod, &["volumes"])
        .iter()
        .map(|v| s(v, &["name"]))
        .collect();
    let mounts = list(c, &["volumeMounts"]);
    for m in mounts {
        assert!(
            volumes.contains(s(m, &["name"])),
            "mount {m:?} has no volume"
        );
    }
    let mount_paths: BTreeSet<&str> = mounts.iter().map(|m| s(m, &["mountPath"])).collect();
    for needed in [
        "/sys/kernel/tracing",
        "/sys/kernel/btf",
        "/sys/fs/bpf",
        "/var/lib/monitor-agent",
    ] {
        assert!(mount_paths.contains(needed), "no mount at {needed}");
    }

    // Resources, probes, ports.
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!s(c, &["resources", kind, r]).is_empty(), "{kind}.{r}");
        }
    }
    let ports: Vec<&Value> = list(c, &["ports"]).iter().collect();
    let port_names: BTreeSet<&str> = ports.iter().map(|p| s(p, &["name"])).collect();
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(s(c, &[probe, "httpGet", "path"]), "/healthz");
        assert!(
            port_names.contains(s(c, &[probe, "httpGet", "port"])),
            "{probe} port"
        );
    }
    let token = list(c, &["env"])
        .iter()
        .find(|e| s(e, &["name"]) == "MONITOR_API_TOKEN")
        .expect("the API token env var");
    assert!(
        get(token, &["valueFrom", "secretKeyRef"]).is_mapping(),
        "token from a Secret"
    );

    // The command is a real invocation of the binary, and its config file is the one mounted.
    let mut argv: Vec<String> = list(c, &["command"])
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    argv.extend(
        list(c, &["args"])
            .iter()
            .map(|v| v.as_str().unwrap().to_string()),
    );
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{argv:?} is not a valid invocation: {e}"));
    let Command::Run(run) = cli.command else {
        panic!("the container does not run the agent: {argv:?}")
    };
    let config_path = run.config.clone().expect("the DaemonSet passes --config");
    let config_mount = mounts
        .iter()
        .find(|m| s(m, &["mountPath"]) == config_path.to_str().unwrap())
        .expect("--config points at a mounted file");
    let config_map = find(&docs, "ConfigMap", "monitor-agent");
    let text = s(config_map, &["data", s(config_mount, &["subPath"])]);
    let file = ConfigFile::parse("configmap monitor.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    let settings = Settings::merge(*run, file).unwrap();
    assert!(
        monitor_agent::api::check_listen(settings.listen, Some("from-the-secret")).is_ok(),
        "listen address refused even with a token"
    );
    assert!(
        mount_paths.contains(settings.data_dir.to_str().unwrap()),
        "data_dir {} is not a mounted volume (the inventory would not survive a restart)",
        settings.data_dir.display()
    );

    // Every shipped spec is one the agent loads.
    let specs = find(&docs, "ConfigMap", "monitor-agent-specs");
    for (k, v) in get(specs, &["data"]).as_mapping().unwrap() {
        let name = k.as_str().unwrap();
        ServiceSpec::from_str("example", std::path::Path::new(name), v.as_str().unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // The NetworkPolicy selects the agent's pods, lets in their one port, lets out only the
    // API server's ports and DNS.
    let np = find(&docs, "NetworkPolicy", "monitor-agent");
    assert_eq!(get(np, &["spec", "podSelector", "matchLabels"]), pod_labels);
    let ingress = list(np, &["spec", "ingress"]);
    assert_eq!(ingress.len(), 1);
    assert_eq!(list(&ingress[0], &["ports"]).len(), 1);
    assert_eq!(
        get(&list(&ingress[0], &["ports"])[0], &["port"]).as_u64(),
        Some(9464)
    );
    let egress_ports: BTreeSet<u64> = list(np, &["spec", "egress"])
        .iter()
        .flat_map(|rule| list(rule, &["ports"]).iter())
        .filter_map(|p| get(p, &["port"]).as_u64())
        .collect();
    assert_eq!(egress_ports, BTreeSet::from([53, 443, 6443]));

    // Service → pods, ServiceMonitor → Service, by labels and port names.
    let svc = find(&docs, "Service", "monitor-agent");
    for (k, v) in get(svc, &["spec", "selector"]).as_mapping().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "Service selector {k:?}");
    }
    let svc_ports = list(svc, &["spec", "ports"]);
    assert!(port_names.contains(s(&svc_ports[0], &["targetPort"])));
    let sm = find(&docs, "ServiceMonitor", "monitor-agent");
    let svc_labels = get(svc, &["metadata", "labels"]);
    for (k, v) in get(sm, &["spec", "selector", "matchLabels"])
        .as_mapping()
        .unwrap()
    {
        assert_eq!(svc_labels.get(k), Some(v), "ServiceMonitor selector {k:?}");
    }
    let ep = &list(sm, &["spec", "endpoints"])[0];
    assert!(svc_ports
        .iter()
        .any(|p| s(p, &["name"]) == s(ep, &["port"])));
    assert_eq!(s(ep, &["path"]), "/metrics");

    // Kubernetes names: a service account allowed to read pods, services and slices.
    let sa = s(pod, &["serviceAccountName"]);
    find(&docs, "ServiceAccount", sa);
    let role = find(&docs, "ClusterRole", "monitor-agent");
    let granted: BTreeSet<String> = list(role, &["rules"])
        .iter()
        .flat_map(|r| {
            list(r, &["resources"])
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
        })
        .collect();
    for needed in ["pods", "services", "endpointslices"] {
        assert!(
            granted.contains(needed),
            "the ClusterRole does not grant {needed}"
        );
    }
    let binding = find(&docs, "ClusterRoleBinding", "monitor-agent");
    assert_eq!(s(binding, &["roleRef", "name"]), "monitor-agent");
    assert_eq!(s(&list(binding, &["subjects"])[0], &["name"]), sa);
    assert!(
        list(c, &["env"])
            .iter()
            .any(|e| s(e, &["name"]) == "NODE_NAME"
                && s(e, &["valueFrom", "fieldRef", "fieldPath"]) == "spec.nodeName"),
        "NODE_NAME from the downward API"
    );

    // The image the DaemonSet runs is what the Containerfile builds.
    let containerfile = std::fs::read_to_string(deploy("container/Containerfile")).unwrap();
    assert!(
        containerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count()
            >= 2,
        "multi-stage"
    );
    assert!(
        containerfile.contains(&format!("ENTRYPOINT [\"{}\"]", argv[0])),
        "entrypoint is {}",
        argv[0]
    );
}

/// `kubectl apply -k deploy/kubernetes` applies every manifest but the ServiceMonitor,
/// which needs the Prometheus Operator's CRDs.
#[test]
fn the_kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(deploy("kubernetes/kustomization.yaml")).unwrap();
    let k: Value = serde_yaml_ng::from_str(&text).unwrap();
    let listed: BTreeSet<&str> = list(&k, &["resources"])
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let files: BTreeSet<String> = documents()
        .into_iter()
        .map(|(f, _)| f)
        .filter(|f| f != "servicemonitor.yaml")
        .collect();
    assert_eq!(listed, files.iter().map(String::as_str).collect());
}

#[test]
fn grafana_files_parse() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/monitor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dash["uid"], "monitor-agent");
    for f in [
        "grafana/provisioning/dashboards/monitor.yaml",
        "grafana/provisioning/datasources/prometheus.yaml",
    ] {
        let v: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(deploy(f)).unwrap()).unwrap();
        assert_eq!(v.get("apiVersion").and_then(Value::as_u64), Some(1), "{f}");
    }
}
