//! Application protocol parsers.

pub mod credentials;
pub mod detect;
pub mod exchange;
pub mod http1;
pub mod http2;
pub mod media;
pub mod session;
