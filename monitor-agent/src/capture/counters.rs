//! The kernel side's per-CPU health counters, summed over CPUs.

use std::sync::Mutex;

use aya::maps::{MapData, PerCpuArray};
use monitor_common::counter;

/// Totals of the kernel counters at one point in time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelCounters {
    pub events: u64,
    pub bytes: u64,
    pub drops: u64,
    pub dropped_bytes: u64,
    pub truncations: u64,
    pub truncated_bytes: u64,
    pub not_http_conns: u64,
    pub http_conns: u64,
    pub args_lost: u64,
    pub read_errors: u64,
    pub tls_unmapped: u64,
    pub tls_conns: u64,
    pub tls_lost: u64,
    pub fd_walks: u64,
}

pub(crate) struct CounterReader {
    map: Mutex<PerCpuArray<MapData, u64>>,
    /// Blocked reads the agent could not pick up at start, counted with the kernel's lost
    /// syscalls.
    lost_at_start: u64,
}

impl CounterReader {
    pub(crate) fn new(map: PerCpuArray<MapData, u64>, lost_at_start: u64) -> Self {
        CounterReader {
            map: Mutex::new(map),
            lost_at_start,
        }
    }

    pub(crate) fn read(&self) -> KernelCounters {
        let Ok(map) = self.map.lock() else {
            return KernelCounters::default();
        };
        let sum = |i: u32| -> u64 { map.get(&i, 0).map_or(0, |v| v.iter().copied().sum::<u64>()) };
        KernelCounters {
            events: sum(counter::EVENTS),
            bytes: sum(counter::BYTES),
            drops: sum(counter::DROPS),
            dropped_bytes: sum(counter::DROPPED_BYTES),
            truncations: sum(counter::TRUNCATIONS),
            truncated_bytes: sum(counter::TRUNCATED_BYTES),
            not_http_conns: sum(counter::NOT_HTTP_CONNS),
            http_conns: sum(counter::HTTP_CONNS),
            args_lost: sum(counter::ARGS_LOST) + self.lost_at_start,
            read_errors: sum(counter::READ_ERRORS),
            tls_unmapped: sum(counter::TLS_UNMAPPED),
            tls_conns: sum(counter::TLS_CONNS),
            tls_lost: sum(counter::TLS_LOST),
            fd_walks: sum(counter::FD_WALKS),
        }
    }
}
