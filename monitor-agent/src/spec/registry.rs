//! The specs in force, reloaded when their files change or on SIGHUP. A spec that fails to
//! load is reported and the version before it stays in force, so a bad edit never turns
//! every documented endpoint into a shadow one.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::SystemTime,
};

use serde::Serialize;

use super::ServiceSpec;

/// `--spec SERVICE=PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecSource {
    pub service: String,
    pub path: PathBuf,
}

impl FromStr for SpecSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((svc, path)) if !svc.trim().is_empty() && !path.trim().is_empty() => {
                Ok(SpecSource {
                    service: svc.trim().to_string(),
                    path: PathBuf::from(path.trim()),
                })
            }
            _ => Err(format!(
                "spec {s:?} must look like SERVICE=PATH (a spec file or a directory of them)"
            )),
        }
    }
}

impl fmt::Display for SpecSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.service, self.path.display())
    }
}

/// What identifies a version of a spec on disk without reading it.
pub(crate) type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

pub(crate) fn fingerprint(path: &Path) -> Fingerprint {
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (p.to_path_buf(), m.modified().ok(), m.len()))
            .unwrap_or((p.to_path_buf(), None, 0))
    };
    let mut out = vec![stat(path)];
    if path.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            out.extend(entries.iter().map(|p| stat(p)));
        }
    }
    out
}

struct Slot {
    source: SpecSource,
    seen: Option<Fingerprint>,
    spec: Option<Arc<ServiceSpec>>,
    error: Option<String>,
    loaded_at: Option<SystemTime>,
}

/// How one `--spec` is doing, for `GET /api/v1/specs`.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SpecState {
    pub service: String,
    pub path: String,
    /// A version is in force (possibly an older one, when `error` is set).
    pub loaded: bool,
    pub operations: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
}

pub struct SpecRegistry {
    slots: Vec<Slot>,
}

/// What a refresh did.
#[derive(Default)]
pub struct Refresh {
    /// The specs now in force, when they changed.
    pub changed: Option<HashMap<String, Arc<ServiceSpec>>>,
    /// One line per spec that failed to load.
    pub errors: Vec<String>,
}

impl SpecRegistry {
    pub fn new(sources: Vec<SpecSource>) -> SpecRegistry {
        SpecRegistry {
            slots: sources
                .into_iter()
                .map(|source| Slot {
                    source,
                    seen: None,
                    spec: None,
                    error: None,
                    loaded_at: None,
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Reloads specs whose files changed (every spec when `force`, as on SIGHUP).
    pub fn refresh(&mut self, force: bool) -> Refresh {
        let mut r = Refresh::default();
        let mut changed = false;
        for slot in &mut self.slots {
            let fp = fingerprint(&slot.source.path);
            if !force && slot.seen.as_ref() == Some(&fp) {
                continue;
            }
            slot.seen = Some(fp);
            match ServiceSpec::load(&slot.source.service, &slot.source.path) {
                Ok(spec) => {
                    log::info!(
                        "spec for {}: {} operations from {}",
                        slot.source.service,
                        spec.ops.len(),
                        slot.source.path.display()
                    );
                    slot.spec = Some(Arc::new(spec));
                    slot.error = None;
                    slot.loaded_at = Some(SystemTime::now());
                    changed = true;
                }
                Err(e) => {
                    let keeping = if slot.spec.is_some() {
                        "; the previous version stays in force"
                    } else {
                        "; no version of it is in force"
                    };
                    let line = format!("spec for {}: {e}{keeping}", slot.source.service);
                    log::error!("{line}");
                    slot.error = Some(e.to_string());
                    r.errors.push(line);
                }
            }
        }
        if changed {
            r.changed = Some(self.in_force());
        }
        r
    }

    pub fn in_force(&self) -> HashMap<String, Arc<ServiceSpec>> {
        self.slots
            .iter()
            .filter_map(|s| s.spec.clone().map(|spec| (s.source.service.clone(), spec)))
            .collect()
    }

    pub fn states(&self) -> Vec<SpecState> {
        self.slots
            .iter()
            .map(|s| SpecState {
                service: s.source.service.clone(),
                path: s.source.path.display().to_string(),
                loaded: s.spec.is_some(),
                operations: s.spec.as_ref().map_or(0, |x| x.ops.len()),
                error: s.error.clone(),
                loaded_at: s
                    .loaded_at
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: {responses: {'200': {description: ok}}}\n";

    #[test]
    fn bad_edit_keeps_previous_version() {
        let dir = std::env::temp_dir().join(format!("spec-reg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.yaml");
        std::fs::write(&file, GOOD).unwrap();
        let mut reg = SpecRegistry::new(vec![format!("svc={}", file.display()).parse().unwrap()]);
        let r = reg.refresh(false);
        assert_eq!(r.changed.unwrap()["svc"].ops.len(), 1);
        assert!(
            reg.refresh(false).changed.is_none(),
            "unchanged files are not reloaded"
        );
        std::fs::write(&file, "openapi: 3.0.0\npaths: [oops\n").unwrap();
        let r = reg.refresh(true);
        assert!(r.changed.is_none());
        assert!(r.errors[0].contains("a.yaml:"), "{:?}", r.errors);
        assert!(r.errors[0].contains("previous version stays in force"));
        assert_eq!(reg.in_force()["svc"].ops.len(), 1);
        let st = &reg.states()[0];
        assert!(st.loaded && st.error.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn source_syntax() {
        assert!("users=/x.yaml".parse::<SpecSource>().is_ok());
        assert!("users".parse::<SpecSource>().is_err());
        assert!("=/x".parse::<SpecSource>().is_err());
    }
}
