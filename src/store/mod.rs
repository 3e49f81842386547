//! Persistence. One narrow contract (`Store`) with two implementations on native sqlx
//! pools: SQLite (the embedded default) and PostgreSQL (replicas). Every method that
//! touches tenant data takes the tenant id and scopes its queries by it.

mod types;

pub use types::*;
