//! Usage contributions and company integration intelligence.
//!
//! After every run of a user's connection, the run's real figures (and the connection's
//! recent runs) become contributions of the kinds the user's responsibility on that
//! company integration covers ([`derive`]); each contribution supersedes the user's
//! previous one of its kind and is folded into the integration's aggregate
//! ([`aggregate`]) in the same store transaction.

pub mod aggregate;
pub mod derive;
pub mod report;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::Schedule;

/// The typical time between runs of `schedule`: its interval, a day, or the gap between
/// a cron expression's next two occurrences after `from`.
pub fn typical_interval(schedule: &Schedule, from: DateTime<Utc>) -> Option<Duration> {
    match schedule {
        Schedule::Every(d) => Some(*d),
        Schedule::DailyAt(_) => Some(Duration::from_secs(86_400)),
        Schedule::Cron(expr) => {
            let cron = crate::model::parse_cron(expr).ok()?;
            let first = cron.find_next_occurrence(&from, false).ok()?;
            let second = cron.find_next_occurrence(&first, false).ok()?;
            (second - first).to_std().ok()
        }
    }
}
