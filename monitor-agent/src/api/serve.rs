//! Serving the API when any process on the node can connect to it: connections are
//! capped (the oldest is shed for a new one, so a flood of idle or slow connections cannot
//! lock `/healthz` out), a request head must arrive within a few seconds and fit in 16 KiB,
//! and follow streams are capped in number and duration.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    net::TcpListener,
    sync::{oneshot, OwnedSemaphorePermit, Semaphore},
};

use crate::metrics::register;

/// Connections served at once; beyond it the oldest is closed for each new one.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send a request head once it is expected (slow-loris peers are cut
/// off after it).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read (hyper's minimum is 8 KiB).
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Follow streams (`?follow=true`) open at once; more are refused with 503.
pub(crate) const MAX_FOLLOWERS: usize = 16;
/// A follow stream ends after this long; the client reconnects if it wants more.
pub(crate) const FOLLOW_MAX: Duration = Duration::from_hours(1);

/// The API's limits and what they count, shared by the accept loop and the handlers.
pub(crate) struct Guard {
    followers: Arc<Semaphore>,
    open: Gauge,
    shed: Counter,
    followers_open: Gauge,
    followers_refused: Counter,
    /// Each limit is logged the first time it is reached.
    shed_logged: AtomicBool,
    refused_logged: AtomicBool,
}

/// A follow stream's place; dropping it frees the place.
pub(crate) struct Follower {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Guard {
    pub(crate) fn register(r: &mut Registry) -> Guard {
        Guard {
            followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
            open: register(r, "monitor_api_connections", "API connections open"),
            shed: register(
                r,
                "monitor_api_connections_shed",
                "API connections closed to make room for a new one (limit reached)",
            ),
            followers_open: register(r, "monitor_api_followers", "follow streams open"),
            followers_refused: register(
                r,
                "monitor_api_followers_refused",
                "follow streams refused because the limit was reached",
            ),
            shed_logged: AtomicBool::new(false),
            refused_logged: AtomicBool::new(false),
        }
    }

    /// A place for one more follow stream, if there is one.
    pub(crate) fn follower(&self) -> Option<Follower> {
        let Ok(permit) = self.followers.clone().try_acquire_owned() else {
            self.followers_refused.inc();
            if !self.refused_logged.swap(true, Ordering::Relaxed) {
                log::warn!("{MAX_FOLLOWERS} follow streams are open: refusing more (counted in monitor_api_followers_refused_total)");
            }
            return None;
        };
        self.followers_open.inc();
        Some(Follower {
            _permit: permit,
            open: self.followers_open.clone(),
        })
    }
}

/// Open connections by age, each with the sender that closes it.
#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, oneshot::Sender<()>>,
}

/// Serves `router` on `listener` until the listener fails.
pub(crate) async fn serve(listener: TcpListener, router: axum::Router, guard: Arc<Guard>) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                log::warn!("API accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (id, closed) = admit(&open, &guard);
        let svc = TowerToHyperService::new(router.clone());
        let (open, guard) = (open.clone(), guard.clone());
        tokio::spawn(async move {
            guard.open.inc();
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES);
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = closed => {}
            }
            guard.open.dec();
            if let Ok(mut o) = open.lock() {
                o.by_age.remove(&id);
            }
        });
    }
}

/// Registers a new connection, closing the oldest when the limit is reached; returns the
/// new one's id and what closes it.
fn admit(open: &Mutex<Open>, guard: &Guard) -> (u64, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let Ok(mut o) = open.lock() else {
        return (u64::MAX, rx);
    };
    if o.by_age.len() >= MAX_CONNECTIONS {
        if let Some((_, oldest)) = o.by_age.pop_first() {
            let _ = oldest.send(());
            guard.shed.inc();
            if !guard.shed_logged.swap(true, Ordering::Relaxed) {
                log::warn!("{MAX_CONNECTIONS} API connections are open: closing the oldest for each new one (counted in monitor_api_connections_shed_total)");
            }
        }
    }
    let id = o.next;
    o.next += 1;
    o.by_age.insert(id, tx);
    (id, rx)
}
