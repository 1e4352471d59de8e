//! Types and pure functions shared by the eBPF programs and the userspace agent.
//!
//! Everything here is `no_std` and allocation-free because the same code runs inside the
//! kernel's verifier-checked programs. Layouts are `#[repr(C)]` and versioned by their size:
//! the agent refuses an object whose header size differs from its own.
#![no_std]

pub mod event;
pub mod frames;
pub mod head;
pub mod names;
pub mod offsets;
pub mod sniff;

pub use event::*;
pub use offsets::KernelOffsets;
pub use sniff::{sniff, Sniff};
