//! Whether the threads that turn traffic into calls are still running. One that died (a
//! panic unwinds and ends only that thread) would leave the agent serving its API while
//! blind, so `/healthz` reports it and the liveness probe restarts the agent.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

#[derive(Default)]
pub(crate) struct Health {
    parts: Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

/// Held by a watched thread for its whole life: dropped when it returns or unwinds.
pub(crate) struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Health {
    /// Watches a part named `name`; move the guard into the thread.
    pub(crate) fn watch(&self, name: &str) -> Alive {
        let flag = Arc::new(AtomicBool::new(true));
        if let Ok(mut parts) = self.parts.lock() {
            parts.push((name.to_string(), flag.clone()));
        }
        Alive(flag)
    }

    /// The parts that have stopped, by name; empty when all run.
    pub(crate) fn stopped(&self) -> Vec<String> {
        let Ok(parts) = self.parts.lock() else {
            return vec!["health registry".to_string()];
        };
        parts
            .iter()
            .filter(|(_, alive)| !alive.load(Ordering::Relaxed))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_panics_is_reported_stopped() {
        let health = Health::default();
        let fine = health.watch("reader");
        let doomed = health.watch("shard-1");
        assert!(health.stopped().is_empty());
        let t = std::thread::spawn(move || {
            let _alive = doomed;
            panic!("a bug on the data path");
        });
        assert!(t.join().is_err());
        assert_eq!(health.stopped(), ["shard-1"]);
        drop(fine);
        assert_eq!(health.stopped(), ["reader", "shard-1"]);
    }
}
