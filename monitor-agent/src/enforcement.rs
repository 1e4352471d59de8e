//! The policy in force (`--policy`), reloaded when its file changes or on SIGHUP. A file
//! that fails to load is reported and the policy before it stays in force: a typo must not
//! silently turn enforcement off.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use crate::{
    policy::{CallFacts, Policy},
    record::CallRecord,
    spec::registry::{fingerprint, Fingerprint},
    violations::ViolationRecord,
};

/// For `GET /api/v1/policy`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PolicyState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub loaded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
}

pub struct Enforcement {
    path: Option<PathBuf>,
    current: RwLock<Option<Arc<Policy>>>,
    seen: Mutex<Option<Fingerprint>>,
    state: Mutex<PolicyState>,
}

impl Enforcement {
    pub fn new(path: Option<PathBuf>) -> Enforcement {
        Enforcement {
            state: Mutex::new(PolicyState {
                path: path.as_ref().map(|p| p.display().to_string()),
                ..Default::default()
            }),
            path,
            current: RwLock::new(None),
            seen: Mutex::new(None),
        }
    }

    /// Reloads the file when it changed (always when `force`). Returns the error line when
    /// a load failed.
    pub fn refresh(&self, force: bool) -> Option<String> {
        let path = self.path.as_ref()?;
        let fp = fingerprint(path);
        {
            let mut seen = self.seen.lock().ok()?;
            if !force && seen.as_ref() == Some(&fp) {
                return None;
            }
            *seen = Some(fp);
        }
        match Policy::load(path) {
            Ok(p) => {
                log::info!("policy loaded from {}", path.display());
                if let Ok(mut cur) = self.current.write() {
                    *cur = Some(Arc::new(p));
                }
                if let Ok(mut st) = self.state.lock() {
                    st.loaded = true;
                    st.error = None;
                    st.loaded_at =
                        Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
                }
                None
            }
            Err(e) => {
                let keeping = match self.current.read() {
                    Ok(c) if c.is_some() => "; the previous policy stays in force",
                    _ => "; no policy is in force",
                };
                let line = format!("{e}{keeping}");
                log::error!("{line}");
                if let Ok(mut st) = self.state.lock() {
                    st.error = Some(e.to_string());
                }
                Some(line)
            }
        }
    }

    pub fn state(&self) -> PolicyState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// The violation a counted call makes, if any.
    pub fn check(policy: &Policy, call: &CallRecord) -> Option<ViolationRecord> {
        let facts = CallFacts::from_record(call);
        policy
            .evaluate(&facts)
            .map(|v| ViolationRecord::new(call, v))
    }
}
