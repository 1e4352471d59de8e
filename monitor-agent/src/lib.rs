//! monitor-agent: an eBPF API traffic monitor. The binary (`main.rs`) is a thin CLI over
//! these modules; the library form exists for fuzzing and tests.

pub(crate) mod allocator;
pub mod api;
pub(crate) mod calls;
pub(crate) mod capture;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod conn;
pub mod enforcement;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod health;
pub mod identity;
pub mod inventory;
pub mod limits;
pub(crate) mod metrics;
pub(crate) mod output;
pub(crate) mod pipeline;
pub mod policy;
pub(crate) mod printable;
pub mod protocol;
pub(crate) mod recent;
pub mod record;
pub mod redact;
pub(crate) mod reload;
pub mod route;
pub mod run;
pub mod settings;
pub mod spec;
pub(crate) mod store;
pub mod text;
pub mod violations;
