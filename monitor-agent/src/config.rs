//! The optional config file (`--config`): the repeatable settings that are tedious on a
//! command line. Unknown keys are errors, so a typo is reported instead of ignored.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;
use thiserror::Error;

use crate::{identity::ServiceRule, inventory::shape::RoutePattern, spec::registry::SpecSource};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// ```yaml
/// services:            # first match wins; --service flags come before these
///   - users=port:8080
///   - partners=cidr:192.0.2.0/24
/// route_patterns:
///   - /users/{id}/repos/{repo}
/// specs:
///   users: /etc/monitor/users.yaml
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub route_patterns: Vec<String>,
    #[serde(default)]
    pub specs: BTreeMap<String, String>,
}

/// The config file's settings, checked.
#[derive(Debug, Default)]
pub struct Config {
    pub services: Vec<ServiceRule>,
    pub route_patterns: Vec<RoutePattern>,
    pub specs: Vec<SpecSource>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_string(),
            reason,
        };
        let raw: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        let services = raw
            .services
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e: crate::identity::RuleError| invalid(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let route_patterns = raw
            .route_patterns
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e: crate::inventory::shape::PatternError| invalid(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let specs = raw
            .specs
            .into_iter()
            .map(|(service, p)| SpecSource {
                service,
                path: p.into(),
            })
            .collect();
        Ok(Config {
            services,
            route_patterns,
            specs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file() {
        let c = Config::parse(
            "c.yaml",
            "services:\n  - users=port:8080\nroute_patterns:\n  - \"/u/{id}\"\nspecs:\n  users: /tmp/u.yaml\n",
        )
        .unwrap();
        assert_eq!(c.services[0].name, "users");
        assert_eq!(c.route_patterns[0].as_str(), "/u/{id}");
        assert_eq!(c.specs[0].service, "users");
        assert!(Config::parse("e.yaml", "").unwrap().services.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let e = Config::parse("c.yaml", "servces: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.yaml") && e.contains("servces"), "{e}");
        let e = Config::parse("c.yaml", "services:\n  - users=prot:1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown match kind"), "{e}");
        let e = Config::parse("c.yaml", "route_patterns: [nope]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must start with /"), "{e}");
        let e = Config::parse("c.yaml", "services: [a\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line"), "{e}");
        assert!(Config::load(Path::new("/nonexistent/c.yaml")).is_err());
    }
}
