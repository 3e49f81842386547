//! One integration-test binary: every module shares the test kit in `support` (fresh
//! databases, the `contract!` macro for tests on both backends, the CLI environment, the
//! world builder and `json`).

mod budgets;
mod cli;
mod config_model;
mod connectors;
mod daemon;
mod deletions;
mod deletions_salesforce;
mod faults;
mod intelligence;
mod keys_cli;
mod language;
mod layering;
mod mapping;
mod migrations;
mod operator_cli;
mod pgbouncer;
mod postgres_socket;
mod records_read;
mod responsibilities_cli;
mod resume;
mod scheduling;
mod sim;
mod store_contract;
mod support;
mod sweep;
mod tenants;
mod tokens;
mod users;
mod views;
mod webhooks;
mod writes_cli;
mod writes_exec;
