//! Incremental HTTP/1.x session reassembly for one TCP connection.
//!
//! The two directions are framed independently (`message`) and then paired
//! FIFO (`pending`, `session`), because that is how HTTP/1 keep-alive and
//! pipelining work. Captured streams may have gaps, so every stage can lose
//! and regain sync without panicking or buffering more than one header block.

mod chunked;
mod head;
mod message;
mod pending;
mod resync;
mod session;
mod staging;
mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_prop;

pub use session::Session;
pub use types::{Exchange, Limits, Side};
