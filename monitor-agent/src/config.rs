//! The config file (`--config`, YAML): every `run` flag has a key of the same name (with
//! `_`), defined once in [`crate::settings`]. Unknown keys and bad values are errors naming
//! the file, line and reason.

use std::path::Path;

use thiserror::Error;

pub use crate::settings::{ConfigFile, RunArgs, Settings};

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

impl Settings {
    pub fn resolve(args: RunArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        Settings::merge(args, file)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use std::path::PathBuf;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        output::OutputFormat,
    };

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
