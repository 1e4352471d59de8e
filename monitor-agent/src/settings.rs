//! The settings of `monitor-agent run`, defined once: each is a `run` flag, a config-file
//! key of the same name (with `_`), and a resolved value with its default, all generated
//! from the one list below. A flag given on the command line wins over the file; the
//! lists (`services`, `route_patterns`, `specs`) are combined, flags first.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    str::FromStr,
};

use clap::Args;
use serde::Deserialize;

use crate::{
    config::ConfigError,
    identity::{kubernetes::KubeConfig, ServiceRule},
    output::OutputFormat,
    route::RouteTemplate,
    spec::registry::SpecSource,
};

/// Why a ring-buffer size is refused: it must be a power of two from 1 to 1024 MiB.
#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "every check takes its value by reference, whatever the type"
)]
fn ring_mb(v: &u32) -> Result<(), String> {
    if *v == 0 || !v.is_power_of_two() || *v > 1024 {
        return Err(format!("{v} must be a power of two between 1 and 1024"));
    }
    Ok(())
}

fn within(v: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} is out of range {lo}..={hi}"))
    }
}

/// The flag parser for a checked setting: the type's own parsing, then the same check the
/// config file's value goes through.
fn checked<T>(
    check: fn(&T) -> Result<(), String>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    move |s: &str| {
        let v: T = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
        check(&v)?;
        Ok(v)
    }
}

/// Generates `RunArgs` (the flags), `ConfigFile` (the file's keys) and `Settings` (what
/// `run` uses) from one list. `with_default` settings have a value after resolution;
/// `optional` ones may stay unset; `check` is applied to a flag and to a file value alike.
macro_rules! settings {
    (
        with_default {$(
            $(#[doc = $doc:literal])*
            $name:ident: $ty:ty = $default:expr, [$($arg:tt)*] $(, check $check:expr)?;
        )*}
        optional {$(
            $(#[doc = $odoc:literal])*
            $oname:ident: $oty:ty, [$($oarg:tt)*];
        )*}
    ) => {
        #[derive(Debug, Args)]
        pub struct RunArgs {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)* $(, value_parser = checked::<$ty>($check))?)]
                pub $name: Option<$ty>,
            )*
            $($(#[doc = $odoc])* #[arg($($oarg)*)] pub $oname: Option<$oty>,)*
            /// Have the kernel account time spent in the agent's eBPF programs, exported as
            /// `monitor_program_run_seconds_total` (adds a few nanoseconds per program run).
            #[arg(long)]
            pub kernel_stats: bool,
            /// The benchmark's floor: attach programs that return at once to the same hooks
            /// instead of the real ones. Nothing is captured.
            #[arg(long, hide = true)]
            pub hooks_only: bool,
            /// YAML file with these settings under their flag names, `_` for `-` (see README).
            #[arg(long, value_name = "FILE")]
            pub config: Option<PathBuf>,
            /// Name a service: NAME=port:N, NAME=comm:PROCESS, NAME=exe:PATH, NAME=cidr:CIDR or
            /// NAME=cgroup:SUBSTRING. Repeatable; the first matching rule wins.
            #[arg(long = "service", value_name = "NAME=MATCH")]
            pub services: Vec<ServiceRule>,
            /// A route template that wins over automatic templating, e.g. /users/{id} or
            /// /files/{name}.json. Repeatable.
            #[arg(long = "route-pattern", value_name = "PATTERN")]
            pub route_patterns: Vec<RouteTemplate>,
            /// A service's declared API: SERVICE=PATH to an OpenAPI 3.0/3.1 or Swagger 2.0 file
            /// (JSON or YAML) or a directory of them. Repeatable; reloaded on change and on SIGHUP.
            #[arg(long = "spec", value_name = "SERVICE=PATH")]
            pub specs: Vec<SpecSource>,
        }

        /// ```yaml
        /// listen: 127.0.0.1:9464
        /// output: none
        /// data_dir: /var/lib/monitor-agent
        /// services:            # first match wins; --service flags come before these
        ///   - users=port:8080
        /// route_patterns:
        ///   - /users/{id}/repos/{repo}
        /// specs:
        ///   users: /etc/monitor/users.yaml
        /// ```
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigFile {
            $(pub $name: Option<$ty>,)*
            $(pub $oname: Option<$oty>,)*
            pub kernel_stats: Option<bool>,
            #[serde(default)]
            pub services: Vec<ServiceRule>,
            #[serde(default)]
            pub route_patterns: Vec<RouteTemplate>,
            #[serde(default)]
            pub specs: BTreeMap<String, PathBuf>,
        }

        /// What `run` uses: flags, else the config file, else the defaults.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(pub $name: $ty,)*
            $(pub $oname: Option<$oty>,)*
            pub kernel_stats: bool,
            /// `--hooks-only`: never in the config file.
            pub hooks_only: bool,
            /// Where Kubernetes names come from, if anywhere.
            pub kubernetes: Option<KubeConfig>,
            pub services: Vec<ServiceRule>,
            pub route_patterns: Vec<RouteTemplate>,
            pub specs: Vec<SpecSource>,
        }

        impl ConfigFile {
            /// The values the types alone do not check: (key, reason) of the first failure.
            pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
                $($(
                    if let Some(v) = &self.$name {
                        let check: fn(&$ty) -> Result<(), String> = $check;
                        check(v).map_err(|e| (stringify!($name), e))?;
                    }
                )?)*
                Ok(())
            }
        }

        impl Settings {
            pub fn merge(a: RunArgs, f: ConfigFile) -> Result<Settings, ConfigError> {
                let specs = merge_specs(a.specs, f.specs)?;
                let mut s = Settings {
                    $($name: a.$name.or(f.$name).unwrap_or_else(|| $default),)*
                    $($oname: a.$oname.or(f.$oname),)*
                    kernel_stats: a.kernel_stats || f.kernel_stats.unwrap_or(false),
                    hooks_only: a.hooks_only,
                    kubernetes: None,
                    services: a.services.into_iter().chain(f.services).collect(),
                    route_patterns: a.route_patterns.into_iter().chain(f.route_patterns).collect(),
                    specs,
                };
                s.kubernetes = kubernetes(&s);
                Ok(s)
            }
        }
    };
}

settings! {
    with_default {
        /// How call records are written to stdout [default: text].
        output: OutputFormat = OutputFormat::Text, [long, value_enum];
        /// Address of the health, metrics and query endpoint.
        /// [default: 127.0.0.1:9464]
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9464)), [long];
        /// Size of the kernel → agent ring buffer in MiB (power of two). 8 MiB holds over
        /// a tenth of a second of records at saturation (nginx at 46k requests/s), while the
        /// reader drains it every 10 ms; the agent's RSS counts it twice (the kernel maps
        /// its pages twice).
        /// [default: 8]
        ring_buffer_mb: u32 = 8, [long], check ring_mb;
        /// Most connections tracked at once; the longest idle are forgotten beyond it.
        /// [default: 65536]
        max_connections: usize = 65536, [long];
        /// Connections the kernel side tracks at once; beyond it the least recently used
        /// is forgotten, and its next bytes arrive after a hole (counted in
        /// `monitor_stream_holes_total`).
        /// [default: 65536]
        kernel_connections: u32 = 65536, [long], check |v| within(u64::from(*v), 16, 1 << 22);
        /// Reads already blocked when the agent starts (threads idle on keep-alive
        /// connections) that it picks up; beyond it, their requests are lost and counted.
        /// Syscalls that begin later need no room here: each thread keeps its own.
        /// [default: 32768]
        kernel_blocked_reads: u32 = 32768, [long], check |v| within(u64::from(*v), 1, 1 << 22);
        /// Seconds without traffic after which a connection is forgotten.
        /// [default: 300]
        idle_timeout_secs: u64 = 300, [long];
        /// MiB all parsers together may hold for unfinished messages (heads, header
        /// blocks, requests awaiting responses); beyond it the connections holding bytes
        /// that were idle longest are forgotten.
        /// [default: 256]
        parser_memory_mb: u64 = 256, [long], check |v| within(*v, 1, 65_536);
        /// Where the inventory database lives.
        /// [default: /var/lib/monitor-agent]
        data_dir: PathBuf = PathBuf::from("/var/lib/monitor-agent"), [long];
        /// Seconds between inventory writes to disk (at most this much is lost on a crash).
        /// [default: 5]
        flush_interval_secs: u64 = 5, [long], check |v| within(*v, 1, 3600);
        /// Recent calls kept for `GET /api/v1/calls`.
        /// [default: 10000]
        recent_calls: u64 = 10_000, [long], check |v| within(*v, 1, 1_000_000);
        /// Distinct values one route position may take under the same prefix before it is
        /// treated as a parameter ({param}); 0 turns this off.
        /// [default: 50]
        route_cardinality: usize = 50, [long];
        /// Most endpoints the inventory keeps.
        /// [default: 50000]
        max_endpoints: usize = 50_000, [long];
        /// Distinct `http_route` label values per service in the traffic metrics; further
        /// routes are counted as `_OTHER` (keeps Prometheus cardinality bounded).
        /// [default: 100]
        max_metric_routes: u64 = 100, [long], check |v| within(*v, 1, 100_000);
    }
    optional {
        /// Bearer token required by the query API; mandatory when --listen is not loopback.
        api_token: String, [long, env = "MONITOR_API_TOKEN", hide_env_values = true];
        /// Parsing threads (default: half the CPUs, at least one).
        workers: usize, [long];
        /// Policy file (YAML): which services may call which endpoints, with which
        /// credentials. Reloaded on change and on SIGHUP.
        policy: PathBuf, [long, value_name = "FILE"];
        /// Kubernetes API server (https://HOST:PORT) for pod, workload and Service names.
        /// Default: the in-cluster address when the agent runs in a pod; none otherwise.
        kubernetes_api: String, [long, value_name = "URL"];
        /// Bearer token file for --kubernetes-api [default: the pod's service-account token].
        kubernetes_token_file: PathBuf, [long, value_name = "FILE"];
        /// CA bundle that signed the API server's certificate [default: the pod's
        /// service-account CA].
        kubernetes_ca_file: PathBuf, [long, value_name = "FILE"];
        /// This node's name: only its pods are read [env: NODE_NAME].
        node_name: String, [long, env = "NODE_NAME"];
    }
}

/// Flag specs first; the file's for services the flags did not name.
fn merge_specs(
    flags: Vec<SpecSource>,
    file: BTreeMap<String, PathBuf>,
) -> Result<Vec<SpecSource>, ConfigError> {
    let mut seen = HashSet::new();
    for s in &flags {
        if !seen.insert(s.service.clone()) {
            return Err(ConfigError::DuplicateSpec(s.service.clone()));
        }
    }
    let mut specs = flags;
    specs.extend(
        file.into_iter()
            .filter(|(service, _)| !seen.contains(service))
            .map(|(service, path)| SpecSource { service, path }),
    );
    Ok(specs)
}

/// An explicit API server, else the in-cluster one; token and CA default to the pod's
/// service-account files.
fn kubernetes(s: &Settings) -> Option<KubeConfig> {
    let mut cfg = match &s.kubernetes_api {
        Some(url) => KubeConfig::at(url.trim_end_matches('/').to_string()),
        None => KubeConfig::in_cluster()?,
    };
    if let Some(t) = &s.kubernetes_token_file {
        cfg.token_file.clone_from(t);
    }
    if let Some(c) = &s.kubernetes_ca_file {
        cfg.ca_file.clone_from(c);
    }
    if s.node_name.is_some() {
        cfg.node_name.clone_from(&s.node_name);
    }
    Some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_must_be_power_of_two() {
        let parse = checked::<u32>(ring_mb);
        assert_eq!(parse("16"), Ok(16));
        assert!(parse("12").is_err());
        assert!(parse("0").is_err());
        assert!(parse("lots").is_err());
    }
}
