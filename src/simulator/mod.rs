//! Faithful fake provider servers for tests, benchmarks and `tributary demo`.
//!
//! This first part holds the provider-independent pieces: the lazy record
//! store, record filters, deterministic fake data and token bookkeeping.

mod auth;
mod fake;
mod filter;
mod store;
mod util;
