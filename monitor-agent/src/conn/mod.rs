//! Connection tracking: turns a connection's ordered events into call records.

mod metrics;
pub(crate) mod shard;
pub(crate) mod tracker;

pub(crate) use metrics::ConnMetrics;
pub(crate) use tracker::{ConnTracker, TrackerConfig};

#[cfg(test)]
mod tests;
