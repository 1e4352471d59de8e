//! Connection tracking: turns a connection's ordered events into call records.

mod metrics;
pub mod shard;
pub mod tracker;

pub use metrics::ConnMetrics;
pub use tracker::{ConnTracker, TrackerConfig};

#[cfg(test)]
mod tests;
