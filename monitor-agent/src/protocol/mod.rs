//! Application protocol parsers.

pub mod http1;
