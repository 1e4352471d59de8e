//! HTTP/2 (RFC 9113) and gRPC reassembly for one TCP connection, decoded from the bytes
//! alone: frames, our own HPACK decoder, streams to calls.

mod fields;
pub mod frame;
mod framer;
pub mod hpack;
mod session;
mod streams;

#[cfg(test)]
mod tests;

pub use session::{grpc_names, Session, Start};
