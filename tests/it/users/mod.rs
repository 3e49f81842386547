//! Users, their roles at companies and their own connections: tenant-file roles, runs of
//! user connections against the HubSpot simulator on SQLite and PostgreSQL, and the
//! command line and daemon end to end.

mod cli;
mod config;
pub(crate) mod runs;
