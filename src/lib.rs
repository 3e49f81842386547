//! tributary: a multi-tenant integration sync daemon.
//!
//! The library holds everything; `src/main.rs` only calls [`cli::main`].

pub mod model;
pub mod store;
pub mod simulator;
