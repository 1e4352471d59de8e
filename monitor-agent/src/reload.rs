//! Keeps the declared specs and the policy current: files that changed are reloaded within
//! a second, all of them on SIGHUP. A file that fails to load leaves its previous version in
//! force, and the failure is counted.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::{
    enforcement::Enforcement, inventory::Inventory, metrics::register, spec::registry::SpecRegistry,
};

/// How often spec and policy files are checked for changes.
const POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct ReloadMetrics {
    pub spec_load_errors: Counter,
    policy_load_errors: Counter,
    specs_loaded: Gauge,
}

impl ReloadMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        ReloadMetrics {
            spec_load_errors: register(
                registry,
                "monitor_spec_load_errors",
                "Spec (re)loads that failed; the previous version stays in force",
            ),
            policy_load_errors: register(
                registry,
                "monitor_policy_load_errors",
                "Policy reloads that failed; the previous policy stays in force",
            ),
            specs_loaded: register(
                registry,
                "monitor_specs_loaded",
                "Services with a declared spec in force",
            ),
        }
    }
}

/// What the reloader updates.
pub(crate) struct Reloaded {
    pub specs: Arc<Mutex<SpecRegistry>>,
    pub enforcement: Arc<Enforcement>,
    pub inventory: Arc<Mutex<Inventory>>,
}

/// Checks every `POLL`, and at once when `hangup` is raised, until `stop`.
pub(crate) fn spawn(
    r: Reloaded,
    metrics: ReloadMetrics,
    hangup: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("reload".into()).spawn(move || {
        let mut waited = Duration::ZERO;
        let tick = Duration::from_millis(100);
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(tick);
            waited += tick;
            let forced = hangup.swap(false, Ordering::Relaxed);
            if !forced && waited < POLL {
                continue;
            }
            waited = Duration::ZERO;
            if forced {
                log::info!("SIGHUP: reloading specs and policy");
            }
            if !r.refresh(forced, &metrics) {
                return;
            }
        }
    })
}

impl Reloaded {
    /// False when the spec registry is gone (its lock poisoned).
    fn refresh(&self, forced: bool, metrics: &ReloadMetrics) -> bool {
        if self.enforcement.refresh(forced).is_some() {
            metrics.policy_load_errors.inc();
        }
        let Ok(mut reg) = self.specs.lock() else {
            return false;
        };
        if reg.is_empty() {
            return true;
        }
        let r = reg.refresh(forced);
        metrics.spec_load_errors.inc_by(r.errors.len() as u64);
        metrics.specs_loaded.set(reg.in_force().len() as i64);
        drop(reg);
        if let Some(in_force) = r.changed {
            if let Ok(mut inv) = self.inventory.lock() {
                inv.set_specs(in_force);
            }
        }
        true
    }
}
