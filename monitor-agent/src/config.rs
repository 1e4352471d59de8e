//! The config file (`--config`, YAML) and the settings the agent runs with. Every `run`
//! flag has a config key of the same name (with `_`); a flag given on the command line
//! wins over the file, and lists (`services`, `route_patterns`, `specs`) are combined,
//! flags first. Unknown keys and bad values are errors naming the file, line and reason.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use thiserror::Error;

use crate::{
    cli::{parse_ring_mb, RunArgs},
    identity::ServiceRule,
    output::OutputFormat,
    route::RouteTemplate,
    spec::registry::SpecSource,
};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("--spec names service {0:?} twice; put its files in one directory instead")]
    DuplicateSpec(String),
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
    pub output: Option<OutputFormat>,
    pub listen: Option<SocketAddr>,
    pub api_token: Option<String>,
    pub ring_buffer_mb: Option<u32>,
    pub max_connections: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub kernel_stats: Option<bool>,
    pub workers: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub flush_interval_secs: Option<u64>,
    pub recent_calls: Option<u64>,
    pub route_cardinality: Option<usize>,
    pub max_endpoints: Option<usize>,
    pub max_metric_routes: Option<u64>,
    pub policy: Option<PathBuf>,
    pub kubernetes_api: Option<String>,
    pub kubernetes_token_file: Option<PathBuf>,
    pub kubernetes_ca_file: Option<PathBuf>,
    pub node_name: Option<String>,
    #[serde(default)]
    pub services: Vec<ServiceRule>,
    #[serde(default)]
    pub route_patterns: Vec<RouteTemplate>,
    #[serde(default)]
    pub specs: BTreeMap<String, PathBuf>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ConfigFile::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<ConfigFile, ConfigError> {
        if text.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        let f: ConfigFile = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        f.check().map_err(|(key, reason)| ConfigError::Invalid {
            path: path.to_string(),
            reason: match line_of(text, key) {
                Some(n) => format!("{key}: {reason} at line {n}"),
                None => format!("{key}: {reason}"),
            },
        })?;
        Ok(f)
    }

    /// Range checks the types alone do not express: (key, reason) of the first failure.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(v) = self.ring_buffer_mb {
            parse_ring_mb(&v.to_string()).map_err(|e| ("ring_buffer_mb", e))?;
        }
        for (key, v, lo, hi) in [
            ("flush_interval_secs", self.flush_interval_secs, 1, 3600),
            ("recent_calls", self.recent_calls, 1, 1_000_000),
            ("max_metric_routes", self.max_metric_routes, 1, 100_000),
        ] {
            if let Some(v) = v.filter(|v| !(lo..=hi).contains(v)) {
                return Err((key, format!("{v} is out of range {lo}..={hi}")));
            }
        }
        Ok(())
    }
}

/// An explicit API server, else the in-cluster one; token and CA default to the pod's
/// service-account files.
fn kubernetes(
    api: Option<String>,
    token: Option<PathBuf>,
    ca: Option<PathBuf>,
    node: Option<String>,
) -> Option<crate::identity::kubernetes::KubeConfig> {
    use crate::identity::kubernetes::KubeConfig;
    let mut cfg = match api {
        Some(url) => KubeConfig::at(url.trim_end_matches('/').to_string()),
        None => KubeConfig::in_cluster()?,
    };
    if let Some(t) = token {
        cfg.token_file = t;
    }
    if let Some(c) = ca {
        cfg.ca_file = c;
    }
    if node.is_some() {
        cfg.node_name = node;
    }
    Some(cfg)
}

/// The 1-based line where a top-level key is set, for error messages.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// What `run` uses: flags, else the config file, else the defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub output: OutputFormat,
    pub listen: SocketAddr,
    pub api_token: Option<String>,
    pub ring_buffer_mb: u32,
    pub max_connections: usize,
    pub idle_timeout_secs: u64,
    pub kernel_stats: bool,
    pub workers: Option<usize>,
    pub data_dir: PathBuf,
    pub flush_interval_secs: u64,
    pub recent_calls: u64,
    pub route_cardinality: usize,
    pub max_endpoints: usize,
    pub max_metric_routes: u64,
    pub policy: Option<PathBuf>,
    /// Where Kubernetes names come from, if anywhere.
    pub kubernetes: Option<crate::identity::kubernetes::KubeConfig>,
    pub services: Vec<ServiceRule>,
    pub route_patterns: Vec<RouteTemplate>,
    pub specs: Vec<SpecSource>,
}

impl Settings {
    pub fn resolve(args: RunArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        Settings::merge(args, file)
    }

    pub fn merge(a: RunArgs, f: ConfigFile) -> Result<Settings, ConfigError> {
        let mut seen = HashSet::new();
        for s in &a.specs {
            if !seen.insert(s.service.clone()) {
                return Err(ConfigError::DuplicateSpec(s.service.clone()));
            }
        }
        let mut specs = a.specs;
        specs.extend(
            f.specs
                .into_iter()
                .filter(|(service, _)| !seen.contains(service))
                .map(|(service, path)| SpecSource { service, path }),
        );
        Ok(Settings {
            output: a.output.or(f.output).unwrap_or(OutputFormat::Text),
            listen: a
                .listen
                .or(f.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
            api_token: a.api_token.or(f.api_token),
            ring_buffer_mb: a.ring_buffer_mb.or(f.ring_buffer_mb).unwrap_or(16),
            max_connections: a.max_connections.or(f.max_connections).unwrap_or(65536),
            idle_timeout_secs: a.idle_timeout_secs.or(f.idle_timeout_secs).unwrap_or(300),
            kernel_stats: a.kernel_stats || f.kernel_stats.unwrap_or(false),
            workers: a.workers.or(f.workers),
            data_dir: a
                .data_dir
                .or(f.data_dir)
                .unwrap_or_else(|| PathBuf::from("/var/lib/monitor-agent")),
            flush_interval_secs: a.flush_interval_secs.or(f.flush_interval_secs).unwrap_or(5),
            recent_calls: a.recent_calls.or(f.recent_calls).unwrap_or(10_000),
            route_cardinality: a.route_cardinality.or(f.route_cardinality).unwrap_or(50),
            max_endpoints: a.max_endpoints.or(f.max_endpoints).unwrap_or(50_000),
            max_metric_routes: a.max_metric_routes.or(f.max_metric_routes).unwrap_or(100),
            policy: a.policy.or(f.policy),
            kubernetes: kubernetes(
                a.kubernetes_api.or(f.kubernetes_api),
                a.kubernetes_token_file.or(f.kubernetes_token_file),
                a.kubernetes_ca_file.or(f.kubernetes_ca_file),
                a.node_name.or(f.node_name),
            ),
            services: a.services.into_iter().chain(f.services).collect(),
            route_patterns: a
                .route_patterns
                .into_iter()
                .chain(f.route_patterns)
                .collect(),
            specs,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["monitor-agent", "run"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    const FULL: &str = "output: json\nlisten: 127.0.0.1:9999\nring_buffer_mb: 32\nmax_connections: 10\nidle_timeout_secs: 7\nkernel_stats: true\nworkers: 3\ndata_dir: /tmp/x\nflush_interval_secs: 2\nrecent_calls: 50\nroute_cardinality: 9\nmax_endpoints: 99\nmax_metric_routes: 20\nservices:\n  - users=port:8080\nroute_patterns:\n  - \"/u/{id}\"\nspecs:\n  users: /tmp/u.yaml\n";

    #[test]
    fn every_flag_has_a_key_and_flags_win() {
        let f = ConfigFile::parse("c.yaml", FULL).unwrap();
        let s = Settings::merge(
            args(&["--listen", "127.0.0.1:1", "--service", "a=comm:x"]),
            f,
        )
        .unwrap();
        assert_eq!(s.listen.port(), 1, "flag wins");
        assert_eq!(s.output, OutputFormat::Json);
        assert_eq!(s.ring_buffer_mb, 32);
        assert_eq!(
            (s.max_connections, s.idle_timeout_secs, s.workers),
            (10, 7, Some(3))
        );
        assert!(s.kernel_stats);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!((s.flush_interval_secs, s.recent_calls), (2, 50));
        assert_eq!(
            (s.route_cardinality, s.max_endpoints, s.max_metric_routes),
            (9, 99, 20)
        );
        let names: Vec<_> = s.services.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "users"], "flags first");
        assert_eq!(s.route_patterns[0].as_str(), "/u/{id}");
        assert_eq!(s.specs[0].service, "users");
    }

    #[test]
    fn defaults_without_a_file() {
        let s = Settings::merge(args(&[]), ConfigFile::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(s.output, OutputFormat::Text);
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/monitor-agent"));
        assert_eq!(s.flush_interval_secs, 5);
        assert!(ConfigFile::parse("e.yaml", "").unwrap().services.is_empty());
    }

    #[test]
    fn mistakes_name_file_line_and_reason() {
        for (text, line, needle) in [
            ("listen: 127.0.0.1:1\nservces: []\n", 2, "servces"),
            ("services:\n  - users=prot:1\n", 2, "unknown match kind"),
            ("route_patterns: [nope]\n", 1, "must start with /"),
            ("ring_buffer_mb: 12\n", 1, "power of two"),
            ("flush_interval_secs: 0\n", 1, "out of range"),
            ("output: xml\n", 1, "xml"),
            ("listen: nowhere\n", 1, "listen"),
            ("services: [a\n", 1, ""),
            ("specs: {users: /a.yaml\n", 2, ""),
        ] {
            let e = ConfigFile::parse("c.yaml", text).unwrap_err().to_string();
            assert!(e.starts_with("config file c.yaml: "), "{e}");
            assert!(e.contains(&format!("line {line}")), "{text:?}: {e}");
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert!(ConfigFile::load(Path::new("/nonexistent/c.yaml")).is_err());
    }

    #[test]
    fn duplicate_specs_are_refused() {
        let e = Settings::merge(
            args(&["--spec", "u=/a.yaml", "--spec", "u=/b.yaml"]),
            ConfigFile::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"));
    }
}
