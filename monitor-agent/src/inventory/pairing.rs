//! Counting each call once. When both the client and the server of a call run on this
//! node, the agent sees the call twice, once from each process. The two records share the
//! connection's addresses (mirrored), method and target, and come in the same order on
//! that connection, which is enough to pair them.
//!
//! Through a Kubernetes Service the two sides disagree on the server's address: the client
//! connected to the Service's cluster IP, which kube-proxy's DNAT turned into a backend
//! pod's. With the cluster's EndpointSlices the backend's address leads back to the
//! Service's, so both sides are keyed by the address the client dialled. SNAT (a client
//! outside the pod network, `externalTrafficPolicy: Cluster`) is not undone.

use std::{
    collections::VecDeque,
    hash::BuildHasher,
    net::{IpAddr, SocketAddr},
    sync::{Arc, RwLock},
};

use hashbrown::{DefaultHashBuilder, HashMap, HashSet};

use crate::{
    identity::{same_node, KubeIndex},
    limits::Limit,
    record::{CallRecord, Role},
};

/// Bound on remembered local addresses; cleared beyond it.
const MAX_LOCAL_IPS: usize = 4096;
/// Calls waiting for their other side at once; beyond it the oldest is counted alone.
pub const MAX_WAITING: usize = 65_536;
/// Calls remembered as counted alone; beyond it the oldest is forgotten.
pub const MAX_COUNTED: usize = 262_144;

/// The connection seen from the client side: (client, server).
type ConnKey = (SocketAddr, SocketAddr);

/// Records that can pair with each other's opposite: one connection, one method and
/// target (hashed), one side.
type Slot = (ConnKey, u64, Role);

fn conn_key(r: &CallRecord) -> ConnKey {
    (
        SocketAddr::new(r.client.ip, r.client.port),
        SocketAddr::new(r.server.ip, r.server.port),
    )
}

/// How the client dialled the server: a Service backend's address becomes the Service's.
/// Also whether that address leads to a backend on this node, whose side will be seen too.
fn dialled(key: ConnKey, kube: Option<&RwLock<KubeIndex>>) -> (ConnKey, bool) {
    let Some(index) = kube.and_then(|k| k.read().ok()) else {
        return (key, false);
    };
    let front = index.frontend_of(key.1);
    ((key.0, front), index.backed_here(front))
}

fn opposite(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

struct Waiting {
    rec: Arc<CallRecord>,
    seq: u64,
    /// Its slot as computed on arrival, so that counting it alone later files it where its
    /// other side will look, whatever the cluster's Services have become meanwhile.
    slot: Slot,
}

/// Calls of one side in arrival order under their slot, and one queue of every entry in
/// deadline order (deadlines only grow) to expire them: finding the other side of a call
/// is a map lookup and the front of a queue, however many repeats one connection has.
struct Queue<T> {
    by_slot: HashMap<Slot, VecDeque<T>>,
    /// (deadline, slot, seq): an entry whose slot's front has another seq was taken.
    order: VecDeque<(u64, Slot, u64)>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            by_slot: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T> Queue<T> {
    fn push(&mut self, slot: Slot, seq: u64, deadline_ns: u64, v: T) {
        self.by_slot.entry(slot).or_default().push_back(v);
        self.order.push_back((deadline_ns, slot, seq));
    }

    fn take_front(&mut self, slot: &Slot) -> Option<T> {
        let q = self.by_slot.get_mut(slot)?;
        let v = q.pop_front();
        if q.is_empty() {
            self.by_slot.remove(slot);
        }
        v
    }

    /// The oldest entry still queued, if its deadline is at most `now_ns`.
    fn pop_due(&mut self, now_ns: u64, seq_of: impl Fn(&T) -> u64) -> Option<T> {
        while let Some(&(deadline, slot, seq)) = self.order.front() {
            if deadline > now_ns {
                return None;
            }
            self.order.pop_front();
            let front = self.by_slot.get(&slot).and_then(VecDeque::front);
            if front.is_some_and(|v| seq_of(v) == seq) {
                return self.take_front(&slot);
            }
        }
        None
    }

    /// Entries queued, counting those already taken whose deadline has not come.
    fn len(&self) -> usize {
        self.order.len()
    }
}

pub struct Pairing {
    window_ns: u64,
    waiting: Queue<Waiting>,
    /// Calls already counted from one side, so their other side, if it turns up late, is
    /// not counted again.
    counted: Queue<u64>,
    next_seq: u64,
    /// Addresses that observed processes use: a call whose peer has one of them will
    /// probably be seen from the other side too.
    local_ips: HashSet<IpAddr>,
    hasher: DefaultHashBuilder,
    /// Calls seen from both sides (for metrics).
    pub paired: u64,
    /// Services and their backends, when the agent knows the cluster.
    kube: Option<Arc<RwLock<KubeIndex>>>,
}

impl Pairing {
    pub fn new(window_ns: u64) -> Pairing {
        Pairing {
            window_ns,
            waiting: Queue::default(),
            counted: Queue::default(),
            next_seq: 0,
            local_ips: HashSet::new(),
            hasher: Default::default(),
            paired: 0,
            kube: None,
        }
    }

    /// Pairs calls through the cluster's Services too.
    #[must_use]
    pub fn with_kubernetes(mut self, index: Option<Arc<RwLock<KubeIndex>>>) -> Pairing {
        self.kube = index;
        self
    }

    /// The call's method and target, hashed once for both of its slots.
    fn request_hash(&self, r: &CallRecord) -> u64 {
        self.hasher.hash_one((&*r.method, &r.path))
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Calls paired since the last call.
    pub fn take_paired(&mut self) -> u64 {
        std::mem::take(&mut self.paired)
    }

    /// Records seen so far waiting for their other side.
    pub fn waiting(&self) -> usize {
        self.waiting.by_slot.values().map(VecDeque::len).sum()
    }

    /// Takes one record; calls ready to be counted are appended to `out`.
    pub fn push(&mut self, rec: Arc<CallRecord>, now_ns: u64, out: &mut Vec<Arc<CallRecord>>) {
        let (mine, peer) = match rec.role {
            Role::Client => (rec.client.ip, rec.server.ip),
            Role::Server => (rec.server.ip, rec.client.ip),
        };
        if self.local_ips.len() >= MAX_LOCAL_IPS {
            self.local_ips.clear();
        }
        self.local_ips.insert(mine);
        let (key, backed_here) = dialled(conn_key(&rec), self.kube.as_deref());
        let request = self.request_hash(&rec);
        let other = (key, request, opposite(rec.role));
        let same = |w: &Waiting| w.rec.method == rec.method && w.rec.path == rec.path;
        if self
            .waiting
            .by_slot
            .get(&other)
            .and_then(VecDeque::front)
            .is_some_and(same)
        {
            let w = self.waiting.take_front(&other).expect("front exists");
            self.paired += 1;
            out.push(merge(rec, w.rec));
            return;
        }
        if self.counted.take_front(&other).is_some() {
            // The other side was counted alone already.
            self.paired += 1;
            return;
        }
        let slot = (key, request, rec.role);
        let seq = self.seq();
        let deadline_ns = now_ns.saturating_add(self.window_ns);
        if same_node(mine, peer) || self.local_ips.contains(&peer) || backed_here {
            if self.waiting.len() >= MAX_WAITING {
                Limit::PairingWaiting.reached();
                self.expire_oldest_waiting(now_ns, out);
            }
            self.waiting
                .push(slot, seq, deadline_ns, Waiting { rec, seq, slot });
        } else {
            self.remember_counted(slot, seq, deadline_ns);
            out.push(rec);
        }
    }

    fn remember_counted(&mut self, slot: Slot, seq: u64, deadline_ns: u64) {
        if self.counted.len() >= MAX_COUNTED {
            Limit::PairingCounted.reached();
            self.counted.pop_due(u64::MAX, |s| *s);
        }
        self.counted.push(slot, seq, deadline_ns, seq);
    }

    /// Counts alone the waiting call queued first, whatever its deadline.
    fn expire_oldest_waiting(&mut self, now_ns: u64, out: &mut Vec<Arc<CallRecord>>) {
        if let Some(w) = self.waiting.pop_due(u64::MAX, |w| w.seq) {
            self.count_alone(w, now_ns, out);
        }
    }

    fn count_alone(&mut self, w: Waiting, now_ns: u64, out: &mut Vec<Arc<CallRecord>>) {
        self.remember_counted(w.slot, w.seq, now_ns.saturating_add(self.window_ns));
        out.push(w.rec);
    }

    /// Counts alone the records whose other side did not turn up in time.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Arc<CallRecord>>) {
        while let Some(w) = self.waiting.pop_due(now_ns, |w| w.seq) {
            self.count_alone(w, now_ns, out);
        }
        while self.counted.pop_due(now_ns, |s| *s).is_some() {}
    }

    /// Everything still waiting, counted alone (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<Arc<CallRecord>>) {
        self.expire(u64::MAX, out);
    }
}

/// One call from its two records: the server's view for timing (what the service itself
/// spent), the client's for who called.
/// The server's record is changed in place; it is copied only if stdout still holds it.
fn merge(a: Arc<CallRecord>, b: Arc<CallRecord>) -> Arc<CallRecord> {
    let (mut server, client) = if a.role == Role::Server {
        (a, b)
    } else {
        (b, a)
    };
    let s = Arc::make_mut(&mut server);
    s.client = client.client.clone();
    s.client_duration_us = Some(client.duration_us);
    s.tls |= client.tls;
    s.truncated |= client.truncated;
    s.seen_by_both = true;
    server
}

#[cfg(test)]
mod tests;
