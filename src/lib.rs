//! tributary: a multi-tenant integration sync daemon.
//!
//! The library holds everything; `src/main.rs` only calls [`cli::main`].

pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod http;
pub mod intelligence;
pub mod mapping;
pub mod model;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod simulator;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tenants;
