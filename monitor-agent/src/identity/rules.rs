//! `--service NAME=MATCH` rules: how operators name the things the agent sees.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("service rule {0:?} must look like NAME=KIND:VALUE (KIND is port, comm, exe, cidr or cgroup)")]
    Shape(String),
    #[error(
        "service rule {rule:?}: unknown match kind {kind:?} (use port, comm, exe, cidr or cgroup)"
    )]
    Kind { rule: String, kind: String },
    #[error("service rule {rule:?}: {reason}")]
    Value { rule: String, reason: String },
}

/// An address block, for matching remote peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses match IPv4 blocks.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length {p:?} must be 0..={max}"))?,
        };
        Ok(Cidr {
            net: canonical(net),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// The listening port of a server on this node.
    Port(u16),
    /// The process name as the kernel reports it (at most 15 bytes).
    Comm(String),
    /// The executable's path, as seen from the process's own mount namespace.
    Exe(String),
    /// Remote addresses.
    Cidr(Cidr),
    /// A substring of the process's cgroup path (pod UID, container id, systemd unit...).
    Cgroup(String),
}

/// One naming rule; the first rule that matches names the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceRule {
    pub name: String,
    pub matcher: Match,
}

impl FromStr for ServiceRule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let shape = || RuleError::Shape(s.to_string());
        let (name, spec) = s.split_once('=').ok_or_else(shape)?;
        let (kind, value) = spec.split_once(':').ok_or_else(shape)?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || value.is_empty() {
            return Err(shape());
        }
        let bad = |reason: String| RuleError::Value {
            rule: s.to_string(),
            reason,
        };
        let matcher = match kind.trim() {
            "port" => Match::Port(
                value
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(format!("{value:?} is not a port number")))?,
            ),
            "comm" => Match::Comm(value.to_string()),
            "exe" => Match::Exe(value.to_string()),
            "cidr" => Match::Cidr(value.parse().map_err(bad)?),
            "cgroup" => Match::Cgroup(value.to_string()),
            other => {
                return Err(RuleError::Kind {
                    rule: s.to_string(),
                    kind: other.to_string(),
                })
            }
        };
        Ok(ServiceRule {
            name: name.to_string(),
            matcher,
        })
    }
}

impl TryFrom<String> for ServiceRule {
    type Error = RuleError;
    fn try_from(s: String) -> Result<Self, RuleError> {
        s.parse()
    }
}

impl From<ServiceRule> for String {
    fn from(r: ServiceRule) -> String {
        r.to_string()
    }
}

impl fmt::Display for ServiceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.matcher {
            Match::Port(p) => write!(f, "{}=port:{p}", self.name),
            Match::Comm(c) => write!(f, "{}=comm:{c}", self.name),
            Match::Exe(e) => write!(f, "{}=exe:{e}", self.name),
            Match::Cidr(c) => write!(f, "{}=cidr:{c}", self.name),
            Match::Cgroup(c) => write!(f, "{}=cgroup:{c}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let r: ServiceRule = "users=port:8080".parse().unwrap();
        assert_eq!(r.matcher, Match::Port(8080));
        assert_eq!(r.name, "users");
        assert!(matches!(
            "db=comm:postgres".parse::<ServiceRule>().unwrap().matcher,
            Match::Comm(_)
        ));
        assert!(matches!(
            "x=exe:/usr/bin/x".parse::<ServiceRule>().unwrap().matcher,
            Match::Exe(_)
        ));
        assert!(matches!(
            "k8s=cgroup:kubepods"
                .parse::<ServiceRule>()
                .unwrap()
                .matcher,
            Match::Cgroup(_)
        ));
        let r: ServiceRule = "partners=cidr:10.1.0.0/16".parse().unwrap();
        assert_eq!(r.to_string(), "partners=cidr:10.1.0.0/16");
    }

    #[test]
    fn bad_rules_say_why() {
        for (bad, needle) in [
            ("users", "NAME=KIND:VALUE"),
            ("users=8080", "NAME=KIND:VALUE"),
            ("=port:1", "NAME=KIND:VALUE"),
            ("u=port:", "NAME=KIND:VALUE"),
            ("u=port:http", "not a port"),
            ("u=port:0", "not a port"),
            ("u=pid:1", "unknown match kind"),
            ("u=cidr:10.0.0.0/40", "prefix length"),
            ("u=cidr:nope/8", "not an IP"),
        ] {
            let e = bad.parse::<ServiceRule>().unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let host: Cidr = "fd00::1".parse().unwrap();
        assert!(host.contains("fd00::1".parse().unwrap()));
        assert!(!host.contains("fd00::2".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }
}
