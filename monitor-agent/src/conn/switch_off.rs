//! Switching off the kernel's capture of a connection the parsers have left (a WebSocket
//! or a tunnel after `101`/`CONNECT`, bytes that turned out not to be HTTP): its bytes
//! would only be copied, sent and dropped. The kernel looks at one array slot per syscall
//! (`monitor_common::SWITCH_OFF_SLOTS`); a slot another connection takes over later only
//! turns that switch back on, never off another connection.

use std::sync::{Arc, Mutex};

use aya::maps::{Array, MapData};
use monitor_common::SWITCH_OFF_SLOTS;
use prometheus_client::metrics::counter::Counter;

/// Shared by the shards; without a kernel (tests), switching off only counts.
#[derive(Clone)]
pub(crate) struct SwitchOff {
    table: Option<Arc<Mutex<Array<MapData, u64>>>>,
    switched: Counter,
}

impl SwitchOff {
    pub(crate) fn new(table: Option<Array<MapData, u64>>, switched: Counter) -> Self {
        SwitchOff {
            table: table.map(|t| Arc::new(Mutex::new(t))),
            switched,
        }
    }

    /// Asks the kernel to stop capturing the connection it knows as `conn_id`.
    pub(crate) fn switch_off(&self, conn_id: u64) {
        self.switched.inc();
        let Some(table) = &self.table else { return };
        let slot = (conn_id as u32) & (SWITCH_OFF_SLOTS - 1);
        if let Ok(mut t) = table.lock() {
            if let Err(e) = t.set(slot, conn_id, 0) {
                log::debug!("switching off connection {conn_id}: {e}");
            }
        }
    }
}
