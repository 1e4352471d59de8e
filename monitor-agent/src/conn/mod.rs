//! Connection tracking: turns a connection's ordered events into call records.

pub mod shard;
pub mod tracker;

pub use tracker::{ConnTracker, TrackerConfig};

#[cfg(test)]
mod tests;
