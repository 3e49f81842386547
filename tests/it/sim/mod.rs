//! Simulator tests: every provider's fake server over real HTTP on loopback.

mod aptem;
mod asana;
mod bud;
mod common;
mod faults;
mod github;
mod gitlab;
mod google_drive;
mod handle;
mod hubspot;
mod jira;
mod lms_writes;
mod microsoft;
mod onefile;
mod salesforce;
mod slack;
mod webhooks;
mod writes;
