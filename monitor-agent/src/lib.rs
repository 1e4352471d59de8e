//! monitor-agent: an eBPF API traffic monitor. The binary (`main.rs`) is a thin CLI over
//! these modules; the library form exists for fuzzing and tests.

pub mod api;
pub mod calls;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod enforcement;
pub mod identity;
pub mod inventory;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod protocol;
pub mod recent;
pub mod record;
pub mod redact;
pub mod reload;
pub mod route;
pub mod run;
pub mod settings;
pub mod spec;
pub mod store;
pub mod violations;
