//! The attached programs' links, owned here rather than by the loaded object, so that the
//! agent can detach them all at once when it stops.
//!
//! Detaching one link waits for the kernel's RCU grace periods (a tracepoint's or uprobe's
//! program array is freed only once no CPU can still be running it): tens of milliseconds
//! each, which the loaded object's own drop pays one link after another, about 3 s for
//! the agent's 30-odd links. Waiters share grace periods, so links dropped from many
//! threads at once cost about one.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Threads that detach links at shutdown; more links are shared out among them.
const DETACH_THREADS: usize = 64;

type Link = Box<dyn Send>;

#[derive(Default)]
pub(crate) struct Links {
    held: Mutex<Vec<Link>>,
}

impl Links {
    /// Keeps `link` attached until `detach_all`.
    pub(crate) fn keep(&self, link: impl Send + 'static) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.push(Box::new(link));
    }

    pub(crate) fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Detaches every link kept so far, in parallel; returns how many and how long it took.
    pub(crate) fn detach_all(&self) -> (usize, Duration) {
        let started = Instant::now();
        let mut links = std::mem::take(
            &mut *self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let n = links.len();
        let per_thread = n.div_ceil(DETACH_THREADS).max(1);
        std::thread::scope(|scope| {
            while !links.is_empty() {
                let batch: Vec<Link> = links.drain(..per_thread.min(links.len())).collect();
                let spawned = std::thread::Builder::new()
                    .name("detach".into())
                    .spawn_scoped(scope, move || drop(batch));
                // No thread to spare: this one detaches the batch (it moved into the
                // closure, which the failed spawn dropped, detaching it already).
                if let Err(e) = spawned {
                    log::debug!("detaching on the stopping thread: {e}");
                }
            }
        });
        (n, started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use super::*;

    /// Stands in for a link: its drop waits, like a grace period; how many are waiting at
    /// once is recorded.
    struct SlowLink {
        waiting: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        dropped: Arc<AtomicUsize>,
    }

    impl Drop for SlowLink {
        fn drop(&mut self) {
            let now = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_link_is_dropped_and_the_waits_overlap() {
        let [waiting, most, dropped] = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
        let links = Links::default();
        for _ in 0..100 {
            links.keep(SlowLink {
                waiting: waiting.clone(),
                most: most.clone(),
                dropped: dropped.clone(),
            });
        }
        assert_eq!(links.len(), 100);
        let (n, _) = links.detach_all();
        assert_eq!((n, dropped.load(Ordering::SeqCst)), (100, 100));
        assert_eq!(links.len(), 0);
        assert!(
            most.load(Ordering::SeqCst) > 1,
            "links were detached one at a time"
        );
    }
}
