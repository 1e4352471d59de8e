//! Connection tracking: turns a connection's ordered events into call records.

mod metrics;
pub(crate) mod shard;
mod switch_off;
pub(crate) mod tracker;

pub(crate) use metrics::ConnMetrics;
pub(crate) use switch_off::SwitchOff;
pub(crate) use tracker::{ConnTracker, TrackerConfig};

#[cfg(test)]
mod tests;
