//! When a job runs next: fixed intervals, daily wall-clock times and cron expressions,
//! the latter two evaluated in the tenant's time zone, each shifted by a small jitter
//! that is fixed per job.
//!
//! # Daylight saving time
//!
//! `daily at HH:MM` is evaluated exactly like the cron expression `0 MM HH * * *`, with
//! croner's rules for fixed-time jobs, so both forms always agree:
//!
//! - **Spring forward** (a wall-clock time that does not exist that day, e.g. 02:30 in
//!   Europe/Berlin on the last Sunday of March): the run happens once, at the first
//!   wall-clock time after the gap (03:00 CEST). It never vanishes.
//! - **Fall back** (a wall-clock time that happens twice, e.g. 01:30 in Europe/London on
//!   the last Sunday of October): the run happens once, at the first of the two
//!   instants (01:30 BST). It never runs twice.
//!
//! Cron expressions with wildcards or steps in the time fields (`*/15 * * * *`) follow
//! real time instead: occurrences inside a gap do not exist, and both passes of a
//! repeated hour run (an hourly pattern stays hourly in UTC). Intervals (`15m`) are
//! plain durations on the UTC time line and are not affected by DST at all.
//!
//! (In Europe/London the clocks change at 01:00 GMT / 02:00 BST, so a 02:30 schedule
//! there is neither skipped nor repeated; the affected London times are 01:00–01:59.)

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use crate::model::{Schedule, parse_cron};

/// Default cap of the jitter added to daily and cron schedules.
pub const DEFAULT_FIXED_JITTER: Duration = Duration::from_secs(60);

/// Cap of the jitter added to intervals (which is otherwise 10% of the interval).
pub const MAX_INTERVAL_JITTER: Duration = Duration::from_secs(5 * 60);

/// A deterministic, per-job spread of run times, so that a thousand tenants on "hourly"
/// do not all fire in the same second while each job keeps a stable rhythm: the same
/// job always gets the same offset for the same schedule.
///
/// The offset lies in `[0, bound]`, where the bound is 10% of the interval (at most
/// [`MAX_INTERVAL_JITTER`]) for intervals, and the configured fixed maximum (default
/// [`DEFAULT_FIXED_JITTER`]) for daily times and cron expressions. Jitter only ever
/// delays a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter {
    seed: u64,
    /// Cap for daily and cron schedules.
    fixed_max: Duration,
    /// Share of an interval (or backoff delay) the offset may reach, in percent.
    relative_percent: u32,
    /// Cap for intervals.
    interval_max: Duration,
}

impl Jitter {
    /// No jitter: every offset is zero.
    pub const NONE: Jitter =
        Jitter { seed: 0, fixed_max: Duration::ZERO, relative_percent: 0, interval_max: Duration::ZERO };

    /// The jitter of job `job_id`, with the default caps.
    pub fn for_job(job_id: i64) -> Self {
        Self {
            seed: mix(job_id.cast_unsigned()),
            fixed_max: DEFAULT_FIXED_JITTER,
            relative_percent: 10,
            interval_max: MAX_INTERVAL_JITTER,
        }
    }

    /// The same jitter with another cap for daily and cron schedules.
    pub fn with_fixed_max(self, fixed_max: Duration) -> Self {
        Self { fixed_max, ..self }
    }

    /// The largest offset this jitter may add to `schedule`.
    pub fn bound(&self, schedule: &Schedule) -> Duration {
        match schedule {
            Schedule::Every(interval) => self.share_of(*interval).min(self.interval_max),
            Schedule::DailyAt(_) | Schedule::Cron(_) => self.fixed_max,
        }
    }

    /// This job's offset for `schedule`: the same every time, within [`Jitter::bound`].
    pub fn offset(&self, schedule: &Schedule) -> Duration {
        self.spread(self.bound(schedule), 0)
    }

    /// This jitter's share (10%, or nothing for [`Jitter::NONE`]) of `span`.
    pub(crate) fn share_of(&self, span: Duration) -> Duration {
        span.checked_mul(self.relative_percent).map_or(span / 100 * self.relative_percent, |d| d / 100)
    }

    /// A deterministic duration in `[0, bound]` (millisecond steps), different for each
    /// `salt`.
    pub(crate) fn spread(&self, bound: Duration, salt: u64) -> Duration {
        let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        if bound_ms == 0 {
            return Duration::ZERO;
        }
        let draw = mix(self.seed ^ mix(salt));
        Duration::from_millis(draw % bound_ms.saturating_add(1))
    }
}

/// SplitMix64's finalizer: a fixed, well-mixed hash that never changes between
/// releases (unlike `std`'s hasher), so offsets survive upgrades.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The first run of `schedule` strictly after `after`, jitter included; `None` if the
/// schedule never runs again (a cron expression that matches no date, or a time beyond
/// the year 5000).
///
/// - Intervals count from `after`: `after + interval + offset`. Pass the time the last
///   run finished, so a slow run never makes runs pile up.
/// - Daily times and cron expressions: the first occurrence `o` in `tz` with
///   `o + offset > after`, then `o + offset`. An occurrence whose jittered time is still
///   ahead is therefore never skipped. See the module documentation for DST.
pub fn next_run_after(schedule: &Schedule, tz: Tz, after: DateTime<Utc>, jitter: Jitter) -> Option<DateTime<Utc>> {
    let offset = TimeDelta::from_std(jitter.offset(schedule)).ok()?;
    match schedule {
        Schedule::Every(interval) => {
            let interval = TimeDelta::from_std(*interval).ok()?;
            after.checked_add_signed(interval)?.checked_add_signed(offset)
        }
        Schedule::DailyAt(time) => {
            let cron = parse_cron(&format!("{} {} {} * * *", time.second(), time.minute(), time.hour())).ok()?;
            next_occurrence(&cron, tz, after.checked_sub_signed(offset)?)?.checked_add_signed(offset)
        }
        Schedule::Cron(expr) => {
            let cron = parse_cron(expr).ok()?;
            next_occurrence(&cron, tz, after.checked_sub_signed(offset)?)?.checked_add_signed(offset)
        }
    }
}

/// When a job with no run history (new, or its schedule just changed) runs first:
/// intervals at `now + offset` (a new connection syncs soon rather than an interval
/// later), daily times and cron expressions at their next occurrence.
pub fn first_run_at(schedule: &Schedule, tz: Tz, now: DateTime<Utc>, jitter: Jitter) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Every(_) => now.checked_add_signed(TimeDelta::from_std(jitter.offset(schedule)).ok()?),
        Schedule::DailyAt(_) | Schedule::Cron(_) => next_run_after(schedule, tz, now, jitter),
    }
}

/// The first occurrence of `cron` in `tz` strictly after `after`.
fn next_occurrence(cron: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false).ok().map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
