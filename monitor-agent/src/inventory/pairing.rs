//! Counting each call once. When both the client and the server of a call run on this
//! node, the agent sees the call twice, once from each process. The two records share the
//! connection's addresses (mirrored), method and target, and come in the same order on
//! that connection, which is enough to pair them.

use std::{
    collections::VecDeque,
    hash::BuildHasher,
    net::{IpAddr, SocketAddr},
};

use hashbrown::{DefaultHashBuilder, HashMap, HashSet};

use crate::{
    identity::same_node,
    record::{CallRecord, Role},
};

/// Bound on remembered local addresses; cleared beyond it.
const MAX_LOCAL_IPS: usize = 4096;

/// The connection seen from the client side: (client, server).
type ConnKey = (SocketAddr, SocketAddr);

fn conn_key(r: &CallRecord) -> ConnKey {
    (
        SocketAddr::new(r.client.ip, r.client.port),
        SocketAddr::new(r.server.ip, r.server.port),
    )
}

struct Waiting {
    rec: CallRecord,
    deadline_ns: u64,
}

/// A call already counted from one side, so its other side, if it turns up late, is not
/// counted again.
struct Counted {
    key: ConnKey,
    role: Role,
    what: u64,
    deadline_ns: u64,
}

pub struct Pairing {
    window_ns: u64,
    waiting: HashMap<ConnKey, VecDeque<Waiting>>,
    order: VecDeque<(u64, ConnKey)>,
    counted: VecDeque<Counted>,
    counted_index: HashMap<(ConnKey, u64), u32>,
    /// Addresses that observed processes use: a call whose peer has one of them will
    /// probably be seen from the other side too.
    local_ips: HashSet<IpAddr>,
    hasher: DefaultHashBuilder,
    /// Calls seen from both sides (for metrics).
    pub paired: u64,
}

impl Pairing {
    pub fn new(window_ns: u64) -> Pairing {
        Pairing {
            window_ns,
            waiting: HashMap::new(),
            order: VecDeque::new(),
            counted: VecDeque::new(),
            counted_index: HashMap::new(),
            local_ips: HashSet::new(),
            hasher: Default::default(),
            paired: 0,
        }
    }

    fn what(&self, r: &CallRecord) -> u64 {
        self.hasher.hash_one((&r.method, &r.path))
    }

    /// Calls paired since the last call.
    pub fn take_paired(&mut self) -> u64 {
        std::mem::take(&mut self.paired)
    }

    /// Records seen so far waiting for their other side.
    pub fn waiting(&self) -> usize {
        self.order.len()
    }

    /// Takes one record; calls ready to be counted are appended to `out`.
    pub fn push(&mut self, rec: CallRecord, now_ns: u64, out: &mut Vec<CallRecord>) {
        let (mine, peer) = match rec.role {
            Role::Client => (rec.client.ip, rec.server.ip),
            Role::Server => (rec.server.ip, rec.client.ip),
        };
        if self.local_ips.len() >= MAX_LOCAL_IPS {
            self.local_ips.clear();
        }
        self.local_ips.insert(mine);
        let key = conn_key(&rec);
        let what = self.what(&rec);
        if let Some(queue) = self.waiting.get_mut(&key) {
            if let Some(i) = queue.iter().position(|w| {
                w.rec.role != rec.role && w.rec.method == rec.method && w.rec.path == rec.path
            }) {
                let other = queue.remove(i).expect("position is in range").rec;
                if queue.is_empty() {
                    self.waiting.remove(&key);
                }
                self.paired += 1;
                out.push(merge(rec, other));
                return;
            }
        }
        if let Some(n) = self.counted_index.get_mut(&(key, what)) {
            // The other side was counted alone already.
            if let Some(c) = self.counted.iter_mut().find(|c| {
                c.key == key && c.what == what && c.role != rec.role && c.deadline_ns != 0
            }) {
                c.deadline_ns = 0;
                *n -= 1;
                if *n == 0 {
                    self.counted_index.remove(&(key, what));
                }
                self.paired += 1;
                return;
            }
        }
        let deadline_ns = now_ns + self.window_ns;
        if same_node(mine, peer) || self.local_ips.contains(&peer) {
            self.waiting
                .entry(key)
                .or_default()
                .push_back(Waiting { rec, deadline_ns });
            self.order.push_back((deadline_ns, key));
        } else {
            self.remember_counted(key, rec.role, what, deadline_ns);
            out.push(rec);
        }
    }

    fn remember_counted(&mut self, key: ConnKey, role: Role, what: u64, deadline_ns: u64) {
        *self.counted_index.entry((key, what)).or_default() += 1;
        self.counted.push_back(Counted {
            key,
            role,
            what,
            deadline_ns,
        });
    }

    /// Counts alone the records whose other side did not turn up in time.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<CallRecord>) {
        while let Some(&(deadline, key)) = self.order.front() {
            if deadline > now_ns {
                break;
            }
            self.order.pop_front();
            let Some(queue) = self.waiting.get_mut(&key) else {
                continue;
            };
            // Entries are queued in deadline order per connection too.
            if queue.front().is_some_and(|w| w.deadline_ns <= now_ns) {
                let w = queue.pop_front().expect("front exists");
                if queue.is_empty() {
                    self.waiting.remove(&key);
                }
                let what = self.what(&w.rec);
                self.remember_counted(key, w.rec.role, what, now_ns + self.window_ns);
                out.push(w.rec);
            }
        }
        while let Some(c) = self.counted.front() {
            if c.deadline_ns > now_ns {
                break;
            }
            let c = self.counted.pop_front().expect("front exists");
            if c.deadline_ns == 0 {
                continue;
            }
            if let Some(n) = self.counted_index.get_mut(&(c.key, c.what)) {
                *n -= 1;
                if *n == 0 {
                    self.counted_index.remove(&(c.key, c.what));
                }
            }
        }
    }

    /// Everything still waiting, counted alone (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<CallRecord>) {
        self.expire(u64::MAX, out);
    }
}

/// One call from its two records: the server's view for timing (what the service itself
/// spent), the client's for who called.
fn merge(a: CallRecord, b: CallRecord) -> CallRecord {
    let (mut server, client) = if a.role == Role::Server {
        (a, b)
    } else {
        (b, a)
    };
    server.client = client.client;
    server.client_duration_us = Some(client.duration_us);
    server.tls |= client.tls;
    server.truncated |= client.truncated;
    server.seen_by_both = true;
    server
}

#[cfg(test)]
mod tests;
