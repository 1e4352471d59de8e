//! Application protocol parsers.

pub mod credentials;
pub mod exchange;
pub mod http1;
pub mod http2;
