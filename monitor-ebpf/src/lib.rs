//! Library target so the agent can name this crate as a build dependency; the programs are
//! in the `monitor` binary.
#![no_std]
