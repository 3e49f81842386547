//! tributary: a multi-tenant integration sync daemon.
//!
//! The library holds everything; `src/main.rs` only calls [`cli::main`].
//!
//! ## Layers
//!
//! A module names only the modules before it in this order, lowest first (a line is one
//! layer of `DESIGN.md`; within a line, too, a module names only those before it). The
//! integration test `layering` reads the order from here and fails on any import that
//! runs up it, naming the file and line.
//!
//! ```text
//! model
//! → telemetry → config → mapping
//! → secrets → store → tenants → http
//! → engine
//! → sync → intelligence
//! → scheduler
//! → control → server
//! → app → cli
//! ```
//!
//! `model` is the vocabulary; `telemetry` knows only the model (the modules that report
//! fill in its event structs); `secrets` seals what the store keeps without knowing the
//! store; `http` holds request templating, which the engine uses. (DESIGN.md's module
//! table lists `telemetry` among the top modules and `secrets` after `store`; both sit
//! lower here because they import neither. README's layout lists this order.)
//! The simulators (the `tributary-simulator` crate in `crates/simulator`) serve tests,
//! benchmarks, `tributary simulate` and `tributary demo`; of this library only the CLI
//! names them, so the product's modules hold no test fixtures.

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
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tenants;
