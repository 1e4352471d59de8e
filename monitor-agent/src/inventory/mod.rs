//! The API inventory: which endpoints are in use. So far, route templating.

pub mod template;
