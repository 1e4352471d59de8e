//! The API inventory: which endpoints are in use on this node, who calls them, and how
//! they compare with what the services declare.

pub mod book;
pub mod openapi;
pub mod pairing;
pub mod stats;
pub mod view;

pub use book::{EndpointKey, Inventory, InventoryConfig, SpecStatus};
