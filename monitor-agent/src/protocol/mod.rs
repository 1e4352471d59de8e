//! Application protocol parsers.

pub mod credentials;
pub mod http1;
