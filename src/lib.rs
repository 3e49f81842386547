//! tributary: a multi-tenant integration sync daemon.
//!
//! The library holds everything; `src/main.rs` only calls [`cli::main`].

pub mod cli;
pub mod config;
pub mod engine;
pub mod http;
pub mod mapping;
pub mod model;
pub mod scheduler;
pub mod secrets;
pub mod simulator;
pub mod store;
pub mod sync;
pub mod tenants;
